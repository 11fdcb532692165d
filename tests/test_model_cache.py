"""ParameterCache: values kept in evaluation, recomputed after any in-place parameter change, never
kept while training or with autograd on."""

from __future__ import annotations

import torch
from torch import nn

from momok.models.cache import ParameterCache


def _counting(module: nn.Module):
    calls = []

    def compute():
        calls.append(1)
        return module.weight.sum().clone()

    return calls, compute


def test_kept_in_evaluation_until_a_parameter_changes():
    module, cache = nn.Linear(3, 2).eval(), ParameterCache()
    calls, compute = _counting(module)
    with torch.no_grad():
        first = cache.get(module, "w", compute)
        assert cache.get(module, "w", compute) is first and len(calls) == 1
        module.weight.add_(1.0)  # an optimiser step or load_state_dict changes the version counter
        changed = cache.get(module, "w", compute)
    assert len(calls) == 2
    torch.testing.assert_close(changed, first + 6.0)


def test_nothing_kept_in_training_mode_or_with_autograd():
    module, cache = nn.Linear(3, 2).eval(), ParameterCache()
    calls, compute = _counting(module)
    with torch.no_grad():
        cache.get(module, "w", compute)
    assert len(cache) == 1
    cache.get(module, "w", compute)  # autograd on: recomputed, and the kept value is dropped
    assert len(calls) == 2 and len(cache) == 0
    module.train()
    with torch.no_grad():
        cache.get(module, "w", compute)
        cache.get(module, "w", compute)
    assert len(calls) == 4 and len(cache) == 0
