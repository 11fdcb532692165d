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

import torch

from momok.errors import MomokError
from momok.features.store import FeatureTable, load_features, save_features


def _choose(num_entities: int, ratio: float, seed: int) -> tuple[torch.Tensor, torch.Generator]:
    """The chosen ids (in draw order) and the generator, ready to draw the noise."""
    if not 0.0 <= ratio <= 1.0:
        raise MomokError(f"noise ratio must be in [0, 1], got {ratio}")
    generator = torch.Generator().manual_seed(seed)
    count = int(round(ratio * num_entities))
    return torch.randperm(num_entities, generator=generator)[:count], generator


def choose_noisy_entities(num_entities: int, ratio: float, seed: int) -> torch.Tensor:
    """Sorted ids of the ``round(ratio · num_entities)`` entities that get noise (see the module docstring)."""
    return _choose(num_entities, ratio, seed)[0].sort().values


def add_noise(table: FeatureTable, ratio: float, seed: int, scale: float = 1.0) -> FeatureTable:
    """A copy of ``table`` with Gaussian noise on a ratio ``ratio`` of its entities (module docstring)."""
    if scale < 0:
        raise MomokError(f"noise scale must be non-negative, got {scale}")
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
    return FeatureTable(features.to(torch.float32), table.mask.clone(), metadata)


def noise_file(src, dst, *, ratio: float, seed: int, scale: float = 1.0) -> FeatureTable:
    """Read the feature file ``src``, add noise, write ``dst`` (atomically)."""
    table = add_noise(load_features(src), ratio, seed, scale)
    table.metadata["noise_input"] = str(src)
    save_features(dst, table)
    return table
