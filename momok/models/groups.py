"""Queries grouped by relation id, so that per-relation work is done once per distinct relation.

A batch of B queries holds U ≤ 2R distinct relations. Grouping sorts the queries by relation (stably),
hands each group's rows to a function once, and puts the results back in query order. The Tucker
scorer contracts its core once per group (``tucker.py``), the per-query core dropout draws its masks in
group order (``core_dropout.py``) and the relation-guided candidates are scored per group
(``guided.py``).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class RelationGroups:
    """Queries grouped by relation id.

    relations: ``LongTensor[U]`` the distinct relation ids, sorted; inverse: ``LongTensor[B]`` position of
    each query's relation in ``relations``; order: ``LongTensor[B]`` query indices sorted by group
    (stable); restore: ``LongTensor[B]`` inverse permutation of ``order``; counts: queries per group.
    """

    relations: torch.Tensor
    inverse: torch.Tensor
    order: torch.Tensor
    restore: torch.Tensor
    counts: list[int]

    @classmethod
    def of(cls, relations: torch.Tensor) -> "RelationGroups":
        unique, inverse, counts = torch.unique(relations, sorted=True, return_inverse=True, return_counts=True)
        order = torch.argsort(inverse, stable=True)
        restore = torch.empty_like(order)
        restore[order] = torch.arange(order.numel(), device=order.device)
        return cls(unique, inverse, order, restore, counts.tolist())

    def __len__(self) -> int:
        return len(self.counts)

    def map_groups(self, fn, *per_query: torch.Tensor) -> torch.Tensor:
        """``fn(u, *rows_of_group_u) -> Tensor[n_u, ...]`` for each group, reassembled in query order."""
        sorted_inputs = [t[self.order] for t in per_query]
        pieces = []
        for u, parts in enumerate(zip(*(torch.split(t, self.counts) for t in sorted_inputs))):
            pieces.append(fn(u, *parts))
        return torch.cat(pieces)[self.restore]
