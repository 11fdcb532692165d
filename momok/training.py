"""The training loop of ``momok train``: train a model from a run config, select the best validation epoch,
test it once.

The loop (every model alike, through :class:`~momok.models.base.LinkPredictor`):

* Training queries use 1-N scoring: each training triple ``(h, r, t)`` gives the tail query
  ``(h, r) -> t`` and the head query ``(t, r + R) -> h`` (``training.label_batching`` instead gives
  each distinct query once). The queries are shuffled every epoch by a ``torch.Generator`` seeded
  from ``seed``. ``TrainBatch.labels`` (every training answer of each query) is built only when
  ``model.needs_labels()``.
* One Adam step of the model on ``model.loss``; then, when ``model.estimator_parameters()`` is not
  empty, one step of a second Adam (learning rate ``training.estimator_lr``) on
  ``model.estimator_loss`` (ExID's alternating CLUB updates). The model's optimiser never holds the
  estimator parameters; it holds the parameters of ``model.parameter_groups()`` (MMRNS's sampler) in
  param groups of their own, at their own learning rate.
* Every ``evaluation.every`` epochs (and after the last) the filtered ``evaluation.metric`` of the
  model's ``ranking_key`` score on valid is computed (that score alone, from
  ``LinkPredictor.ranking_scores``); its best epoch is saved to ``checkpoint/best.pt``; ``evaluation.patience`` validations without improvement stop training.
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

Run folder (``--out DIR``, :mod:`momok.run_folder`): ``config.yaml`` (resolved config + provenance),
``history.csv`` (per epoch: the mean over steps of the loss, of every part the model logs and of
``estimator_loss``; the validation metric when evaluated; the learning rate of the epoch; its training
seconds), ``checkpoint/{best,last}.pt``, ``weights.csv`` (models with ``diagnostics()``) and, written last
and atomically, ``metrics.json``: a folder without it is unfinished, and a failed run never writes it (it
writes ``FAILED`` with the error instead).

What a ``--out`` folder may already hold, and what happens (:func:`plan_start`): nothing -> a new run; a
run, without ``--resume`` -> an error; with ``--resume``: an interrupted or failed run continues from
``last.pt`` and a finished one returns its metrics, provided its config (but for ``training.device`` and
``training.num_threads``) and the sha256 of its feature files are the ones given now; otherwise it is an
error, or with ``--restart-stale`` (what the workflow passes) the run's files are removed and it starts
afresh, as does a failed run. A folder holding anything but a momok run is never written to.
"""

from __future__ import annotations

import csv
import io
import json
import math
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch
from tqdm.auto import tqdm

from momok import __version__
from momok.assembly import (
    AssembledRun,
    all_triples_filter,
    autocast,
    build_run,
    configure_torch,
    evaluate_model,
    selection_value,
)
from momok.atomic import write_json_atomic, write_text_atomic
from momok.checksums import file_sha256
from momok.config import RunConfig, dump_config
from momok.data.datasets import KGDataset, add_inverses
from momok.diagnostics import write_weights
from momok.errors import ConfigError, InputError, MomokError
from momok.evaluation import FilterIndex, metrics_table
from momok.models.base import LinkPredictor, TrainBatch
from momok.run_folder import (
    BEST_CHECKPOINT,
    CONFIG_FILE,
    FAILED_FILE,
    HISTORY_FILE,
    LAST_CHECKPOINT,
    METRICS_FILE,
    WEIGHTS_FILE,
    RunState,
    clear_run,
    load_checkpoint,
    remove_temporaries,
    run_state,
    save_checkpoint,
    saved_config,
)
from momok.utils import git_commit, rng_state, select_device, set_rng_state

#: config keys that may differ between a run and its ``--resume`` (they do not change the numbers on CPU)
RESUME_MAY_CHANGE = {("training", "device"), ("training", "num_threads")}


# ---------------------------------------------------------------------------------------------
# Training data


def training_queries(train: torch.Tensor, num_relations: int, *, distinct: bool) -> torch.Tensor:
    """Training examples ``[n, 3]`` of ``(entity, relation, answer)`` with inverse relations added.

    ``distinct=False``: every triple gives ``(h, r, t)`` and ``(t, r+R, h)``. ``distinct=True``: each
    distinct query ``(e, r)`` once, with the answer of its first occurrence, in order of first
    occurrence (its other answers reach the model through ``TrainBatch.labels``).
    """
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
    on the benchmark CPU 0.06 s instead of 0.19 s per step for MoMoK's 110 M parameters. ``params``:
    parameters, or param groups (dicts with ``params`` and optionally ``lr``)."""
    params = list(params)
    tensors = [p for item in params for p in (item["params"] if isinstance(item, dict) else [item])]
    fused = bool(tensors) and all(p.device.type in ("cpu", "cuda") and p.is_floating_point() for p in tensors)
    return torch.optim.Adam(params, lr=lr, weight_decay=weight_decay, fused=fused or None)


def make_optimisers(config: RunConfig, model: LinkPredictor):
    """The model's Adam (without estimator parameters; the model's :meth:`~LinkPredictor.parameter_groups`
    as param groups of their own after the group at ``training.lr``), the estimator's Adam (or None),
    the schedule."""
    estimator = list(model.estimator_parameters())
    own = [(list(params), lr) for params, lr in model.parameter_groups()]
    set_apart = {id(p) for p in estimator} | {id(p) for params, _ in own for p in params}
    main = [p for p in model.parameters() if p.requires_grad and id(p) not in set_apart]
    t = config.training
    groups = [{"params": main}] + [{"params": params, "lr": lr} for params, lr in own]
    optimiser = adam(groups if own else main, t.lr, t.weight_decay)
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


@dataclass
class Start:
    """How a run starts, decided by :func:`plan_start` before anything is written."""

    action: Literal["fresh", "continue", "finished"]
    clear: bool = False  # remove the run files already in the folder first
    checkpoint: dict[str, Any] | None = None  # "continue": the content of last.pt
    metrics: dict[str, Any] | None = None  # "finished": the content of metrics.json


def feature_digests(config: RunConfig) -> dict[str, str]:
    """The sha256 of each configured feature file the model reads (files not found are left out: loading
    the inputs names them)."""
    digests = {}
    for modality in config.file_modalities():
        path = config.features.path_of(modality)
        if path is not None and Path(path).is_file():
            digests[modality] = file_sha256(path)
    return digests


def _differences(old_config: dict, config: RunConfig, old_digests: dict[str, str], digests: dict[str, str]) -> str:
    """What makes a saved run other than the one ``config`` asks for ("" when nothing)."""
    problems = []
    changed = _changed_keys(old_config, config.to_dict())
    if changed:
        problems.append(f"its config differs in {', '.join(changed)}")
    swapped = sorted(m for m in set(old_digests) | set(digests) if old_digests.get(m) != digests.get(m))
    if swapped:
        problems.append(f"the {', '.join(swapped)} feature file differs from the one it was trained on (sha256)")
    return "; ".join(problems)


def plan_start(out: Path, config: RunConfig, digests: dict[str, str], *, resume: bool,
               restart_stale: bool) -> Start:
    """Decide from what ``out`` holds how to start (see the module docstring); raises before any change."""
    state = run_state(out)
    if state is RunState.NEW:
        return Start("fresh")
    if not resume:
        hint = "continue it with --resume" if state is not RunState.FINISHED else "choose another --out"
        raise ConfigError(f"{out} already holds a {state.value} run; {hint}, or delete the folder")
    if state is RunState.STARTED or (state is RunState.FAILED and restart_stale):
        return Start("fresh", clear=True)
    try:
        if state is RunState.FINISHED:
            metrics = _read_metrics(out / METRICS_FILE)
            old_digests = {m: s.get("sha256") for m, s in metrics.get("feature_sources", {}).items()}
            stale = _differences(saved_config(out), config, old_digests, digests)
            if not stale:
                return Start("finished", metrics=metrics)
        elif not (out / LAST_CHECKPOINT).exists():  # failed before its first checkpoint
            return Start("fresh", clear=True)
        else:
            checkpoint = load_checkpoint(out / LAST_CHECKPOINT)
            stale = _differences(checkpoint["config"], config, checkpoint.get("feature_digests", {}), digests)
            if not stale:
                return Start("continue", checkpoint=checkpoint)
    except InputError as err:
        if not restart_stale:
            raise
        stale = str(err)
    if not restart_stale:
        raise ConfigError(f"--resume: {out} holds another run: {stale}; delete the folder, choose another --out, "
                          "or pass --restart-stale to start it afresh")
    print(f"{out}: starting afresh ({stale})", file=sys.stderr)
    return Start("fresh", clear=True)


def _read_metrics(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise InputError(path, f"unreadable ({err})") from None


def train(config: RunConfig, out: str | Path, *, resume: bool = False, restart_stale: bool = False,
          progress: bool = True) -> dict:
    """Train, select on validation, test the best checkpoint; write the run folder; return metrics.

    ``resume``/``restart_stale``: what to do with a run already in ``out`` (module docstring). An error
    raised after the run folder is set up leaves ``FAILED`` (holding the message) and no ``metrics.json``.
    """
    out = Path(out)
    digests = feature_digests(config)
    start = plan_start(out, config, digests, resume=resume, restart_stale=restart_stale)
    if start.action == "finished":
        print(f"{out} is finished ({METRICS_FILE} exists); nothing to do", file=sys.stderr)
        return start.metrics

    device = select_device(config.training.device)
    autocast(config, device)  # fails now, before the run folder is touched, on an amp option the device lacks
    configure_torch(config, device)
    run = build_run(config, device)  # seeds every RNG first; input errors stop here, the folder untouched
    for modality, digest in digests.items():
        run.feature_sources[modality]["sha256"] = digest
    queries, label_index = _training_data(run)
    if start.clear:
        clear_run(out)
    remove_temporaries(out)
    (out / FAILED_FILE).unlink(missing_ok=True)
    if start.action == "fresh":
        out.mkdir(parents=True, exist_ok=True)
        provenance = {"momok_version": __version__, "git_commit": git_commit(),
                      "torch_version": str(torch.__version__), "command": " ".join(sys.argv)}
        write_text_atomic(out / CONFIG_FILE, dump_config(config, {"provenance": provenance}))
    try:
        return _train_and_test(run, out, queries, label_index, start.checkpoint, digests, progress)
    except Exception as err:
        write_text_atomic(out / FAILED_FILE, f"{type(err).__name__}: {err}\n")
        raise


def _training_data(run: AssembledRun) -> tuple[torch.Tensor, FilterIndex | None]:
    """The training queries and, for models whose loss reads every answer of a query, their label index."""
    config, model, dataset = run.config, run.model, run.dataset
    queries = training_queries(dataset.train, dataset.num_relations, distinct=config.training.label_batching)
    if len(queries) == 0:
        raise MomokError(f"{config.dataset.path}: no training triples")
    if not (model.needs_labels() or config.training.label_batching):
        return queries, None
    if not model.needs_labels():
        raise ConfigError("training.label_batching: the model's loss does not read labels")
    return queries, FilterIndex(dataset.train, dataset.num_entities, dataset.num_relations)


class FitFilter:
    """The train + valid filter a model's ``fit_on_validation`` ranks with (never test), built on first use."""

    def __init__(self, dataset: KGDataset):
        self.dataset = dataset
        self.index: FilterIndex | None = None

    def get(self) -> FilterIndex:
        if self.index is None:
            d = self.dataset
            self.index = FilterIndex(torch.cat([d.train, d.valid]), d.num_entities, d.num_relations)
        return self.index


def fit_on_validation(run: AssembledRun, fit_filter: FitFilter) -> dict[str, float]:
    """The model's :meth:`~momok.models.base.LinkPredictor.fit_on_validation` (gradients off, eval mode),
    for models that override it; its logged numbers get a ``fit_`` prefix."""
    model = run.model
    if type(model).fit_on_validation is LinkPredictor.fit_on_validation:
        return {}
    model.eval()
    with torch.no_grad():
        parts = model.fit_on_validation(run.dataset.valid, fit_filter.get())
    return {f"fit_{name}": value for name, value in parts.items()}


def _train_and_test(run: AssembledRun, out: Path, queries: torch.Tensor, label_index: FilterIndex | None,
                    saved: dict[str, Any] | None, digests: dict[str, str], progress: bool) -> dict:
    """The loop from ``saved`` (``last.pt``'s content) or from the start, then the test of the best epoch."""
    config, model, dataset, device = run.config, run.model, run.dataset, run.device
    last_path, best_path = out / LAST_CHECKPOINT, out / BEST_CHECKPOINT
    generator = torch.Generator().manual_seed(config.seed)
    optimiser, estimator_optimiser, schedule = make_optimisers(config, model)
    scaler = torch.amp.GradScaler("cuda", enabled=config.training.amp == "fp16")
    estimator_scaler = torch.amp.GradScaler("cuda", enabled=config.training.amp == "fp16")

    filter_index = all_triples_filter(dataset)
    fit_filter = FitFilter(dataset)
    state = LoopState()
    best_model = None  # CPU copy of the best state_dict so far (also kept in last.pt)

    if saved is not None:
        try:
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
        except (KeyError, TypeError, ValueError, RuntimeError) as err:
            raise InputError(last_path, f"does not fit this run's model and optimisers ({err})") from None
        best_model = saved["best_model"]
        if best_model is not None:  # best.pt may be newer than last.pt if the run died in between
            save_checkpoint(best_path, {"model": best_model, "epoch": state.best_epoch})

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
            valid_value = selection_value(config, model, evaluate_model(run, dataset.valid, filter_index,
                                                                        selection_only=True))
            state.valid_seconds += time.perf_counter() - started
            state.last_valid = valid_value
            if valid_value > state.best_value or state.best_epoch is None:
                state.best_value, state.best_epoch, state.bad_evaluations = valid_value, epoch, 0
                best_model = _cpu_copy(model.state_dict())
                save_checkpoint(best_path, {"model": best_model, "epoch": epoch})
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
            save_checkpoint(last_path, {
                "config": config.to_dict(),
                "feature_digests": digests,
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
        bar.update(1)
        bar.set_postfix(loss=f"{mean_loss:.4g}", **({} if state.last_valid is None else
                                                   {f"valid_{config.evaluation.metric}": f"{state.last_valid:.4f}"}))
    bar.close()

    # The test: the best-validation checkpoint, loaded from disk, evaluated once.
    best = load_checkpoint(best_path, device)
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
        "momok_version": __version__,
    }
    write_json_atomic(out / METRICS_FILE, metrics)  # last: its presence marks the run finished
    if progress:
        print(f"best epoch {metrics['best_epoch']}; test:\n{metrics_table(test)}", file=sys.stderr)
    return metrics


def _cpu_copy(state_dict: dict) -> dict:
    """A CPU copy of a state dict (tensors cloned, other values such as extra states kept)."""
    return {k: v.detach().to("cpu", copy=True) if isinstance(v, torch.Tensor) else v for k, v in state_dict.items()}
