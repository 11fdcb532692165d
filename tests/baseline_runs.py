"""Short trainings of the baselines on the toy dataset, shared by the baseline and sampler tests.

``train_on`` runs ``momok train`` on a toy for a few epochs; ``mrr_with_ablation`` trains a model and its
ablation alike and returns both test MRRs, which a test compares with each other and with
``random_mrr`` of the toy's 300 entities. The toy with feature files is the ``toy_with_features``
fixture of ``conftest.py``.
"""

from __future__ import annotations

from pathlib import Path

#: entities of the toy datasets the tests train on
TOY_ENTITIES = 300


def random_mrr(num_entities: int) -> float:
    """Expected MRR of a uniformly random ranking: mean of 1/rank over ranks 1..E."""
    return sum(1.0 / k for k in range(1, num_entities + 1)) / num_entities


def train_on(root, out, model: dict, *, epochs: int, features: dict | None = None, lr: float = 1e-2,
             label_batching: bool = False) -> dict:
    from momok.config import config_from_dict
    from momok.training import train

    features = dict(features or {})
    config = config_from_dict({
        "seed": 0,
        "dataset": {"path": str(root)},
        "features": {"image": features.get("image"), "text": features.get("text"), "allow_missing": True},
        "model": model,
        "training": {"epochs": epochs, "batch_size": 256, "lr": lr, "device": "cpu", "num_threads": 1,
                     "label_batching": label_batching},
        "evaluation": {"every": epochs, "patience": None},
    })
    return train(config, out, progress=False)


def test_mrr(metrics: dict) -> float:
    return metrics["test"]["score"]["both"]["realistic"]["mrr"]


test_mrr.__test__ = False  # a helper, not a test


def mrr_with_ablation(toy: tuple[Path, dict], out: Path, model: dict, *, epochs: int,
                      ablation: str = "structure only", **train_options) -> tuple[float, float]:
    """Test MRRs of ``model`` trained ``epochs`` on ``toy`` (root, feature files) with its features, and of
    its ablation trained alike: ``structure only``, the model's structure-only variant (``modalities:
    [structure]``, no feature file), or ``placeholders only``, the same model without feature files
    (a placeholder for every feature row). Prints both beside the random ranking's MRR (``pytest -s``)."""
    root, features = toy
    if ablation == "structure only":
        other = {**model, "modalities": ["structure"]}
    elif ablation == "placeholders only":
        other = model
    else:
        raise ValueError(f"unknown ablation {ablation!r}")
    full = test_mrr(train_on(root, out / "full", model, epochs=epochs, features=features, **train_options))
    ablated = test_mrr(train_on(root, out / "ablated", other, epochs=epochs, **train_options))
    print(f"{model['name']}: test MRR {full:.4f} with features, {ablated:.4f} {ablation} "
          f"(random ranking {random_mrr(TOY_ENTITIES):.4f})")
    return full, ablated
