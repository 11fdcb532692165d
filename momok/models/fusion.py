"""MuJoD's joint modality (the paper's Eqs. 3–4): attention fusion of per-modality vectors.

For inputs ``x_m`` (one per modality), projections ``P_m`` into a common space and one attention vector
``u`` shared by all modalities::

    α_m = softmax_m( u^T P_m(x_m) ),    fused = Σ_m α_m P_m(x_m)

``adaptive=False`` is the "w/o adaptive fusion" ablation: α_m = 1/|M|. ``P_m`` is a two-layer MLP with
ReLU (the paper) or an affine map (``projection="linear"``).

With an affine ``P_m`` the fusion of expert mixtures factorises exactly: since the gates sum to one,
``P_m(Σ_k g_k h_k) = Σ_k g_k P_m(h_k)`` and ``u^T P_m(Σ_k g_k h_k) = Σ_k g_k u^T P_m(h_k)``, so projecting
the K expert outputs once (:meth:`AttentionFusion.project_experts`) lets every relation's fused vector be
a weighted sum of ``M·K`` precomputed vectors (:meth:`AttentionFusion.fuse_mixtures`). An MLP has no such
form: relation-dependent inputs must go through the MLP once per relation.
"""

from __future__ import annotations

import torch
from torch import nn


def projection(in_dim: int, out_dim: int, kind: str, generator: torch.Generator | None = None) -> nn.Module:
    """``kind="linear"``: ``Linear(in, out)``; ``"mlp"``: ``Linear(in, out) → ReLU → Linear(out, out)``."""
    if kind == "linear":
        layers = [nn.Linear(in_dim, out_dim)]
    elif kind == "mlp":
        layers = [nn.Linear(in_dim, out_dim), nn.ReLU(), nn.Linear(out_dim, out_dim)]
    else:
        raise ValueError(f"projection kind must be 'linear' or 'mlp', not {kind!r}")
    for layer in layers:
        if isinstance(layer, nn.Linear):
            bound = 1.0 / in_dim**0.5 if layer is layers[0] else 1.0 / out_dim**0.5
            with torch.no_grad():
                layer.weight.copy_((torch.rand(layer.weight.shape, generator=generator) * 2 - 1) * bound)
                layer.bias.copy_((torch.rand(layer.bias.shape, generator=generator) * 2 - 1) * bound)
    return nn.Sequential(*layers)


class AttentionFusion(nn.Module):
    """``fused = Σ_m α_m P_m(x_m)`` over modalities in the order of ``keys``."""

    def __init__(
        self,
        keys: list[str],
        in_dim: int,
        out_dim: int,
        *,
        kind: str = "mlp",
        adaptive: bool = True,
        generator: torch.Generator | None = None,
    ):
        super().__init__()
        self.keys = list(keys)
        self.kind = kind
        self.adaptive = adaptive
        self.projections = nn.ModuleDict({k: projection(in_dim, out_dim, kind, generator) for k in self.keys})
        bound = 1.0 / out_dim**0.5
        self.attention = nn.Parameter((torch.rand(out_dim, generator=generator) * 2 - 1) * bound)

    def weights(self, logits: torch.Tensor) -> torch.Tensor:
        """α ``[..., M]`` from attention logits ``[..., M]`` (uniform when not adaptive)."""
        if not self.adaptive:
            return torch.full_like(logits, 1.0 / logits.shape[-1])
        return torch.softmax(logits, dim=-1)

    def forward(self, inputs: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """``inputs[key]: [N, in_dim]`` -> (fused ``[N, out_dim]``, α ``[N, M]``)."""
        projected = torch.stack([self.projections[k](inputs[k]) for k in self.keys], dim=1)
        alpha = self.weights(projected @ self.attention)
        return (alpha.unsqueeze(-1) * projected).sum(1), alpha

    def project_experts(self, expert_outputs: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """Affine ``P_m`` only: ``P_m(h_k)`` stacked ``[N, M, K, out]`` and ``u^T P_m(h_k)`` ``[N, M, K]``."""
        if self.kind != "linear":
            raise ValueError("project_experts needs an affine projection (kind='linear')")
        projected = torch.stack([self.projections[k](expert_outputs[k]) for k in self.keys], dim=1)
        return projected, projected @ self.attention

    def fuse_mixtures(
        self, projected: torch.Tensor, attention_logits: torch.Tensor, gate_weights: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Exact fusion of ``x_m = Σ_k g_mk h_mk`` from :meth:`project_experts` outputs.

        gate_weights: ``[N, M, K]``. Returns (fused ``[N, out]``, α ``[N, M]``); cost ``N·M·K·out``.
        """
        alpha = self.weights((gate_weights * attention_logits).sum(-1))
        weights = (alpha.unsqueeze(-1) * gate_weights).unsqueeze(-1)
        return (weights * projected).sum((1, 2)), alpha
