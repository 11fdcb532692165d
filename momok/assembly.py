"""A run assembled from its config: the dataset, the feature files, the model, and its filtered evaluation.

Shared by ``momok train`` (:mod:`momok.training`) and ``momok evaluate`` (:mod:`momok.commands.evaluate`), so
that a saved run is rebuilt exactly as it was trained. Every input problem (missing file, rows that do not
match the entity list, NaN) is raised by :func:`load_inputs` before any training.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
import torch

from momok.config import RunConfig
from momok.data.datasets import KGDataset, load_dataset
from momok.errors import ConfigError, MomokError
from momok.evaluation import FilterIndex, evaluate
from momok.features.store import FeatureTable, load_features
from momok.models.base import LinkPredictor
from momok.models.registry import BuildContext, build_model
from momok.utils import seed_everything


@dataclass
class AssembledRun:
    """What a config builds: the data, the loaded feature tables and the (untrained) model."""

    config: RunConfig
    dataset: KGDataset
    features: dict[str, FeatureTable]  # modality -> its loaded feature file
    feature_sources: dict[str, dict[str, str]]  # modality -> path and file metadata
    model: LinkPredictor
    device: torch.device


def load_inputs(config: RunConfig) -> tuple[KGDataset, dict[str, FeatureTable], dict[str, dict[str, str]]]:
    """Load the dataset and the feature file of every file-backed modality the model uses.

    Every problem (missing file, rows that do not match the entity list, NaN) is an ``InputError``
    raised here, before any training.
    """
    dataset = load_dataset(config.dataset.path, duplicates=config.dataset.duplicates, unseen=config.dataset.unseen)
    features, sources = {}, {}
    for modality in config.file_modalities():
        path = config.features.path_of(modality)
        if path is None:
            if not config.features.allow_missing:  # load_config already checks this; kept for direct callers
                raise ConfigError(f"features.{modality}: the model uses {modality} but no feature file is set")
            continue
        table = load_features(path, entities=dataset.entities)
        features[modality] = table
        sources[modality] = {"path": str(path), **table.metadata}
    return dataset, features, sources


def build_run(config: RunConfig, device: torch.device) -> AssembledRun:
    """Seed every RNG from ``config.seed``, load the inputs and build the model on ``device``."""
    seed_everything(config.seed)
    dataset, features, sources = load_inputs(config)
    context = BuildContext(
        num_entities=dataset.num_entities,
        num_relations=dataset.num_relations,
        features=features,
        generator=torch.Generator().manual_seed(config.seed),
    )
    model = build_model(config.model.name, config.model.options, context)
    if not isinstance(model, LinkPredictor):
        raise TypeError(f"model {config.model.name!r} built a {type(model).__name__}, not a LinkPredictor")
    return AssembledRun(config, dataset, features, sources, model.to(device), device)


def configure_torch(config: RunConfig, device: torch.device) -> None:
    """Apply ``training.num_threads`` and ``training.tf32``."""
    if config.training.num_threads is not None:
        torch.set_num_threads(config.training.num_threads)
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = config.training.tf32
        torch.backends.cudnn.allow_tf32 = config.training.tf32


def autocast(config: RunConfig, device: torch.device):
    """The autocast context of ``training.amp`` (a no-op for ``none``)."""
    if config.training.amp == "none":
        return contextlib.nullcontext()
    if config.training.amp == "fp16" and device.type != "cuda":
        raise ConfigError("training.amp: fp16 needs CUDA; use bf16 or none on the CPU")
    dtype = torch.bfloat16 if config.training.amp == "bf16" else torch.float16
    return torch.autocast(device.type, dtype=dtype)


def evaluate_model(run: AssembledRun, triples: torch.Tensor, filter_index: FilterIndex, *,
                   selection_only: bool = False) -> dict[str, dict]:
    """Filtered evaluation of every score the model returns: ``{score_key: summary}``.

    selection_only: evaluate only the model's ``ranking_key`` (what :func:`selection_value` reads), from
    :meth:`~momok.models.base.LinkPredictor.ranking_scores`: the per-epoch validation. The final
    evaluation of the best checkpoint reports every score key.
    """
    model = run.model
    model.eval()

    def score_fn(entities: torch.Tensor, relations: torch.Tensor) -> dict[str, torch.Tensor]:
        entities, relations = entities.to(run.device), relations.to(run.device)
        with autocast(run.config, run.device):
            if selection_only:
                scores = {model.ranking_key: model.ranking_scores(entities, relations)}
            else:
                scores = model.scores(entities, relations)
        return {key: value.float() for key, value in scores.items()}

    return evaluate(
        score_fn, triples,
        num_entities=run.dataset.num_entities, num_relations=run.dataset.num_relations,
        filter_index=filter_index, batch_size=run.config.evaluation.batch_size, device=run.device,
        relation_names=run.dataset.relations, keys=[model.ranking_key] if selection_only else None,
    )


def all_triples_filter(dataset: KGDataset) -> FilterIndex:
    """The filter of the standard filtered setting: every train, valid and test triple."""
    triples = torch.cat([dataset.train, dataset.valid, dataset.test])
    return FilterIndex(triples, dataset.num_entities, dataset.num_relations)


def selection_value(config: RunConfig, model: LinkPredictor, summaries: dict[str, dict]) -> float:
    """The validation number that selects the best epoch (higher is better)."""
    key = model.ranking_key
    if key not in summaries:
        raise MomokError(f"the model ranks by {key!r} but its scores() returned only {sorted(summaries)}")
    return float(summaries[key]["both"][config.evaluation.rank][config.evaluation.metric])
