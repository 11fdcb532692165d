"""Modality inputs from feature tables, shared by MoMoK and the multi-modal baselines.

A feature-file modality ``m`` lives on its model as two tensors, ``raw_<m>`` (the feature rows
``[E, D]``: a parameter when the features are fine-tuned, else a buffer) and ``mask_<m>`` (``bool [E]``,
whether the entity has the modality). An entity's input is the projection of its row, or the
modality's learned placeholder vector where the mask is False.
"""

from __future__ import annotations

import torch
from torch import nn


def table_copy(table, modality: str, num_entities: int) -> tuple[torch.Tensor, torch.Tensor]:
    """A detached float copy of a feature table's rows ``[E, D]`` and a bool copy of its mask ``[E]``;
    ValueError when the table does not have one row per entity."""
    if table.features.shape[0] != num_entities:
        raise ValueError(f"{modality} features have {table.features.shape[0]} rows for {num_entities} entities")
    return table.features.detach().float().clone(), table.mask.detach().bool().clone()


def register_features(module: nn.Module, key: str, rows: torch.Tensor, mask: torch.Tensor, *,
                      trainable: bool) -> None:
    """Register ``rows`` as ``raw_<key>`` (parameter when ``trainable``, else buffer) and ``mask`` as
    the buffer ``mask_<key>`` of ``module``."""
    if trainable:
        module.register_parameter(f"raw_{key}", nn.Parameter(rows))
    else:
        module.register_buffer(f"raw_{key}", rows)
    module.register_buffer(f"mask_{key}", mask)


def feature_rows(module: nn.Module, key: str, ids: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """``(raw, mask)`` of modality ``key`` for entity ``ids`` (all entities when None)."""
    raw, mask = getattr(module, f"raw_{key}"), getattr(module, f"mask_{key}")
    return (raw, mask) if ids is None else (raw[ids], mask[ids])


def with_placeholder(projected: torch.Tensor, mask: torch.Tensor, placeholder: torch.Tensor) -> torch.Tensor:
    """``projected [..., d]`` where ``mask [...]`` holds, ``placeholder [d]`` elsewhere."""
    return torch.where(mask.unsqueeze(-1), projected, placeholder)
