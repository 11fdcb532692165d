"""ExID: CLUB upper bounds of the mutual information between experts (Cheng et al. 2020; the paper's Eqs. 7–8).

For an ordered expert pair (i, j) of one modality, a variational Gaussian
``q_θ(y | x) = N(y; μ(x), diag(exp(logvar(x))))`` with two-layer ReLU MLPs for μ and logvar (the logvar
MLP ends in ``tanh``, as in the original CLUB code and the authors') gives, over a batch of N entities
with ``x = h_i``, ``y = h_j`` and a random permutation π of the batch::

    log q(y | x) = Σ_d [ −(y − μ)² / (2 exp(logvar)) − logvar / 2 ]      (the constant −½ log 2π dropped)
    bound  = (1/N) Σ_e [ log q(y_e | x_e) − log q(y_π(e) | x_e) ]        (minimised by the model)
    L_q    = −(1/N) Σ_e log q(y_e | x_e)                                  (minimised by the estimator)

``logvar_term=False`` drops the ``−logvar/2`` term as the authors' code does. It cancels in ``bound``
(both terms share ``x_e`` and so ``logvar(x_e)``) and changes only the estimator's fit ``L_q``: without it
the variance is pushed to its maximum ``e^1`` by the tanh instead of matching the residuals.

All pairs' estimators are evaluated together with batched matrix products (:class:`PairwiseCLUB`).
"""

from __future__ import annotations

import torch
from torch import nn

from momok.models.init import uniform


def gaussian_log_likelihood(
    y: torch.Tensor, mu: torch.Tensor, logvar: torch.Tensor, logvar_term: bool = True
) -> torch.Tensor:
    """``log q(y | x)`` summed over the last dimension, without the constant ``−½ log 2π`` per dimension."""
    ll = -(y - mu).square() / (2 * logvar.exp())
    if logvar_term:
        ll = ll - logvar / 2
    return ll.sum(-1)


class PairwiseCLUB(nn.Module):
    """P independent CLUB estimators ``q_p(y | x)`` (one per ordered expert pair), evaluated in one batch.

    Each estimator: ``μ = W2 relu(W1 x + b1) + b2``, ``logvar = tanh(V2 relu(V1 x + c1) + c2)`` with hidden
    width ``hidden_dim``; weights initialised like ``nn.Linear`` from ``generator``.
    """

    def __init__(self, num_pairs: int, dim: int, hidden_dim: int, *, generator: torch.Generator | None = None):
        super().__init__()
        self.num_pairs = num_pairs
        b_in, b_hidden = 1.0 / dim**0.5, 1.0 / hidden_dim**0.5
        self.mu_w1 = nn.Parameter(uniform((num_pairs, dim, hidden_dim), b_in, generator))
        self.mu_b1 = nn.Parameter(uniform((num_pairs, 1, hidden_dim), b_in, generator))
        self.mu_w2 = nn.Parameter(uniform((num_pairs, hidden_dim, dim), b_hidden, generator))
        self.mu_b2 = nn.Parameter(uniform((num_pairs, 1, dim), b_hidden, generator))
        self.lv_w1 = nn.Parameter(uniform((num_pairs, dim, hidden_dim), b_in, generator))
        self.lv_b1 = nn.Parameter(uniform((num_pairs, 1, hidden_dim), b_in, generator))
        self.lv_w2 = nn.Parameter(uniform((num_pairs, hidden_dim, dim), b_hidden, generator))
        self.lv_b2 = nn.Parameter(uniform((num_pairs, 1, dim), b_hidden, generator))

    def mu_logvar(
        self, x: torch.Tensor, pairs: torch.Tensor | None = None, *, detach_params: bool = False
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """μ and logvar ``[P', N, d]`` of ``x [P', N, d]`` under the estimators ``pairs`` (default: all P).

        ``detach_params=True`` evaluates with detached weights: gradients reach ``x`` but not the estimator
        (the model's loss must not train q_θ).
        """
        params = [self.mu_w1, self.mu_b1, self.mu_w2, self.mu_b2, self.lv_w1, self.lv_b1, self.lv_w2, self.lv_b2]
        if pairs is not None:
            params = [p[pairs] for p in params]
        if detach_params:
            params = [p.detach() for p in params]
        mw1, mb1, mw2, mb2, vw1, vb1, vw2, vb2 = params
        mu = torch.baddbmm(mb2, torch.relu(torch.baddbmm(mb1, x, mw1)), mw2)
        logvar = torch.tanh(torch.baddbmm(vb2, torch.relu(torch.baddbmm(vb1, x, vw1)), vw2))
        return mu, logvar

    def upper_bound(
        self, x: torch.Tensor, y: torch.Tensor, permutation: torch.Tensor, pairs: torch.Tensor | None = None
    ) -> torch.Tensor:
        """CLUB bound ``[P']`` per estimator, estimator weights detached. ``x, y: [P', N, d]``; ``permutation: [N]``."""
        mu, logvar = self.mu_logvar(x, pairs, detach_params=True)
        positive = gaussian_log_likelihood(y, mu, logvar, logvar_term=False)
        negative = gaussian_log_likelihood(y[:, permutation], mu, logvar, logvar_term=False)
        return (positive - negative).mean(-1)

    def learning_loss(
        self, x: torch.Tensor, y: torch.Tensor, pairs: torch.Tensor | None = None, *, logvar_term: bool = True
    ) -> torch.Tensor:
        """Estimator loss ``L_q [P']`` (negative mean log-likelihood) on detached ``x, y``."""
        mu, logvar = self.mu_logvar(x.detach(), pairs)
        return -gaussian_log_likelihood(y.detach(), mu, logvar, logvar_term).mean(-1)
