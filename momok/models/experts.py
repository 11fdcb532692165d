"""ReMoKE: relation-guided modality knowledge experts (the paper's Eq. 2).

For one modality m with input vectors ``x_e ∈ R^d``, K experts (affine maps) give
``h_{e,k} = dropout(x_e) A_k + c_k``. (The authors write each expert as ``A_k (dropout(x) − b_k)``, i.e.
the bias ``c_k = −b_k A_k``; the same family of maps.) A gated fusion network weighs them::

    logits = x_e W_g + ε ⊙ softplus(x_e W_n),   ε ~ N(0, I) while training (gate noise), else 0
             (the paper and Shazeer et al.; the authors' code adds 0.01 to the softplus)
    g(e, r) = softmax(logits / τ_r),             τ_r = sigmoid(θ_r) ∈ (0, 1), one θ per relation id
    e_r = Σ_k g_k(e, r) h_{e,k}

The temperature only divides the logits, so the experts' outputs ``h`` and the logits of every entity
are computed once per step and reused for every relation: encoding all E entities under U relations
costs ``E·K·d`` (experts, once) + ``U·E·K`` (gates) + ``U·E·K·d`` (mixtures) multiply-adds.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class ModalityExperts(nn.Module):
    """K linear experts and the noisy gate of one modality (no relation state: see :class:`RelationTemperature`)."""

    def __init__(
        self,
        dim: int,
        num_experts: int,
        *,
        dropout: float = 0.0,
        gate_noise: bool = True,
        generator: torch.Generator | None = None,
    ):
        super().__init__()
        if num_experts < 1:
            raise ValueError("num_experts must be at least 1")
        self.dim = dim
        self.num_experts = num_experts
        self.dropout = dropout
        self.gate_noise = gate_noise
        weight = torch.empty(num_experts, dim, dim)
        for k in range(num_experts):
            nn.init.xavier_normal_(weight[k], generator=generator)
        self.weight = nn.Parameter(weight)
        self.bias = nn.Parameter(torch.zeros(num_experts, dim))
        # Zero-initialised gates (as Shazeer et al. and the authors): uniform gates at the start.
        self.gate_weight = nn.Parameter(torch.zeros(dim, num_experts))
        self.noise_weight = nn.Parameter(torch.zeros(dim, num_experts))

    def experts(self, x: torch.Tensor) -> torch.Tensor:
        """Expert outputs ``h [N, K, d]`` of inputs ``x [N, d]`` (input dropout while training)."""
        x = F.dropout(x, self.dropout, self.training)
        return torch.einsum("nd,kde->nke", x, self.weight) + self.bias

    def gate_logits(self, x: torch.Tensor, noise: bool = True) -> torch.Tensor:
        """Gate logits ``[N, K]``; Gaussian noise scaled by ``softplus(x W_n)`` when training, ``gate_noise``
        and ``noise`` are all true."""
        logits = x @ self.gate_weight
        if noise and self.gate_noise and self.training:
            logits = logits + torch.randn_like(logits) * F.softplus(x @ self.noise_weight)
        return logits


def gates(logits: torch.Tensor, temperature: torch.Tensor | None) -> torch.Tensor:
    """``softmax(logits / τ)`` over experts; ``temperature`` broadcasts against ``logits[..., 0]``."""
    if temperature is None:
        return torch.softmax(logits, dim=-1)
    return torch.softmax(logits / temperature.unsqueeze(-1), dim=-1)


def mix(gate_weights: torch.Tensor, expert_outputs: torch.Tensor) -> torch.Tensor:
    """``Σ_k g_k h_k``: gates ``[N, K]``, expert outputs ``[N, K, d]`` -> ``[N, d]``."""
    # a batched [1, K] @ [K, d] product: on a CPU faster forward and backward than the element-wise
    # product and sum (benchmarks/README.md, "Measurements behind code choices")
    return torch.matmul(gate_weights.unsqueeze(-2), expert_outputs).squeeze(-2)


class RelationTemperature(nn.Module):
    """``τ_r = sigmoid(θ_r)``, one learnable θ per relation id (inverse relations have their own),
    shared by all modalities as in the authors' code. θ starts at 0 (τ = 0.5).
    ``enabled=False`` is the "w/o relational" ablation: τ ≡ 1 and no parameters."""

    def __init__(self, num_relation_ids: int, enabled: bool = True):
        super().__init__()
        self.enabled = enabled
        self.theta = nn.Parameter(torch.zeros(num_relation_ids)) if enabled else None

    def forward(self, relations: torch.Tensor) -> torch.Tensor | None:
        """τ for each relation id in ``relations``; ``None`` (meaning τ = 1) when disabled."""
        if self.theta is None:
            return None
        return torch.sigmoid(self.theta[relations])
