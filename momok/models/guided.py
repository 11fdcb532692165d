"""Relation-guided candidate scores (the paper's ReMoKE on the candidate side), without materialising
every relation's candidates.

With candidate relation guidance, candidate e of a query with relation r is encoded as
``e^m_r = Σ_k g_k(e, r) h^m_{e,k}`` with ``g(e, r) = softmax(logits^m_e / τ_r)``, so a batch with U
distinct relations has U encodings of all E entities per modality, and a joint candidate per relation
(MuJoD's fusion of those encodings). The functions here give the exact scores ``q · e_r`` of each
query against its relation's candidates, choosing the form by cost; ``RelationGroups`` (``groups.py``)
group the queries by relation, and every group u's gates ``[E, K]`` are computed once (``[U, E, K]``):

* :func:`modality_scores`, with autograd (training): every query against the K expert outputs of every
  entity in one ``[B, d] @ [d, E·K]`` product per modality, then each group's gates weigh its rows
  (``Σ_k g_k(e, u)(q·h_k(e))``, as the gates sum to one; :func:`per_expert_scores`). K times the
  products of scoring mixtures, but big products whose backward is two big products, instead of
  per-group passes over the ``[E, K, d]`` expert outputs and their gradients;
* :func:`modality_scores` without autograd (evaluation, batches in relation order): each group's
  ``[E, d]`` candidate mixtures, then one ``[n_u, d] @ [d, E]`` product;
* :func:`joint_scores` with the MLP fusion: :meth:`AttentionFusion.score_guided_mlp` over chunks of
  candidates with all groups inside a chunk (first MLP layer of the expert outputs computed once per
  step, :func:`fusion_tables`; second layer folded into the queries); with the affine fusion: one group
  at a time from the projected expert outputs, recomputed in the backward pass when ``recompute``.

The operation counts of these forms and measured timings are in ``benchmarks/README.md``.
"""

from __future__ import annotations

import torch
from torch.utils.checkpoint import checkpoint

from momok.models.experts import gates, mix
from momok.models.fusion import AttentionFusion
from momok.models.groups import RelationGroups


def group_gates(logits: dict[str, torch.Tensor], tau: torch.Tensor) -> dict[str, torch.Tensor]:
    """Every group's candidate gates ``softmax(logits / τ_u)``: ``[U, E, K]`` per modality, from gate
    logits ``[E, K]`` and the groups' temperatures ``τ [U]``."""
    return {k: gates(x.unsqueeze(0), tau.unsqueeze(1)) for k, x in logits.items()}


def modality_scores(
    queries: dict[str, torch.Tensor], experts: dict[str, torch.Tensor], gate_all: dict[str, torch.Tensor],
    groups: RelationGroups,
) -> dict[str, torch.Tensor]:
    """``[B, E]`` per modality: queries ``[B, d]``, expert outputs ``[E, K, d]``, gates ``[U, E, K]``."""
    if torch.is_grad_enabled():
        return {k: per_expert_scores(queries[k], experts[k], g, groups) for k, g in gate_all.items()}
    return {k: groups.map_groups(lambda u, q, k=k: q @ mix(gate_all[k][u], experts[k]).T, queries[k])
            for k in gate_all}


def per_expert_scores(queries, expert_outputs, gate_values, groups: RelationGroups) -> torch.Tensor:
    """``score[b, e] = Σ_k g[u_b, e, k] (q_b · h_k(e))``: queries ``[B, d]``, expert outputs ``[E, K, d]``,
    the groups' gates ``[U, E, K]``; ``[B, E]`` in query order."""
    num_entities, num_experts, dim = expert_outputs.shape
    per_expert = queries[groups.order] @ expert_outputs.reshape(-1, dim).T  # [B, E·K], rows in group order
    rows = per_expert.view(-1, num_entities, num_experts).split(groups.counts)
    return torch.cat([(p * g).sum(-1) for p, g in zip(rows, gate_values.unbind(0))])[groups.restore]


def fusion_tables(fusion: AttentionFusion, experts: dict[str, torch.Tensor]):
    """What :func:`joint_scores` needs of the expert outputs, computed once per step: the first MLP
    layer of every expert output (MLP fusion) or the projected expert outputs (affine fusion)."""
    if fusion.kind == "mlp":
        return fusion.first_layer(experts)
    return fusion.project_experts(experts)


def joint_scores(
    query: torch.Tensor, tables, gate_all: dict[str, torch.Tensor], groups: RelationGroups,
    fusion: AttentionFusion, *, recompute: bool,
) -> torch.Tensor:
    """``[B, E]`` scores of the joint queries ``[B, d]`` against their relation's fused candidates;
    ``tables`` from :func:`fusion_tables`, gates ``[U, E, K]`` per modality in ``fusion.keys`` order.
    ``recompute``: with the affine fusion, recompute each group's candidates in the backward pass
    instead of storing them."""
    mods = fusion.keys
    if fusion.kind == "mlp":
        stacked = torch.stack([gate_all[k].transpose(1, 2) for k in mods], dim=2)  # [U, K, M, E]
        return fusion.score_guided_mlp(query[groups.order], tables, stacked, groups.counts)[groups.restore]

    def joint_group(gate_values, q):
        fused, _ = fusion.fuse_mixtures(*tables, gate_values)
        return q @ fused.T

    def group_fn(u, q):
        gate_values = torch.stack([gate_all[k][u] for k in mods], dim=1)  # [E, M, K]
        if recompute:
            return checkpoint(joint_group, gate_values, q, use_reentrant=False, preserve_rng_state=False)
        return joint_group(gate_values, q)

    return groups.map_groups(group_fn, query)
