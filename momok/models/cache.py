"""Entity-side tables kept across evaluation batches while the parameters stay unchanged.

In evaluation every batch of queries scores all E entities, and what a model computes for them (MoMoK:
modality inputs, expert outputs, gate logits, contracted cores; the baselines: their entity rows)
depends only on the parameters. :class:`ParameterCache` keeps such values while the module is in eval
mode with autograd off. Its key is every parameter's and buffer's identity, storage address and
in-place version counter (``Tensor._version``), so an optimiser step, ``load_state_dict`` or ``.to()``
invalidates it. In training mode or with autograd on nothing is kept, and the values left from an
evaluation are dropped so that they do not hold memory during training.
"""

from __future__ import annotations

import itertools
from typing import Any, Callable

import torch
from torch import nn


class ParameterCache:
    """Named values computed from ``module``'s parameters (see the module docstring)."""

    def __init__(self) -> None:
        self._values: dict[str, Any] = {}
        self._key: tuple | None = None

    @staticmethod
    def active(module: nn.Module) -> bool:
        """Whether values are kept: ``module`` in eval mode and autograd off."""
        return not module.training and not torch.is_grad_enabled()

    def get(self, module: nn.Module, name: str, compute: Callable[[], Any]) -> Any:
        """``compute()``, or the value kept under ``name`` when the parameters have not changed since."""
        if not self.active(module):
            self.clear()
            return compute()
        tensors = itertools.chain(module.parameters(), module.buffers())
        key = tuple((id(t), t.data_ptr(), t._version) for t in tensors)
        if key != self._key:
            self._values, self._key = {}, key
        if name not in self._values:
            self._values[name] = compute()
        return self._values[name]

    def clear(self) -> None:
        """Drop every kept value (they are recomputed on the next evaluation batch)."""
        self._values, self._key = {}, None

    def __len__(self) -> int:
        return len(self._values)
