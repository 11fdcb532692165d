"""``momok train``: train a model from a run config, select the best validation epoch, test it once.

The loop (every model alike, through :class:`~momok.models.base.LinkPredictor`):

* Training queries use 1-N scoring: each training triple ``(h, r, t)`` gives the tail query
  ``(h, r) -> t`` and the head query ``(t, r + R) -> h`` (``training.label_batching`` instead gives
  each distinct query once). The queries are shuffled every epoch by a ``torch.Generator`` seeded
  from ``seed``. ``TrainBatch.labels`` (every training answer of each query) is built only when
  ``model.needs_labels()``.
* One Adam step of the model on ``model.loss``; then, when ``model.estimator_parameters()`` is not
  empty, one step of a second Adam (learning rate ``training.estimator_lr``) on
  ``model.estimator_loss`` (ExID's alternating CLUB updates). The model's optimiser never holds the
  estimator parameters.
* Every ``evaluation.every`` epochs (and after the last) the filtered ``evaluation.metric`` of the
  model's ``ranking_key`` score on valid is computed; its best epoch is saved to
  ``checkpoint/best.pt``; ``evaluation.patience`` validations without improvement stop training.
  Right before each validation a model that overrides ``fit_on_validation`` (MoSE's learned
  ensemble) fits it on the valid triples, ranked against a train + valid filter (never test); what it
  fits is saved with that epoch's checkpoint and logged in ``history.csv`` as ``fit_*``.
* At the end the best checkpoint is loaded from disk and evaluated on valid and test (the test set
  is evaluated exactly once per run and never selects anything).

Randomness: Python, NumPy, torch and the shuffle generator are seeded from ``seed``; on the CPU the
same config gives identical metrics, and a run interrupted and continued with ``--resume`` (from
``checkpoint/last.pt``, written every ``output.checkpoint_every`` epochs with the model, both
optimisers, the schedule, every RNG state and the history) ends with the same metrics as an
uninterrupted one. CUDA kernels are not bit-reproducible in general.

Run folder (``--out DIR``): ``config.yaml`` (resolved config + provenance), ``history.csv`` (per
epoch: the mean over steps of the loss, of every part the model logs and of ``estimator_loss``; the
validation metric when evaluated; the learning rate of the epoch; its training seconds),
``checkpoint/{best,last}.pt``, ``weights.csv`` (models with ``diagnostics()``) and, written last and
atomically, ``metrics.json``: a folder without it is unfinished, and a failed run never writes it.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import io
import json
import math
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from momok.config import RunConfig, dump_config, load_config
from momok.errors import ConfigError, MomokError
from momok.models.base import LinkPredictor, TrainBatch
from momok.utils import (git_commit, rng_state, seed_everything, select_device, set_rng_state,
                         torch_save_atomic, write_json_atomic, write_text_atomic)

CONFIG_FILE = "config.yaml"
METRICS_FILE = "metrics.json"
HISTORY_FILE = "history.csv"
WEIGHTS_FILE = "weights.csv"
BEST_CHECKPOINT = Path("checkpoint") / "best.pt"
LAST_CHECKPOINT = Path("checkpoint") / "last.pt"
#: config keys that may differ between a run and its ``--resume`` (they do not change the numbers on CPU)
RESUME_MAY_CHANGE = {("training", "device"), ("training", "num_threads")}


# ---------------------------------------------------------------------------------------------
# Building a run: dataset, feature files, model


@dataclass
class Run:
    """What a config builds: the data, the loaded feature tables and the (untrained) model."""

    config: RunConfig
    dataset: Any  # momok.data.datasets.KGDataset
    features: dict[str, Any]  # modality -> FeatureTable
    feature_sources: dict[str, dict[str, str]]  # modality -> path and file metadata
    model: LinkPredictor
    device: torch.device


def load_inputs(config: RunConfig) -> tuple[Any, dict[str, Any], dict[str, dict[str, str]]]:
    """Load the dataset and the feature file of every file-backed modality the model uses.

    Every problem (missing file, rows that do not match the entity list, NaN) is an ``InputError``
    raised here, before any training.
    """
    from momok.data.datasets import load_dataset
    from momok.features.store import load_features

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


def build_run(config: RunConfig, device: torch.device) -> Run:
    """Seed every RNG from ``config.seed``, load the inputs and build the model on ``device``."""
    from momok.models.registry import BuildContext, build_model

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
    return Run(config, dataset, features, sources, model.to(device), device)


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


def evaluate_model(run: Run, triples: torch.Tensor, filter_index) -> dict[str, dict]:
    """Filtered evaluation of every score the model returns: ``{score_key: summary}``."""
    from momok.evaluation import evaluate

    model = run.model
    model.eval()

    def score_fn(entities: torch.Tensor, relations: torch.Tensor) -> dict[str, torch.Tensor]:
        with autocast(run.config, run.device):
            scores = model.scores(entities.to(run.device), relations.to(run.device))
        return {key: value.float() for key, value in scores.items()}

    return evaluate(
        score_fn, triples,
        num_entities=run.dataset.num_entities, num_relations=run.dataset.num_relations,
        filter_index=filter_index, batch_size=run.config.evaluation.batch_size, device=run.device,
        relation_names=run.dataset.relations,
    )


def all_triples_filter(dataset):
    """The filter of the standard filtered setting: every train, valid and test triple."""
    from momok.evaluation import FilterIndex

    triples = torch.cat([dataset.train, dataset.valid, dataset.test])
    return FilterIndex(triples, dataset.num_entities, dataset.num_relations)


class FitFilter:
    """The train + valid filter a model's ``fit_on_validation`` ranks with, built on first use."""

    def __init__(self, dataset):
        self.dataset = dataset
        self.index = None

    def get(self):
        if self.index is None:
            from momok.evaluation import FilterIndex

            d = self.dataset
            self.index = FilterIndex(torch.cat([d.train, d.valid]), d.num_entities, d.num_relations)
        return self.index


def fit_on_validation(run: Run, fit_filter: FitFilter) -> dict[str, float]:
    """The model's :meth:`~momok.models.base.LinkPredictor.fit_on_validation` (gradients off, eval mode),
    for models that override it; its logged numbers get a ``fit_`` prefix."""
    model = run.model
    if type(model).fit_on_validation is LinkPredictor.fit_on_validation:
        return {}
    model.eval()
    with torch.no_grad():
        parts = model.fit_on_validation(run.dataset.valid, fit_filter.get())
    return {f"fit_{name}": value for name, value in parts.items()}


def selection_value(config: RunConfig, model: LinkPredictor, summaries: dict[str, dict]) -> float:
    """The validation number that selects the best epoch (higher is better)."""
    key = model.ranking_key
    if key not in summaries:
        raise MomokError(f"the model ranks by {key!r} but its scores() returned only {sorted(summaries)}")
    return float(summaries[key]["both"][config.evaluation.rank][config.evaluation.metric])


# ---------------------------------------------------------------------------------------------
# Training data


def training_queries(train: torch.Tensor, num_relations: int, *, distinct: bool) -> torch.Tensor:
    """Training examples ``[n, 3]`` of ``(entity, relation, answer)`` with inverse relations added.

    ``distinct=False``: every triple gives ``(h, r, t)`` and ``(t, r+R, h)``. ``distinct=True``: each
    distinct query ``(e, r)`` once, with the answer of its first occurrence, in order of first
    occurrence (its other answers reach the model through ``TrainBatch.labels``).
    """
    from momok.data.datasets import add_inverses

    queries = add_inverses(train, num_relations)
    if not distinct or len(queries) == 0:
        return queries
    keys = queries[:, 0] * (2 * num_relations) + queries[:, 1]
    _, inverse = torch.unique(keys, return_inverse=True)
    first = torch.full((int(inverse.max()) + 1,), len(queries), dtype=torch.long)
    first = first.scatter_reduce(0, inverse, torch.arange(len(queries)), reduce="amin")
    return queries[first.sort().values]


def adam(params, lr: float, weight_decay: float = 0.0) -> torch.optim.Adam:
    """torch's Adam, fused (one kernel over all parameters per step) where their device supports it:
    on the benchmark CPU 0.06 s instead of 0.19 s per step for MoMoK's 110 M parameters."""
    params = list(params)
    fused = bool(params) and all(p.device.type in ("cpu", "cuda") and p.is_floating_point() for p in params)
    return torch.optim.Adam(params, lr=lr, weight_decay=weight_decay, fused=fused or None)


def make_optimisers(config: RunConfig, model: LinkPredictor):
    """The model's Adam (without estimator parameters), the estimator's Adam (or None), the schedule."""
    estimator = list(model.estimator_parameters())
    estimator_ids = {id(p) for p in estimator}
    main = [p for p in model.parameters() if p.requires_grad and id(p) not in estimator_ids]
    t = config.training
    optimiser = adam(main, t.lr, t.weight_decay)
    estimator_optimiser = adam(estimator, t.estimator_lr) if estimator else None
    if t.lr_schedule == "exponential":
        schedule = torch.optim.lr_scheduler.ExponentialLR(optimiser, gamma=t.lr_decay)
    elif t.lr_schedule == "cosine":
        schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimiser, T_max=t.epochs, eta_min=t.lr_min)
    else:
        schedule = None
    return optimiser, estimator_optimiser, schedule


# ---------------------------------------------------------------------------------------------
# The loop


@dataclass
class LoopState:
    """Everything that changes from epoch to epoch (what ``last.pt`` saves besides the optimisers)."""

    epoch: int = 0  # last finished epoch
    best_epoch: int | None = None
    best_value: float = -math.inf
    bad_evaluations: int = 0
    stopped_early: bool = False
    history: list | None = None
    train_seconds: float = 0.0
    valid_seconds: float = 0.0
    last_valid: float | None = None

    def __post_init__(self):
        if self.history is None:
            self.history = []


def _changed_keys(old: dict, new: dict, prefix: tuple = ()) -> list[str]:
    keys = []
    for key in sorted(set(old) | set(new), key=str):
        path = prefix + (key,)
        if isinstance(old.get(key), dict) and isinstance(new.get(key), dict):
            keys += _changed_keys(old[key], new[key], path)
        elif old.get(key) != new.get(key) and path not in RESUME_MAY_CHANGE:
            keys.append(".".join(map(str, path)))
    return keys


def _write_history(out: Path, history: list[dict]) -> None:
    columns: list[str] = []
    for row in history:
        columns += [c for c in row if c not in columns]
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    for row in history:
        writer.writerow({c: "" if row.get(c) is None else row[c] for c in columns})
    write_text_atomic(out / HISTORY_FILE, buffer.getvalue())


def _train_epoch(config: RunConfig, model: LinkPredictor, queries: torch.Tensor, label_index, generator,
                 device: torch.device, main: tuple, estimator: tuple, progress: bool, epoch: int
                 ) -> tuple[float, dict[str, float]]:
    """One pass over the shuffled training queries: the model step, then the estimator step, per batch.

    ``main``/``estimator``: (optimiser, grad scaler); the estimator optimiser may be None. Returns the
    mean loss and the mean of every logged loss part (and ``estimator_loss``) over the steps.
    """
    optimiser, scaler = main
    estimator_optimiser, estimator_scaler = estimator
    model.train()
    order = torch.randperm(len(queries), generator=generator)
    totals: dict[str, float] = {}
    loss_sum = torch.zeros((), device=device)  # summed on the device: no synchronisation per step
    steps = 0
    size = config.training.batch_size
    starts = list(range(0, len(queries), size))
    if len(starts) > 1 and len(queries) - starts[-1] == 1:
        starts.pop()  # a last batch of one query joins the one before (batch norm needs two rows)
    ends = starts[1:] + [len(queries)]
    for start, end in tqdm(list(zip(starts, ends)), desc=f"epoch {epoch}", unit="batch", leave=False,
                           disable=not progress):
        rows = queries[order[start:end]].to(device)
        labels = None if label_index is None else label_index.known_mask(rows[:, 0], rows[:, 1])
        batch = TrainBatch(rows[:, 0], rows[:, 1], rows[:, 2], labels)
        with autocast(config, device):
            loss, parts = model.loss(batch)
        optimiser.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        if config.training.grad_clip is not None:
            scaler.unscale_(optimiser)
            torch.nn.utils.clip_grad_norm_([p for group in optimiser.param_groups for p in group["params"]],
                                           config.training.grad_clip)
        scaler.step(optimiser)
        scaler.update()
        loss_sum += loss.detach().float()
        for name, value in parts.items():
            totals[name] = totals.get(name, 0.0) + float(value)
        if estimator_optimiser is not None:
            with autocast(config, device):
                estimator_loss = model.estimator_loss(batch)
            if estimator_loss is not None:
                estimator_optimiser.zero_grad(set_to_none=True)
                estimator_scaler.scale(estimator_loss).backward()
                estimator_scaler.step(estimator_optimiser)
                estimator_scaler.update()
                totals["estimator_loss"] = totals.get("estimator_loss", 0.0) + float(estimator_loss.detach())
        steps += 1
    mean_loss = float(loss_sum) / steps
    if not math.isfinite(mean_loss):
        raise MomokError(f"epoch {epoch}: the training loss is {mean_loss}; the model diverged "
                         "(lower training.lr, set training.grad_clip, or check the feature files)")
    return mean_loss, {name: total / steps for name, total in totals.items()}


def train(config: RunConfig, out: str | Path, *, resume: bool = False, progress: bool = True) -> dict:
    """Train, select on validation, test the best checkpoint; write the run folder; return metrics.

    ``resume``: continue from ``out/checkpoint/last.pt`` when it exists (else start afresh); a run
    folder that already has ``metrics.json`` is finished and its metrics are returned unchanged.
    Without ``resume`` a folder holding a run (``metrics.json`` or ``last.pt``) is an error.
    """
    out = Path(out)
    last_path, best_path = out / LAST_CHECKPOINT, out / BEST_CHECKPOINT
    if (out / METRICS_FILE).exists():
        if resume:
            print(f"{out} is finished ({METRICS_FILE} exists); nothing to do", file=sys.stderr)
            return json.loads((out / METRICS_FILE).read_text(encoding="utf-8"))
        raise ConfigError(f"{out} already holds a finished run; choose another --out or delete it")
    if last_path.exists() and not resume:
        raise ConfigError(f"{out} holds an unfinished run ({LAST_CHECKPOINT}); continue it with --resume, "
                          "or delete the folder")

    device = select_device(config.training.device)
    autocast(config, device)  # fails now, before the run folder is touched, on an amp option the device lacks
    configure_torch(config, device)
    run = build_run(config, device)  # seeds every RNG first
    model, dataset = run.model, run.dataset
    generator = torch.Generator().manual_seed(config.seed)
    optimiser, estimator_optimiser, schedule = make_optimisers(config, model)
    scaler = torch.amp.GradScaler("cuda", enabled=config.training.amp == "fp16")
    estimator_scaler = torch.amp.GradScaler("cuda", enabled=config.training.amp == "fp16")

    queries = training_queries(dataset.train, dataset.num_relations, distinct=config.training.label_batching)
    if len(queries) == 0:
        raise MomokError(f"{config.dataset.path}: no training triples")
    label_index = None
    if model.needs_labels() or config.training.label_batching:
        if not model.needs_labels():
            raise ConfigError("training.label_batching: the model's loss does not read labels")
        from momok.evaluation import FilterIndex

        label_index = FilterIndex(dataset.train, dataset.num_entities, dataset.num_relations)
    filter_index = all_triples_filter(dataset)
    fit_filter = FitFilter(dataset)
    state = LoopState()
    best_model = None  # CPU copy of the best state_dict so far (also kept in last.pt)

    if resume and last_path.exists():
        saved = torch.load(last_path, map_location="cpu", weights_only=False)
        changed = _changed_keys(saved["config"], config.to_dict())
        if changed:
            raise ConfigError(f"--resume: the config differs from the interrupted run's in {', '.join(changed)}")
        model.load_state_dict(saved["model"])
        optimiser.load_state_dict(saved["optimiser"])
        if estimator_optimiser is not None:
            estimator_optimiser.load_state_dict(saved["estimator_optimiser"])
        if schedule is not None:
            schedule.load_state_dict(saved["schedule"])
        scaler.load_state_dict(saved["scaler"])
        estimator_scaler.load_state_dict(saved["estimator_scaler"])
        state = LoopState(**saved["loop"])
        generator.set_state(saved["generator"])
        set_rng_state(saved["rng"])
        best_model = saved["best_model"]
        if best_model is not None:  # best.pt may be newer than last.pt if the run died in between
            torch_save_atomic(best_path, {"model": best_model, "epoch": state.best_epoch})
    else:
        out.mkdir(parents=True, exist_ok=True)
        provenance = {"momok_version": _version(), "git_commit": git_commit(),
                      "torch_version": str(torch.__version__), "command": " ".join(sys.argv)}
        write_text_atomic(out / CONFIG_FILE, dump_config(config, {"provenance": provenance}))


    epochs = config.training.epochs
    bar = tqdm(total=epochs, initial=state.epoch, desc="train", unit="epoch", disable=not progress)
    while state.epoch < epochs and not state.stopped_early:
        epoch = state.epoch + 1
        started = time.perf_counter()
        mean_loss, parts = _train_epoch(config, model, queries, label_index, generator, device,
                                        (optimiser, scaler), (estimator_optimiser, estimator_scaler), progress, epoch)
        lr = optimiser.param_groups[0]["lr"]
        if schedule is not None:
            schedule.step()
        train_seconds = time.perf_counter() - started
        state.train_seconds += train_seconds
        row: dict[str, Any] = {"epoch": epoch, "loss": mean_loss}
        row.update({name: value for name, value in parts.items() if name != "loss"})

        valid_value = None
        if epoch % config.evaluation.every == 0 or epoch == epochs:
            started = time.perf_counter()
            row.update(fit_on_validation(run, fit_filter))
            valid_value = selection_value(config, model, evaluate_model(run, dataset.valid, filter_index))
            state.valid_seconds += time.perf_counter() - started
            state.last_valid = valid_value
            if valid_value > state.best_value or state.best_epoch is None:
                state.best_value, state.best_epoch, state.bad_evaluations = valid_value, epoch, 0
                best_model = _cpu_copy(model.state_dict())
                torch_save_atomic(best_path, {"model": best_model, "epoch": epoch})
            else:
                state.bad_evaluations += 1
                patience = config.evaluation.patience
                state.stopped_early = patience is not None and state.bad_evaluations >= patience
        row[f"valid_{config.evaluation.metric}"] = valid_value
        row.update({"lr": lr, "seconds": round(train_seconds, 3)})
        state.history.append(row)
        state.epoch = epoch
        _write_history(out, state.history)
        if epoch % config.output.checkpoint_every == 0 or epoch == epochs or state.stopped_early:
            _save_last(last_path, config, model, optimiser, estimator_optimiser, schedule, scaler,
                       estimator_scaler, generator, state, best_model)
        bar.update(1)
        bar.set_postfix(loss=f"{mean_loss:.4g}", **({} if state.last_valid is None else
                                                   {f"valid_{config.evaluation.metric}": f"{state.last_valid:.4f}"}))
    bar.close()

    # The test: the best-validation checkpoint, loaded from disk, evaluated once.
    best = torch.load(best_path, map_location=device, weights_only=True)
    model.load_state_dict(best["model"])
    started = time.perf_counter()
    valid = evaluate_model(run, dataset.valid, filter_index)
    test = evaluate_model(run, dataset.test, filter_index)
    final_seconds = time.perf_counter() - started
    weights_written = write_weights(run, dataset.test, out / WEIGHTS_FILE)
    metrics = {
        "best_epoch": int(best["epoch"]),
        "selection": {"split": "valid", "score_key": model.ranking_key, "metric": config.evaluation.metric,
                      "rank": config.evaluation.rank, "value": selection_value(config, model, valid)},
        "epochs_run": state.epoch,
        "stopped_early": state.stopped_early,
        "valid": valid,
        "test": test,
        "feature_sources": run.feature_sources,
        "weights_csv": weights_written,
        "timing": {"train_seconds": round(state.train_seconds, 3),
                   "seconds_per_epoch": round(state.train_seconds / max(state.epoch, 1), 3),
                   "valid_seconds": round(state.valid_seconds, 3),
                   "final_evaluation_seconds": round(final_seconds, 3),
                   "device": str(device)},
        "momok_version": _version(),
    }
    write_json_atomic(out / METRICS_FILE, metrics)  # last: its presence marks the run finished
    if progress:
        from momok.evaluation import metrics_table

        print(f"best epoch {metrics['best_epoch']}; test:\n{metrics_table(test)}", file=sys.stderr)
    return metrics


def _save_last(path, config, model, optimiser, estimator_optimiser, schedule, scaler, estimator_scaler,
               generator, state: LoopState, best_model: dict | None) -> None:
    torch_save_atomic(path, {
        "config": config.to_dict(),
        "model": model.state_dict(),
        "optimiser": optimiser.state_dict(),
        "estimator_optimiser": None if estimator_optimiser is None else estimator_optimiser.state_dict(),
        "schedule": None if schedule is None else schedule.state_dict(),
        "scaler": scaler.state_dict(),
        "estimator_scaler": estimator_scaler.state_dict(),
        "generator": generator.get_state(),
        "rng": rng_state(),
        "loop": dict(vars(state)),
        "best_model": best_model,
    })


def _cpu_copy(state_dict: dict) -> dict:
    """A CPU copy of a state dict (tensors cloned, other values such as extra states kept)."""
    return {k: v.detach().to("cpu", copy=True) if isinstance(v, torch.Tensor) else v for k, v in state_dict.items()}


def _version() -> str:
    from momok import __version__

    return __version__


# ---------------------------------------------------------------------------------------------
# weights.csv: per-relation means of the model's diagnostics (MoMoK: alpha and expert gates)


def diagnostic_columns(diagnostics: dict[str, Any], prefix: str = "") -> dict[str, torch.Tensor]:
    """Flatten diagnostics to ``[B]`` columns: ``{name: Tensor[B]}`` -> ``name``; ``Tensor[B, k, ...]`` ->
    ``name_0 .. name_{k-1}``; a nested ``{name: {key: tensor}}`` -> ``name_key...``."""
    columns = {}
    for name, value in diagnostics.items():
        name = f"{prefix}{name}"
        if isinstance(value, dict):
            columns.update(diagnostic_columns(value, prefix=f"{name}_"))
            continue
        value = value.detach().float().cpu()
        if value.dim() == 1:
            columns[name] = value
        else:
            flat = value.reshape(value.shape[0], -1)
            for i in range(flat.shape[1]):
                columns[f"{name}_{i}"] = flat[:, i]
    return columns


def relation_weights(run: Run, triples: torch.Tensor) -> list[dict[str, Any]]:
    """Mean of every diagnostic column per relation and direction over the queries of ``triples``.

    Tail queries ``(h, r)`` are direction ``tail``, head queries ``(t, r + R)`` direction ``head``;
    rows are keyed by the original relation id ``r``. Empty when the model has no diagnostics.
    """
    model, R = run.model, run.dataset.num_relations
    model.eval()
    rows = []
    size = run.config.evaluation.batch_size
    for direction, entities, relations in (("tail", triples[:, 0], triples[:, 1]),
                                           ("head", triples[:, 2], triples[:, 1] + R)):
        sums: dict[str, torch.Tensor] = {}
        counts = torch.zeros(R, dtype=torch.float64)
        for start in range(0, len(triples), size):
            e, r = entities[start:start + size], relations[start:start + size]
            with torch.no_grad(), autocast(run.config, run.device):
                columns = diagnostic_columns(model.diagnostics(e.to(run.device), r.to(run.device)))
            if not columns:
                return []
            base = (r % R).long()
            counts.index_add_(0, base, torch.ones(len(base), dtype=torch.float64))
            for name, values in columns.items():
                sums.setdefault(name, torch.zeros(R, dtype=torch.float64)).index_add_(0, base, values.double())
        for relation in range(R):
            if counts[relation] > 0:
                row = {"relation": relation, "relation_name": run.dataset.relations[relation],
                       "direction": direction, "count": int(counts[relation])}
                row.update({name: float(total[relation] / counts[relation]) for name, total in sums.items()})
                rows.append(row)
    return rows


def write_weights(run: Run, triples: torch.Tensor, path: Path) -> bool:
    """Write ``weights.csv`` from :func:`relation_weights`; False (nothing written) without diagnostics."""
    rows = relation_weights(run, triples)
    if not rows:
        return False
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(rows[0]), lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    write_text_atomic(path, buffer.getvalue())
    return True


# ---------------------------------------------------------------------------------------------
# CLI


def configure_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", required=True, type=Path, help="run config (YAML); see config/run.example.yaml")
    parser.add_argument("--out", required=True, type=Path, help="run folder to write")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", dest="overrides",
                        help="override a config value, e.g. --set model.num_experts=5 (value parsed as YAML); "
                             "repeatable")
    parser.add_argument("--resume", action="store_true",
                        help="continue from OUT/checkpoint/last.pt when present (a finished run is left as is)")
    parser.add_argument("--device", choices=["auto", "cpu", "cuda"], help="override training.device")
    parser.add_argument("--quiet", action="store_true", help="no progress bars or summary")


def run(args: argparse.Namespace) -> int:
    overrides = list(args.overrides)
    if args.device is not None:
        overrides.append(f"training.device={args.device}")
    config = load_config(args.config, overrides)
    train(config, args.out, resume=args.resume, progress=not args.quiet)
    return 0
