"""MuJoD's joint modality (the paper's Eqs. 3–4): attention fusion of per-modality vectors.

For inputs ``x_m`` (one per modality), projections ``P_m`` into a common space and one attention vector
``u`` shared by all modalities::

    α_m = softmax_m( u^T P_m(x_m) ),    fused = Σ_m α_m P_m(x_m)

``adaptive=False`` is the "w/o adaptive fusion" ablation: α_m = 1/|M|. ``P_m`` is a two-layer MLP with
ReLU (the paper) or an affine map (``projection="linear"``).

With an affine ``P_m`` the fusion of expert mixtures factorises exactly: since the gates sum to one,
``P_m(Σ_k g_k h_k) = Σ_k g_k P_m(h_k)`` and ``u^T P_m(Σ_k g_k h_k) = Σ_k g_k u^T P_m(h_k)``, so projecting
the K expert outputs once (:meth:`AttentionFusion.project_experts`) lets every relation's fused vector be
a weighted sum of ``M·K`` precomputed vectors (:meth:`AttentionFusion.fuse_mixtures`).

With the two-layer MLP ``P_m(x) = relu(x A_m + a_m) B_m + b_m`` only the first layer factorises:
``z_m = relu(Σ_k g_mk (h_mk A_m + a_m))`` (first layer of the K expert outputs computed once,
:meth:`AttentionFusion.first_layer`). The second layer is never applied to the candidates: the
attention logit is ``u^T P_m(z) = z·(B_m u) + b_m·u`` and a query q scores the fused candidate as
``q·Σ_m α_m P_m(z_m) = Σ_m α_m ((q B_m^T)·z_m + q·b_m)`` (:meth:`AttentionFusion.score_mlp_mixtures`), so
scoring n queries against E candidates costs ``E·M·K·h`` (mixing) + ``M·n·E·h`` (one matmul per
modality) instead of ``E·M·2·d²`` for pushing every candidate through the MLP. Exact (same function).
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

    def first_layer(self, expert_outputs: dict[str, torch.Tensor]) -> torch.Tensor:
        """MLP ``P_m`` only: the first (affine) layer of every expert output, ``[N, M, K, hidden]``."""
        if self.kind != "mlp":
            raise ValueError("first_layer needs the two-layer MLP projection (kind='mlp')")
        return torch.stack([self.projections[k][0](expert_outputs[k]) for k in self.keys], dim=1)

    def score_mlp_mixtures(
        self, queries: torch.Tensor, hidden: torch.Tensor, gate_weights: torch.Tensor
    ) -> torch.Tensor:
        """``q · fused(e)`` for the candidates ``x_m = Σ_k g_mk h_mk`` without applying the second layer.

        queries: ``[n, out]``; hidden: :meth:`first_layer` ``[N, M, K, h]``; gate_weights ``[N, M, K]``.
        Returns the scores ``[n, N]``.
        """
        n_entities, n_mod, n_exp, width = hidden.shape
        second = [self.projections[k][2] for k in self.keys]
        weight = torch.stack([layer.weight for layer in second])  # [M, out, h]
        bias = torch.stack([layer.bias for layer in second])  # [M, out]
        # z_m = relu(Σ_k g_mk A_m(h_mk)): one [1, K] @ [K, h] product per (entity, modality)
        z = torch.bmm(gate_weights.reshape(-1, 1, n_exp), hidden.reshape(-1, n_exp, width))
        z = torch.relu(z.view(n_entities, n_mod, width))
        # attention logits u^T P_m(z_m) = z_m · (B_m^T u) + b_m · u
        logits = (z * (self.attention @ weight)).sum(-1) + bias @ self.attention  # [N, M]
        alpha = self.weights(logits)
        # (q B_m)·z_m + q·b_m for every modality: [M, n, N]
        per_modality = torch.baddbmm(
            (bias @ queries.T).unsqueeze(-1), torch.matmul(queries, weight), z.permute(1, 2, 0)
        )
        return (per_modality * alpha.T.unsqueeze(1)).sum(0)
