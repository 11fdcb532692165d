"""Uniform initialisation drawn from an explicit generator (a model's build generator), so that a seed
fixes every initial weight whatever else used torch's global generator before."""

from __future__ import annotations

import math

import torch
from torch import nn


def uniform(shape: int | tuple[int, ...], bound: float, generator: torch.Generator | None) -> torch.Tensor:
    """Independent draws from ``U(-bound, bound)``: ``(u·2 − 1)·bound`` with ``u ~ U[0, 1)``."""
    return (torch.rand(shape, generator=generator) * 2 - 1) * bound


def uniform_linear_(layer: nn.Linear, bound: float, generator: torch.Generator | None) -> nn.Linear:
    """Redraw ``layer``'s weight, then its bias, from ``U(-bound, bound)``, in place."""
    with torch.no_grad():
        layer.weight.copy_(uniform(layer.weight.shape, bound, generator))
        layer.bias.copy_(uniform(layer.bias.shape, bound, generator))
    return layer


def uniform_linear(in_dim: int, out_dim: int, generator: torch.Generator | None) -> nn.Linear:
    """``nn.Linear`` with PyTorch's default bound ``1/√in_dim``, drawn from ``generator``."""
    return uniform_linear_(nn.Linear(in_dim, out_dim), 1.0 / math.sqrt(in_dim), generator)
