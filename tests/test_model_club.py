"""CLUB estimators against the bound and the log-likelihood written out by hand."""

from __future__ import annotations

import math

import torch

from momok.models.club import PairwiseCLUB, gaussian_log_likelihood

P, N, D, H = 3, 6, 4, 5


def _club():
    return PairwiseCLUB(P, D, H, generator=torch.Generator().manual_seed(0))


def _mlp_by_hand(club, p, x):
    """μ and logvar of estimator p for one input vector x, with explicit loops."""
    def layer(w, b, v):
        return torch.stack([sum(v[i] * w[i, j] for i in range(w.shape[0])) + b[0, j] for j in range(w.shape[1])])

    mu = layer(club.mu_w2[p], club.mu_b2[p], torch.relu(layer(club.mu_w1[p], club.mu_b1[p], x)))
    logvar = torch.tanh(layer(club.lv_w2[p], club.lv_b2[p], torch.relu(layer(club.lv_w1[p], club.lv_b1[p], x))))
    return mu, logvar


def _ll_by_hand(y, mu, logvar, logvar_term):
    total = 0.0
    for d in range(y.shape[0]):
        total = total - (y[d] - mu[d]) ** 2 / (2 * torch.exp(logvar[d])) - (logvar[d] / 2 if logvar_term else 0.0)
    return total


def test_log_likelihood_is_the_gaussian_density_without_constant():
    y, mu, logvar = torch.randn(N, D), torch.randn(N, D), torch.randn(N, D).tanh()
    expected = torch.distributions.Normal(mu, (logvar / 2).exp()).log_prob(y).sum(-1) + D * 0.5 * math.log(2 * math.pi)
    torch.testing.assert_close(gaussian_log_likelihood(y, mu, logvar), expected)
    torch.testing.assert_close(gaussian_log_likelihood(y, mu, logvar, logvar_term=False), expected + logvar.sum(-1) / 2)


def test_mu_logvar_and_bound_by_hand():
    club = _club()
    x, y = torch.randn(P, N, D), torch.randn(P, N, D)
    permutation = torch.tensor([2, 0, 5, 1, 3, 4])
    mu, logvar = club.mu_logvar(x)
    bound = club.upper_bound(x, y, permutation)
    loss = club.learning_loss(x, y)
    loss_without = club.learning_loss(x, y, logvar_term=False)
    for p in range(P):
        positives, negatives, lls_without = [], [], []
        for e in range(N):
            m, lv = _mlp_by_hand(club, p, x[p, e])
            torch.testing.assert_close(mu[p, e], m)
            torch.testing.assert_close(logvar[p, e], lv)
            positives.append(_ll_by_hand(y[p, e], m, lv, True))
            negatives.append(_ll_by_hand(y[p, permutation[e]], m, lv, True))
            lls_without.append(_ll_by_hand(y[p, e], m, lv, False))
        torch.testing.assert_close(bound[p], (sum(positives) - sum(negatives)) / N)
        torch.testing.assert_close(loss[p], -sum(positives) / N)
        torch.testing.assert_close(loss_without[p], -sum(lls_without) / N)


def test_pair_selection_matches_full_evaluation():
    club = _club()
    x, y = torch.randn(P, N, D), torch.randn(P, N, D)
    permutation = torch.randperm(N)
    full = club.upper_bound(x, y, permutation)
    chosen = torch.tensor([2])
    torch.testing.assert_close(club.upper_bound(x[2:3], y[2:3], permutation, chosen), full[2:3])
    torch.testing.assert_close(club.learning_loss(x[2:3], y[2:3], chosen), club.learning_loss(x, y)[2:3])


def test_gradients_bound_trains_inputs_only_and_estimator_loss_trains_estimator_only():
    club = _club()
    x, y = torch.randn(P, N, D, requires_grad=True), torch.randn(P, N, D, requires_grad=True)
    club.upper_bound(x, y, torch.randperm(N)).sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0 and y.grad.abs().sum() > 0
    assert all(p.grad is None for p in club.parameters())
    x.grad = y.grad = None
    club.learning_loss(x, y).sum().backward()
    assert x.grad is None and y.grad is None
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in club.parameters())
