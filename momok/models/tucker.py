"""TuckER scoring (Balažević et al. 2019), the decoder of every MoMoK modality.

The score of a triple is the Tucker product of a core tensor ``W ∈ R^{d_r × d × d}`` with the relation,
head and tail embeddings::

    φ(h, r, t) = W ×₁ r ×₂ e_h ×₃ e_t = Σ_{i,j,k} W[i, j, k] r[i] e_h[j] e_t[k]

1-N scoring computes the query vector ``q = e_h W_r`` with ``W_r = W ×₁ r ∈ R^{d × d}`` once per query
and scores all candidates with one matrix product ``q @ E^T``. TuckER's regularisers are kept (names as in
the TuckER paper and code): ``input_dropout`` on the (batch-normalised) head embedding,
``hidden_dropout1`` on the contracted core ``W_r``, ``hidden_dropout2`` on the (batch-normalised) query
vector; the authors of MoMoK hard-code 0.3 / 0.4 / 0.5.

Fast path. The contraction with the relation is done once per DISTINCT relation of the batch
(``[U, d, d]``, U ≤ 2R) instead of once per query (``[B, d, d]``), and each query then multiplies its head
embedding with its relation's ``W_r``: queries are grouped by relation (``groups.py``) and each group
is one ``[n_u, d] @ [d, d]`` product (a Python loop over distinct relations, never over queries).
Cost: ``U·d_r·d² + B·d²`` multiply-adds instead of ``B·d_r·d² + B·d²``.

The hidden dropout on ``W_r`` is the only part that is per query in TuckER (each query draws its own
``d × d`` mask). ``core_dropout`` selects how it is applied while training (identical at inference):

* ``per_query``: exact TuckER and the authors' code: every query gets an independent Bernoulli mask on
  its own copy of ``W_r`` (``core_dropout.py``: a ``bool [B, d, d]`` mask and cache-sized chunks of at
  most ``core_chunk_elements`` masked core entries; no float ``[B, d, d]`` tensor).
* ``per_relation``: one mask per distinct relation in the batch, shared by that relation's queries
  (``U·d²`` random numbers; correlated noise within a relation group).
* ``output``: dropout on the ``d`` outputs of ``e_h W_r`` instead of on the ``d²`` core entries
  (``B·d`` random numbers; same mean, different noise).
* ``gaussian``: "fast dropout" (Wang & Manning 2013): per query, the output ``y_k = Σ_j x_j m_jk W_jk/(1-p)``
  is replaced by a Gaussian with the same mean ``Σ_j x_j W_jk`` and variance
  ``p/(1-p) Σ_j x_j² W_jk²``, computed with a second grouped product; no ``d²`` mask per query.
"""

from __future__ import annotations

from typing import Literal, get_args

import torch
import torch.nn.functional as F
from torch import nn

from momok.models.core_dropout import per_query_core_dropout
from momok.models.groups import RelationGroups

#: how ``hidden_dropout1`` is applied while training (module docstring)
CoreDropout = Literal["per_query", "per_relation", "output", "gaussian"]
CORE_DROPOUT_MODES: tuple[str, ...] = get_args(CoreDropout)


def grouped_matmul(x: torch.Tensor, matrices: torch.Tensor, groups: RelationGroups) -> torch.Tensor:
    """``out[b] = x[b] @ matrices[groups.inverse[b]]`` with one matrix product per group."""
    return groups.map_groups(lambda u, rows: rows @ matrices[u], x)


class TuckerScorer(nn.Module):
    """The query side of a 1-N TuckER scorer: ``q = BN1(e_h W_r)`` with dropouts; score = ``q @ E^T``."""

    def __init__(
        self,
        entity_dim: int,
        relation_dim: int,
        *,
        input_dropout: float = 0.3,
        hidden_dropout1: float = 0.4,
        hidden_dropout2: float = 0.5,
        batch_norm: bool = True,
        core_dropout: str = "per_query",
        core_chunk_elements: int = 1 << 19,
        generator: torch.Generator | None = None,
    ):
        super().__init__()
        if core_dropout not in CORE_DROPOUT_MODES:
            raise ValueError(f"core_dropout must be one of {CORE_DROPOUT_MODES}, not {core_dropout!r}")
        self.entity_dim = entity_dim
        self.relation_dim = relation_dim
        self.input_dropout = input_dropout
        self.hidden_dropout1 = hidden_dropout1
        self.hidden_dropout2 = hidden_dropout2
        self.core_dropout = core_dropout
        self.core_chunk_elements = core_chunk_elements
        # TuckER initialises the core uniformly in [-1, 1]; the authors use Xavier-uniform.
        self.core = nn.Parameter(torch.empty(relation_dim, entity_dim, entity_dim))
        nn.init.xavier_uniform_(self.core, generator=generator)
        self.bn0 = nn.BatchNorm1d(entity_dim) if batch_norm else nn.Identity()
        self.bn1 = nn.BatchNorm1d(entity_dim) if batch_norm else nn.Identity()

    def contract(self, relation_embeddings: torch.Tensor) -> torch.Tensor:
        """``W ×₁ r`` for each row of ``relation_embeddings [U, d_r]`` -> ``[U, d, d]``."""
        d = self.entity_dim
        return (relation_embeddings @ self.core.reshape(self.relation_dim, d * d)).reshape(-1, d, d)

    def forward(
        self, heads: torch.Tensor, relations: torch.Tensor | None, groups: RelationGroups,
        cores: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Query vectors ``[B, d]``.

        heads: ``[B, d]`` head embeddings, one per query; relations: ``[U, d_r]`` embeddings of the
        distinct relations ``groups.relations`` (row u belongs to group u), or None with ``cores``,
        their already contracted cores ``[U, d, d]`` (:meth:`contract`).
        """
        x = F.dropout(self.bn0(heads), self.input_dropout, self.training)
        if cores is None:
            cores = self.contract(relations)
        p = self.hidden_dropout1
        noisy = self.training and p > 0
        if noisy and self.core_dropout == "per_query":
            hidden = per_query_core_dropout(x, cores, groups, p, self.core_chunk_elements)
        else:
            if noisy and self.core_dropout == "per_relation":
                cores = F.dropout(cores, p, True)
            hidden = grouped_matmul(x, cores, groups)
            if noisy and self.core_dropout == "output":
                hidden = F.dropout(hidden, p, True)
            elif noisy and self.core_dropout == "gaussian":
                variance = grouped_matmul(x.square(), cores.square(), groups) * (p / (1 - p))
                hidden = hidden + variance.clamp_min(1e-20).sqrt() * torch.randn_like(hidden)
        return F.dropout(self.bn1(hidden), self.hidden_dropout2, self.training)
