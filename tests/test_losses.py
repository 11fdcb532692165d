"""momok/models/losses.py against torch's composite BCE with a dense smoothed target."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from momok.models.losses import smoothed_bce


@pytest.mark.parametrize("spread", [1.0, 40.0])  # 40: exp(-|x|) underflows / softplus(x) ≈ x
def test_smoothed_bce_matches_dense_target(spread):
    g = torch.Generator().manual_seed(0)
    scores = (torch.randn(6, 50, generator=g, dtype=torch.float64) * spread).requires_grad_()
    labels = torch.rand(6, 50, generator=g) < 0.1
    labels[0] = False  # a query without answers
    labels[1, 3] = True
    eps = 0.1
    target = (1 - eps) * labels.double() + 1 / 50
    expected = F.binary_cross_entropy_with_logits(scores, target)
    got = smoothed_bce(scores, labels, eps)
    torch.testing.assert_close(got, expected)
    torch.testing.assert_close(smoothed_bce(scores, labels.nonzero(as_tuple=True), eps), expected)
    grad_out = torch.tensor(2.5, dtype=torch.float64)
    torch.testing.assert_close(torch.autograd.grad(got, scores, grad_out)[0],
                               torch.autograd.grad(expected, scores, grad_out)[0])


def test_smoothed_bce_float32_and_gradcheck():
    scores = torch.randn(4, 30, dtype=torch.float64, requires_grad=True)
    labels = torch.rand(4, 30) < 0.2
    assert torch.autograd.gradcheck(lambda x: smoothed_bce(x, labels, 0.1), (scores,))
    x32 = scores.detach().float()
    dense = F.binary_cross_entropy_with_logits(x32, 0.9 * labels.float() + 1 / 30)
    torch.testing.assert_close(smoothed_bce(x32, labels, 0.1), dense)


def test_smoothed_bce_rejects_dense_float_labels():
    with pytest.raises(ValueError, match="bool tensor"):
        smoothed_bce(torch.zeros(2, 3), torch.zeros(2, 3), 0.1)
