"""The exact per-query core dropout (momok/models/core_dropout.py) against the formula written out."""

from __future__ import annotations

import pytest
import torch

from momok.models.core_dropout import MaskedGroupedMatmul, keep_mask, keep_threshold, per_query_core_dropout
from momok.models.groups import RelationGroups

D = 5


def test_keep_threshold_is_unbiased():
    for p in (0.0, 0.1, 0.4, 0.5, 0.999):
        t, scale = keep_threshold(p)
        assert abs(t / 2**32 - p) <= 2**-33
        assert (1 - t / 2**32) * scale == pytest.approx(1.0, abs=1e-15)
    with pytest.raises(ValueError, match="dropout probability"):
        keep_threshold(1.0)


def test_keep_mask_rate_seed_and_threads():
    shape = (40, 100, 100)
    torch.manual_seed(7)
    mask, scale = keep_mask(shape, 0.4)
    assert mask.dtype == torch.bool and mask.shape == shape
    n = mask.numel()
    rate = mask.float().mean().item()
    assert abs(rate - 0.6) < 5 * (0.6 * 0.4 / n) ** 0.5
    assert scale == pytest.approx(1 / 0.6)
    torch.manual_seed(7)
    assert torch.equal(keep_mask(shape, 0.4)[0], mask)  # torch.manual_seed fixes the mask
    assert not torch.equal(keep_mask(shape, 0.4)[0], mask)  # the next draw differs
    assert bool(keep_mask((3, 4), 0.0)[0].all())


def test_keep_mask_does_not_depend_on_the_thread_count(monkeypatch):
    import momok.models.core_dropout as module

    monkeypatch.setattr(module, "_DRAW_CHUNK", 1000)  # many chunks, odd sizes at the end
    threads = torch.get_num_threads()
    masks = []
    for n in (1, 3):
        torch.set_num_threads(n)
        torch.manual_seed(3)
        masks.append(keep_mask((7, 33, 31), 0.3)[0])
    torch.set_num_threads(threads)
    assert torch.equal(masks[0], masks[1])
    rate = masks[0].float().mean().item()
    assert abs(rate - 0.7) < 0.03


def _problem(dtype=torch.float64, seed=0):
    g = torch.Generator().manual_seed(seed)
    counts = [5, 1, 7]  # sorted by group; chunks of 2 rows split groups 0 and 2
    rows = sum(counts)
    x = torch.randn(rows, D, generator=g, dtype=dtype, requires_grad=True)
    cores = torch.randn(len(counts), D, D, generator=g, dtype=dtype, requires_grad=True)
    mask = torch.rand(rows, D, D, generator=g) >= 0.4
    group_of_row = torch.repeat_interleave(torch.arange(len(counts)), torch.tensor(counts))
    return x, cores, mask, counts, group_of_row


def test_masked_grouped_matmul_matches_the_formula_and_its_gradients():
    x, cores, mask, counts, group_of_row = _problem()
    scale = 1.7
    out = MaskedGroupedMatmul.apply(x, cores, mask, scale, counts, 2 * D * D)
    expected = torch.einsum("bj,bjk->bk", x, cores[group_of_row] * mask * scale)
    torch.testing.assert_close(out, expected)
    grad = torch.randn_like(out)
    got = torch.autograd.grad(out, (x, cores), grad)
    want = torch.autograd.grad(expected, (x, cores), grad)
    for a, b in zip(got, want):
        torch.testing.assert_close(a, b)
    # by hand, one entry of each gradient
    b, j, k, u = 3, 1, 2, 0
    assert got[0][b, j].item() == pytest.approx(scale * sum(
        cores[u, j, kk].item() * mask[b, j, kk].item() * grad[b, kk].item() for kk in range(D)))
    assert got[1][u, j, k].item() == pytest.approx(scale * sum(
        x[bb, j].item() * grad[bb, k].item() * mask[bb, j, k].item() for bb in range(counts[0])))


def test_masked_grouped_matmul_gradcheck():
    x, cores, mask, counts, _ = _problem()
    assert torch.autograd.gradcheck(lambda a, c: MaskedGroupedMatmul.apply(a, c, mask, 1.3, counts, D * D), (x, cores))


def test_per_query_core_dropout_in_query_order():
    relations = torch.tensor([2, 0, 2, 1, 0, 2, 2])
    groups = RelationGroups.of(relations)
    x = torch.randn(7, D)
    cores = torch.randn(3, D, D)
    torch.manual_seed(11)
    out = per_query_core_dropout(x, cores, groups, 0.5, chunk_elements=D * D)
    torch.manual_seed(11)
    mask, scale = keep_mask((7, D, D), 0.5)  # drawn for the queries in group order
    expected = torch.einsum("bj,bjk->bk", x, cores[groups.inverse] * mask[groups.restore] * scale)
    torch.testing.assert_close(out, expected)


def test_lazy_bits_keep_rate_is_exact_when_the_high_byte_ties():
    """p with t = 2**31 + 2**23: the high byte ties with probability 1/256 and then keeps half the time,
    so the keep rate is 127/256 + 1/512 = 0.498047 (0.5 if ties were kept, 0.496094 if dropped)."""
    from momok.models.core_dropout import draw_keep
    import numpy as np

    t = 2**31 + 2**23
    out = np.empty(10_000_000, dtype=bool)
    draw_keep(out, t, np.random.SFC64(0))
    assert abs(out.mean() - (1 - t / 2**32)) < 5 * (0.25 / out.size) ** 0.5
