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

FILE_MODALITIES = ("image", "text")


def check_modalities(modalities, *, require_file: bool = True) -> list[str]:
    """The file modalities of a multi-modal baseline's ``modalities`` option; ValueError when invalid.
    ``require_file=False`` accepts ``[structure]`` alone (a model's structure-only variant)."""
    names = list(modalities)
    unknown = [m for m in names if m not in ("structure",) + FILE_MODALITIES]
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


def uniform_linear(in_dim: int, out_dim: int, generator: torch.Generator | None) -> nn.Linear:
    """``nn.Linear`` with PyTorch's default init (uniform ±1/√in) drawn from ``generator``."""
    layer = nn.Linear(in_dim, out_dim)
    bound = 1.0 / math.sqrt(in_dim)
    with torch.no_grad():
        layer.weight.copy_((torch.rand(layer.weight.shape, generator=generator) * 2 - 1) * bound)
        layer.bias.copy_((torch.rand(layer.bias.shape, generator=generator) * 2 - 1) * bound)
    return layer


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
            self.placeholders[m] = nn.Parameter((torch.rand(out, generator=generator) * 2 - 1) / math.sqrt(out))
            self.has_table[m] = table is not None
            if table is None:
                continue
            if table.features.shape[0] != num_entities:
                raise ValueError(f"{m} features have {table.features.shape[0]} rows for {num_entities} entities")
            rows = table.features.detach().float().clone()
            if train_features:
                setattr(self, f"raw_{m}", nn.Parameter(rows))
            else:
                self.register_buffer(f"raw_{m}", rows)
            self.register_buffer(f"mask_{m}", table.mask.detach().bool().clone())
            self.projections[m] = uniform_linear(rows.shape[1], out, generator)

    def forward(self, m: str, ids: torch.Tensor | None) -> torch.Tensor:
        """``[..., d_m]`` vectors of modality ``m`` for entity ``ids`` (``None``: all entities)."""
        placeholder = self.placeholders[m]
        if not self.has_table[m]:
            shape = (self.num_entities,) if ids is None else tuple(ids.shape)
            return placeholder.expand(*shape, placeholder.shape[0])
        raw, mask = getattr(self, f"raw_{m}"), getattr(self, f"mask_{m}")
        if ids is None:
            return torch.where(mask.unsqueeze(-1), self.projections[m](raw), placeholder)
        # project each distinct entity once (negatives repeat entities; raw rows can be 4096-d)
        unique, inverse = torch.unique(ids.reshape(-1), return_inverse=True)
        rows = torch.where(mask[unique].unsqueeze(-1), self.projections[m](raw[unique]), placeholder)
        return rows[inverse].reshape(*ids.shape, rows.shape[-1])


class VersionedCache:
    """Caches one value computed from a module's parameters, recomputed whenever any parameter changed.

    The key is every parameter's and buffer's (identity, storage address, in-place version counter), so
    an optimiser step, ``load_state_dict`` or a move to another device invalidates it. Used only when
    gradients are off (evaluation); with gradients on the value is always recomputed.
    """

    def __init__(self):
        self.key = None
        self.value = None

    def get(self, module: nn.Module, compute):
        if torch.is_grad_enabled():
            return compute()
        key = tuple((id(t), t.data_ptr(), t._version) for t in list(module.parameters()) + list(module.buffers()))
        if key != self.key:
            self.value, self.key = compute(), key
        return self.value
