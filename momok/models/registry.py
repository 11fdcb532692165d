"""Model name -> (options dataclass, builder).

A model module registers itself with ``@register("name", OptionsDataclass)`` on its builder
``build(options, context) -> LinkPredictor``. The config loader validates ``model:`` against the
options dataclass of ``model.name``; the trainer calls ``build_model``.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from typing import Any, Callable

import torch

from momok.errors import ConfigError

# Modules imported on first lookup so that every model registers itself.
MODEL_MODULES = [
    "momok.models.momok",
    "momok.models.baselines",
]


@dataclass
class BuildContext:
    """What a builder may use besides its options."""

    num_entities: int
    num_relations: int  # without inverses; relation ids in scores()/loss() run over 0..2R-1
    #: modality name ("image", "text") -> FeatureTable (features [E, D], mask [E]); absent modalities missing
    features: dict[str, Any] = field(default_factory=dict)
    generator: torch.Generator | None = None


@dataclass
class ModelEntry:
    options: type
    build: Callable[[Any, BuildContext], Any]


_REGISTRY: dict[str, ModelEntry] = {}
_loaded = False


def register(name: str, options: type):
    def decorator(build):
        if name in _REGISTRY:
            raise RuntimeError(f"model {name!r} registered twice")
        _REGISTRY[name] = ModelEntry(options, build)
        return build

    return decorator


def _load_all() -> None:
    global _loaded
    if not _loaded:
        _loaded = True
        for module in MODEL_MODULES:
            importlib.import_module(module)


def get_model(name: str) -> ModelEntry:
    _load_all()
    try:
        return _REGISTRY[name]
    except KeyError:
        raise ConfigError(f"model.name: unknown model {name!r}; known: {', '.join(sorted(_REGISTRY))}") from None


def model_names() -> list[str]:
    _load_all()
    return sorted(_REGISTRY)


def build_model(name: str, options: Any, context: BuildContext):
    return get_model(name).build(options, context)
