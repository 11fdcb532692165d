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
``q·Σ_m α_m P_m(z_m) = Σ_m α_m ((q B_m^T)·z_m + q·b_m)`` (:meth:`AttentionFusion.score_guided_mlp`,
for the candidates of every relation group of a batch), so scoring n queries against E candidates of
one relation costs ``E·M·K·h`` (mixing) + ``M·n·E·h`` (one product per modality) instead of
``E·M·2·d²`` for pushing every candidate through the MLP. Exact (same function).
"""

from __future__ import annotations

import torch
from torch import nn

from momok.models.init import uniform, uniform_linear_


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
            uniform_linear_(layer, 1.0 / layer.in_features**0.5, generator)
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
        self.attention = nn.Parameter(uniform(out_dim, bound, generator))

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
        """MLP ``P_m`` only: the first (affine) layer of every expert output ``[N, K, in]``, as
        ``[K, M, N, hidden]`` (the layout :class:`GuidedMLPScores` mixes fastest)."""
        if self.kind != "mlp":
            raise ValueError("first_layer needs the two-layer MLP projection (kind='mlp')")
        return torch.stack([self.projections[k][0](expert_outputs[k]).transpose(0, 1) for k in self.keys], dim=1)

    def score_guided_mlp(
        self, queries: torch.Tensor, hidden: torch.Tensor, gate_weights: torch.Tensor, counts: list[int],
        entity_chunk: int = 512,
    ) -> torch.Tensor:
        """``q · fused(e, u)`` for the candidates ``x_m = Σ_k g_mk(e, u) h_mk(e)`` of every relation group u,
        without applying the second MLP layer to any candidate.

        queries: ``[B, out]`` sorted by group (``counts[u]`` rows for group u); hidden: :meth:`first_layer`
        ``[K, M, E, h]``; gate_weights ``[U, K, M, E]``. Returns the scores ``[B, E]`` (rows as queries).
        The second layer ``P_m(z) = z B_m^T + b_m`` is folded into the queries: with
        ``z_m = relu(Σ_k g_mk A_m(h_mk))``, ``u^T P_m(z_m) = z_m·(B_m^T u) + b_m·u`` and
        ``q·Σ_m α_m P_m(z_m) = Σ_m α_m ((q B_m)·z_m + q·b_m)``, one batched ``[M, n_u, h] @ [M, h, c]``
        product per group and chunk of c candidates. See
        :class:`GuidedMLPScores` for the chunking and the backward pass.
        """
        if self.kind != "mlp":
            raise ValueError("score_guided_mlp needs the two-layer MLP projection (kind='mlp')")
        second = [self.projections[k][2] for k in self.keys]
        weight = torch.stack([layer.weight for layer in second])  # [M, out, h]
        bias = torch.stack([layer.bias for layer in second])  # [M, out]
        projected_queries = torch.matmul(queries, weight)  # [M, B, h]: q B_m
        query_bias = queries @ bias.T  # [B, M]
        logit_weight = self.attention @ weight  # [M, h]: u^T B_m
        logit_bias = bias @ self.attention  # [M]
        return GuidedMLPScores.apply(projected_queries, query_bias, hidden, gate_weights, logit_weight, logit_bias,
                                     counts, self.adaptive, entity_chunk)


class GuidedMLPScores(torch.autograd.Function):
    """The scores of :meth:`AttentionFusion.score_guided_mlp`, computed over chunks of candidate entities
    with every relation group inside a chunk, so that the chunk's first-layer outputs and their gradient
    stay in the CPU cache while all groups use them. Forward, per chunk of c candidates and group u
    (``n_u`` queries)::

        z_m = relu(Σ_k g[u, k, m] · hidden[k, m])            [M, c, h]   (K fused multiply-adds)
        α = softmax_m(z_m · w_m + b_m)                        [M, c]      (1/M when not adaptive)
        scores[rows_u, chunk] = Σ_m α_m ⊙ (Q_m z_mᵀ) + β_u α  Q_m [n_u, h] per modality, β_u [n_u, M]

    The backward pass recomputes ``z`` and ``α`` per chunk and group (nothing per group is saved) and
    accumulates the gradients of ``hidden``, the gates and the attention terms chunk by chunk.
    Exact: the same function as pushing each group's candidates through the MLP (tests compare them).
    """

    @staticmethod
    def _activations(hidden_chunk, gates_chunk, logit_weight, logit_bias, adaptive):
        """hidden_chunk ``[K, M, c, h]``, gates_chunk ``[K, M, c]`` -> pre, z ``[M, c, h]``, α ``[M, c]``."""
        pre = hidden_chunk[0] * gates_chunk[0].unsqueeze(-1)
        for k in range(1, hidden_chunk.shape[0]):
            pre.addcmul_(hidden_chunk[k], gates_chunk[k].unsqueeze(-1))
        z = torch.relu(pre)
        if adaptive:  # logits z_m · w_m + b_m (a batched matrix-vector product is much slower on a CPU)
            alpha = torch.softmax(torch.linalg.vecdot(z, logit_weight.unsqueeze(1)) + logit_bias.unsqueeze(1), dim=0)
        else:
            alpha = z.new_full(z.shape[:2], 1.0 / z.shape[0])
        return pre, z, alpha

    @staticmethod
    def _blocks(counts: list[int], num_entities: int, entity_chunk: int):
        for e0 in range(0, num_entities, entity_chunk):
            e1 = min(e0 + entity_chunk, num_entities)
            r0 = 0
            for u, n in enumerate(counts):
                yield e0, e1, u, r0, r0 + n
                r0 += n

    @staticmethod
    def forward(ctx, projected_queries, query_bias, hidden, gate_weights, logit_weight, logit_bias, counts,
                adaptive: bool, entity_chunk: int):
        """projected_queries ``[M, B, h]``, query_bias ``[B, M]``, hidden ``[K, M, E, h]``, gate_weights
        ``[U, K, M, E]``, logit_weight ``[M, h]``, logit_bias ``[M]`` -> scores ``[B, E]``."""
        num_entities = hidden.shape[2]
        scores = projected_queries.new_empty(projected_queries.shape[1], num_entities)
        for e0, e1, u, r0, r1 in GuidedMLPScores._blocks(counts, num_entities, entity_chunk):
            _, z, alpha = GuidedMLPScores._activations(hidden[:, :, e0:e1], gate_weights[u, :, :, e0:e1],
                                                       logit_weight, logit_bias, adaptive)
            per_modality = torch.bmm(projected_queries[:, r0:r1], z.transpose(1, 2))  # [M, n, c]
            scores[r0:r1, e0:e1] = (per_modality * alpha.unsqueeze(1)).sum(0) + query_bias[r0:r1] @ alpha
        ctx.save_for_backward(projected_queries, query_bias, hidden, gate_weights, logit_weight, logit_bias)
        ctx.counts, ctx.adaptive, ctx.entity_chunk = counts, adaptive, entity_chunk
        return scores

    @staticmethod
    def backward(ctx, grad_scores):
        projected_queries, query_bias, hidden, gate_weights, logit_weight, logit_bias = ctx.saved_tensors
        n_experts, _, num_entities, _ = hidden.shape
        d_queries = torch.zeros_like(projected_queries)
        d_query_bias = torch.zeros_like(query_bias)
        d_hidden = torch.zeros_like(hidden)
        d_gates = torch.zeros_like(gate_weights)
        d_logit_weight = torch.zeros_like(logit_weight)
        d_logit_bias = torch.zeros_like(logit_bias)
        for e0, e1, u, r0, r1 in GuidedMLPScores._blocks(ctx.counts, num_entities, ctx.entity_chunk):
            hidden_chunk, gates_chunk = hidden[:, :, e0:e1], gate_weights[u, :, :, e0:e1]
            pre, z, alpha = GuidedMLPScores._activations(hidden_chunk, gates_chunk, logit_weight, logit_bias,
                                                         ctx.adaptive)
            g = grad_scores[r0:r1, e0:e1]  # [n, c]
            queries = projected_queries[:, r0:r1]  # [M, n, h]
            d_queries[:, r0:r1] += torch.bmm(g.unsqueeze(0) * alpha.unsqueeze(1), z)
            d_query_bias[r0:r1] += g @ alpha.T
            back = torch.matmul(g.T, queries)  # [M, c, h]: Σ_n g[n, c] Q_m[n]
            d_z = back * alpha.unsqueeze(-1)
            if ctx.adaptive:
                d_alpha = torch.linalg.vecdot(back, z) + query_bias[r0:r1].T @ g  # [M, c]
                d_logit = alpha * (d_alpha - (d_alpha * alpha).sum(0, keepdim=True))
                d_z.addcmul_(d_logit.unsqueeze(-1), logit_weight.unsqueeze(1))
                d_logit_weight += torch.bmm(d_logit.unsqueeze(1), z).squeeze(1)
                d_logit_bias += d_logit.sum(1)
            d_pre = torch.ops.aten.threshold_backward(d_z, pre, 0)  # ReLU's gradient, one vectorised pass
            for k in range(n_experts):
                d_hidden[k, :, e0:e1].addcmul_(d_pre, gates_chunk[k].unsqueeze(-1))
                d_gates[u, k, :, e0:e1] = (hidden_chunk[k] * d_pre).sum(-1)
        return d_queries, d_query_bias, d_hidden, d_gates, d_logit_weight, d_logit_bias, None, None, None
