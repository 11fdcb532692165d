"""Shared input side of the multi-modal baselines (TBKGC, AdaMF): feature tables, projections, placeholders.

Both read the same feature files as MoMoK (``BuildContext.features``: modality -> FeatureTable with
``features [E, D]`` and ``mask [E]``), so the noisy files of Figure 3 go through unchanged. For modality
``m`` an affine projection ``P_m: R^{D_m} -> R^{d_m}`` maps an entity's feature row to the model's
space; an entity without the modality (``mask = 0``) gets a learned placeholder vector ``z_m ∈ R^{d_m}``
instead of ``P_m`` of its filler row. A modality the config names but whose file is absent
(``features.allow_missing: true``) has no table: every entity gets its placeholder.

``train_features=True`` makes the raw feature rows trainable parameters, as the official code of both
baselines does (``nn.Embedding.from_pretrained(...).requires_grad_(True)``); ``False`` (the baselines'
default) keeps them fixed (buffers).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from momok.modalities import FILE_MODALITIES, MODALITIES
from momok.models.init import uniform, uniform_linear
from momok.models.inputs import (
    feature_rows,
    register_features,
    table_copy,
    with_placeholder,
)


def check_modalities(modalities, *, require_file: bool = True) -> list[str]:
    """The file modalities of a multi-modal baseline's ``modalities`` option; ValueError when invalid.
    ``require_file=False`` accepts ``[structure]`` alone (a model's structure-only variant)."""
    names = list(modalities)
    unknown = [m for m in names if m not in MODALITIES]
    if unknown:
        raise ValueError(f"modalities: unknown {unknown[0]!r}; choose from structure, image, text")
    if "structure" not in names:
        raise ValueError("modalities must include structure (the model's entity embeddings)")
    if len(set(names)) != len(names):
        raise ValueError(f"modalities lists a modality twice: {names}")
    files = [m for m in FILE_MODALITIES if m in names]
    if require_file and not files:
        raise ValueError("a multi-modal baseline needs image and/or text in modalities")
    return files


class ModalityInputs(nn.Module):
    """Projected modality vectors ``P_m x_m`` (placeholder ``z_m`` where the modality is missing)."""

    def __init__(self, modalities: list[str], out_dims: dict[str, int], features: dict, num_entities: int, *,
                 train_features: bool, generator: torch.Generator | None):
        super().__init__()
        self.modalities = list(modalities)
        self.num_entities = num_entities
        self.projections = nn.ModuleDict()
        self.placeholders = nn.ParameterDict()
        self.has_table: dict[str, bool] = {}
        for m in self.modalities:
            table = features.get(m)
            out = out_dims[m]
            self.placeholders[m] = nn.Parameter(uniform(out, 1.0, generator) / math.sqrt(out))
            self.has_table[m] = table is not None
            if table is None:
                continue
            rows, mask = table_copy(table, m, num_entities)
            register_features(self, m, rows, mask, trainable=train_features)
            self.projections[m] = uniform_linear(rows.shape[1], out, generator)

    def forward(self, m: str, ids: torch.Tensor | None) -> torch.Tensor:
        """``[..., d_m]`` vectors of modality ``m`` for entity ``ids`` (``None``: all entities)."""
        placeholder = self.placeholders[m]
        if not self.has_table[m]:
            shape = (self.num_entities,) if ids is None else tuple(ids.shape)
            return placeholder.expand(*shape, placeholder.shape[0])
        if ids is None:
            raw, mask = feature_rows(self, m)
            return with_placeholder(self.projections[m](raw), mask, placeholder)
        # project each distinct entity once (negatives repeat entities; raw rows can be 4096-d)
        unique, inverse = torch.unique(ids.reshape(-1), return_inverse=True)
        raw, mask = feature_rows(self, m, unique)
        rows = with_placeholder(self.projections[m](raw), mask, placeholder)
        return rows[inverse].reshape(*ids.shape, rows.shape[-1])
