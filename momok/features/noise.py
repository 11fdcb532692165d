"""``momok features noise``: the paper's noisy-modality setting (Figure 3).

A ratio ρ of the entities gets Gaussian noise added to its features. Choices, all documented here:

* **Which entities**: ``round(ρ · N)`` entities drawn without replacement with ``torch.randperm`` from
  a ``torch.Generator`` seeded with ``seed``, among *all* N entities (masked-missing ones included).
  The choice depends only on N and the seed, so the image and the text file of one dataset, perturbed
  with the same ratio and seed, get the same noisy entities (a noisy entity is noisy in both
  modalities, as the paper implies). The choices are nested: the entities of a smaller ρ are a subset
  of those of a larger ρ with the same seed.
* **Which rows change**: the chosen entities that have the modality (``mask = 1``); a missing entity's
  filler row is left as it is (there is no modality information to corrupt). Its noise is still drawn,
  so the noise of one entity never depends on the mask of another.
* **How much**: noise ``ε[e, d] = scale · σ_d · z``, ``z ~ N(0, 1)`` drawn from the same generator after
  the choice, where σ_d is the per-dimension (population) standard deviation of the input features over
  the present entities. ``scale = 1`` makes a noisy row's deviation as large as the spread of real
  features; dimensions with σ_d = 0 stay unchanged.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import torch

from momok.errors import MomokError
from momok.features.store import FeatureTable, load_features, save_features


def check_options(ratio: float, seed: int, scale: float = 1.0) -> None:
    """``MomokError`` naming the option unless ratio is in [0, 1], seed in [0, 2**64) and scale finite >= 0."""
    if not 0.0 <= ratio <= 1.0:  # also false for NaN
        raise MomokError(f"--ratio: the noise ratio must be in [0, 1], got {ratio}")
    if not 0 <= seed < 2**64:
        raise MomokError(f"--seed: must be an integer in [0, 2**64), got {seed}")
    if not (math.isfinite(scale) and scale >= 0):
        raise MomokError(f"--scale: the noise scale must be a finite number >= 0, got {scale}")


def _choose(num_entities: int, ratio: float, seed: int) -> tuple[torch.Tensor, torch.Generator]:
    """The chosen ids (in draw order) and the generator, ready to draw the noise."""
    check_options(ratio, seed)
    generator = torch.Generator().manual_seed(seed)
    count = int(round(ratio * num_entities))
    return torch.randperm(num_entities, generator=generator)[:count], generator


def choose_noisy_entities(num_entities: int, ratio: float, seed: int) -> torch.Tensor:
    """Sorted ids of the ``round(ratio · num_entities)`` entities that get noise (see the module docstring)."""
    return _choose(num_entities, ratio, seed)[0].sort().values


def add_noise(table: FeatureTable, ratio: float, seed: int, scale: float = 1.0) -> FeatureTable:
    """A copy of ``table`` with Gaussian noise on a ratio ``ratio`` of its entities (module docstring)."""
    check_options(ratio, seed, scale)
    chosen, generator = _choose(table.num_entities, ratio, seed)
    noise = torch.randn(len(chosen), table.dim, generator=generator, dtype=torch.float64)
    present = table.mask.bool()
    if not present.any():
        raise MomokError("no entity has this modality: the feature spread (noise scale) is undefined")
    std = table.features[present].to(torch.float64).std(dim=0, unbiased=False)
    applied = present[chosen]
    features = table.features.to(torch.float64).clone()
    rows = chosen[applied]
    features[rows] += scale * std * noise[applied]
    metadata = dict(table.metadata)
    metadata.update({
        "source": "noise",
        "noise_base_source": table.metadata.get("source", ""),
        "noise_ratio": repr(float(ratio)),
        "noise_seed": str(seed),
        "noise_scale": repr(float(scale)),
        "noise_count": str(len(chosen)),
        "noise_applied": str(len(rows)),
        "noise_std_rule": "scale * per-dimension population std over present entities",
    })
    features = features.to(torch.float32)
    if not torch.isfinite(features).all():
        raise MomokError(f"--scale: {scale} makes the noisy features overflow float32; use a smaller scale")
    return FeatureTable(features, table.mask.clone(), metadata)


def _same_file(src: Path, dst: Path) -> bool:
    """True when ``dst`` names ``src`` itself (the same path, or another path, link or hard link to it)."""
    if src.resolve() == dst.resolve():
        return True
    try:
        return os.path.samefile(src, dst)
    except OSError:  # one of them does not exist
        return False


def noise_file(src, dst, *, ratio: float, seed: int, scale: float = 1.0) -> FeatureTable:
    """Read the feature file ``src``, add noise, write ``dst`` (atomically).

    The options are checked (:func:`check_options`) and ``dst`` must be another file than ``src``
    (writing the noisy copy over the clean input is refused), both before anything is read or written.
    """
    check_options(ratio, seed, scale)
    src, dst = Path(src), Path(dst)
    if _same_file(src, dst):
        raise MomokError(f"--out {dst} is the input file {src}: the noisy copy would replace the clean "
                         f"features; write it to another file")
    table = add_noise(load_features(src), ratio, seed, scale)
    table.metadata["noise_input"] = str(src)
    save_features(dst, table)
    return table
