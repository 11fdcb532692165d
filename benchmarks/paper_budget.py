"""The compute budget of regenerating the whole paper: every training of the default DAG, costed from
measured per-step and per-validation costs.

    python benchmarks/paper_budget.py [--steps 1] [--models momok ...] [--datasets MKG-Y ...]

1. The run list is the workflow's own: ``snakemake --until run_config all`` (``config/config.yaml``) in a
   scratch directory renders the run config of every training of the DAG (``results/configs/<dataset>/
   <model>/<variant>/seed<seed>.yaml``, exactly what ``momok train`` gets); ``--configs DIR`` reads
   configs rendered before instead.
2. Runs are grouped into cost classes: dataset, model name, model options (``exid_weight`` only as on/off:
   its value does not change the cost), training batch size and label batching, evaluation batch size,
   the feature modalities present. Seeds, noise ratios and λ values share a class.
3. Per class, at its configured size (the real split from ``--data-root``; KVC16K, not in the offline
   copy, as a random split of the paper's Table 1 sizes; random features of ``--feature-dims``, the
   workflow's default encoders VGG16 fc7 and BERT): ``--steps`` training steps after one warm-up step,
   through the trainer's own ``_train_epoch`` (model step, estimator step, Adam); one validation batch
   (the selection key alone, as per-epoch validation ranks it) with the entity-side tables built and one
   with them kept; one full-key batch (the final evaluation); FLOPs of a step and of a validation batch
   from ``torch.utils.flop_counter.FlopCounterMode`` (matrix products only).
4. Per run: epoch = steps per epoch × step; validation = first batch + (batches − 1) × kept batch; upper
   bound = the configured epochs with every validation (``evaluation.every``), lower bound = the earliest
   early stop (the first validation best, then ``evaluation.patience`` worse ones: every × (patience + 1)
   epochs); plus the final valid + test evaluation.
5. CPU-days on this machine from the measured times; a GPU estimate from the FLOPs at ``--gpu-tflops``
   × ``--utilisation``.

The machine is shared: the load average is printed at the start and the end, and measured times scale
with it.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, is_dataclass, replace
from pathlib import Path
from types import SimpleNamespace

import torch
from torch.utils.flop_counter import FlopCounterMode

from momok.assembly import AssembledRun, evaluate_model
from momok.config import load_config
from momok.data.datasets import load_dataset
from momok.evaluation import FilterIndex
from momok.models.registry import BuildContext, build_model
from momok.training import _train_epoch, make_optimisers, training_queries
from momok.utils import reuse_freed_memory

REPO_ROOT = Path(__file__).resolve().parents[1]
#: KVC16K is not in the offline copy: the paper's Table 1 (entities, relations, train, valid, test)
TABLE1_SIZES = {"KVC16K": (16015, 4, 180190, 22523, 22525)}
#: NVIDIA H100 SXM, dense TF32 tensor-core rate (the datasheet's 989 TFLOP/s is with 2:4 sparsity)
H100_TF32_TFLOPS = 494.7


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--configs", type=Path, help="run configs rendered before (results/configs layout); "
                        "default: render them with snakemake into a scratch directory")
    parser.add_argument("--configfile", type=Path, default=REPO_ROOT / "config/config.yaml")
    parser.add_argument("--data-root", type=Path, default=REPO_ROOT / "../shared/datasets",
                        help="folder with one benchmark folder per dataset name")
    parser.add_argument("--feature-dims", nargs="+", default=["image=4096", "text=768"],
                        help="width of the random features per modality (default: VGG16 fc7, BERT base)")
    parser.add_argument("--steps", type=int, default=1, help="timed training steps per cost class")
    parser.add_argument("--models", nargs="+", help="only these models (default: every model of the DAG)")
    parser.add_argument("--datasets", nargs="+", help="only these datasets")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--gpu-tflops", type=float, default=H100_TF32_TFLOPS,
                        help="device rate of the GPU estimate (default: H100 SXM dense TF32)")
    parser.add_argument("--utilisation", type=float, default=0.3,
                        help="share of --gpu-tflops the runs are assumed to reach")
    parser.add_argument("--json", type=Path, help="also write the per-class figures here")
    return parser.parse_args(argv)


def load_average() -> str:
    one, five, fifteen = os.getloadavg()
    return f"load average {one:.1f} {five:.1f} {fifteen:.1f} on {os.cpu_count()} CPUs"


# ------------------------------------------------------------------------------------------ the plan
def render_configs(configfile: Path) -> Path:
    """Every training's run config, rendered by the workflow (its run_config jobs) in a scratch folder."""
    scratch = Path(tempfile.mkdtemp(prefix="momok-budget-"))
    command = [sys.executable, "-m", "snakemake", "-s", str(REPO_ROOT / "Snakefile"), "--directory", str(scratch),
               "--configfile", str(configfile), "--cores", "1", "--until", "run_config", "--quiet", "all"]
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
    return scratch / "results/configs"


def plan(configs: Path, args) -> list[dict]:
    """One entry per training: dataset, model, variant, seed, its RunConfig."""
    runs = []
    for path in sorted(configs.glob("*/*/*/seed*.yaml")):
        dataset, model, variant = path.parts[-4:-1]
        if (args.models and model not in args.models) or (args.datasets and dataset not in args.datasets):
            continue
        runs.append(dict(dataset=dataset, model=model, variant=variant, seed=int(path.stem[4:]),
                         config=load_config(path)))
    if not runs:
        raise SystemExit(f"no run configs under {configs} (after --models/--datasets)")
    return runs


def cost_class(run: dict) -> str:
    """What changes a run's cost per step and per validation (see the module docstring)."""
    config = run["config"]
    options = asdict(config.model.options) if is_dataclass(config.model.options) else dict(config.model.options or {})
    if "exid_weight" in options:
        options["exid_weight"] = options["exid_weight"] > 0
    present = [m for m in config.file_modalities() if config.features.path_of(m) is not None]
    t = config.training
    return json.dumps([run["dataset"], config.model.name, options, t.batch_size, t.label_batching, t.amp,
                       config.evaluation.batch_size, present], sort_keys=True, default=str)


# ------------------------------------------------------------------------------------------ measuring
def dataset_of(name: str, data_root: Path):
    if (data_root / name).is_dir():
        return load_dataset(data_root / name)
    if name not in TABLE1_SIZES:
        raise SystemExit(f"dataset {name} is neither under {data_root} nor in TABLE1_SIZES")
    entities, relations, *sizes = TABLE1_SIZES[name]
    g = torch.Generator().manual_seed(0)
    splits = [torch.stack([torch.randint(0, entities, (n,), generator=g), torch.randint(0, relations, (n,), generator=g),
                           torch.randint(0, entities, (n,), generator=g)], 1) for n in sizes]
    return SimpleNamespace(name=name, entities=[str(i) for i in range(entities)],
                           relations=[str(r) for r in range(relations)], train=splits[0], valid=splits[1],
                           test=splits[2], num_entities=entities, num_relations=relations, synthetic=True)


def relation_window(triples: torch.Tensor, count: int) -> torch.Tensor:
    """``count`` triples from the middle of the split sorted by relation (validation batches are in
    relation order, so this holds about as many distinct relations as one of them)."""
    ordered = triples[torch.argsort(triples[:, 1], stable=True)]
    start = max(0, (len(ordered) - count) // 2)
    return ordered[start:start + count]


def note(text: str) -> None:
    """Progress on stderr (with the peak resident memory so far)."""
    import resource
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"  [{time.strftime('%H:%M:%S')}] {text} (peak memory {peak:.0f} MiB)", file=sys.stderr, flush=True)


def measure(run: dict, dataset, dims: dict[str, int], args) -> dict:
    config = replace(run["config"], training=replace(run["config"].training, device="cpu", num_threads=None))
    device = torch.device("cpu")
    E, R = dataset.num_entities, dataset.num_relations
    g = torch.Generator().manual_seed(0)
    features = {m: SimpleNamespace(features=torch.randn(E, dims[m], generator=g), mask=torch.ones(E, dtype=torch.bool),
                                   metadata={})
                for m in config.file_modalities() if config.features.path_of(m) is not None}
    torch.manual_seed(config.seed)
    context = BuildContext(num_entities=E, num_relations=R, features=features,
                           generator=torch.Generator().manual_seed(config.seed))
    model = build_model(config.model.name, config.model.options, context).to(device)
    queries = training_queries(dataset.train, R, distinct=config.training.label_batching)
    label_index = FilterIndex(dataset.train, E, R) if model.needs_labels() else None
    optimiser, estimator_optimiser, _ = make_optimisers(config, model)
    scalers = [torch.amp.GradScaler("cuda", enabled=False) for _ in range(2)]
    generator = torch.Generator().manual_seed(config.seed)
    size = config.training.batch_size

    def steps(n: int) -> float:
        rows = queries[torch.randperm(len(queries), generator=generator)[: n * size]]
        start = time.perf_counter()
        _train_epoch(config, model, rows, label_index, generator, device, (optimiser, scalers[0]),
                     (estimator_optimiser, scalers[1]), False, 0)
        return (time.perf_counter() - start) / n

    note(f"{run['dataset']}/{run['model']}/{run['variant']}: built")
    with FlopCounterMode(display=False) as counter:  # the warm-up step, FLOPs counted
        steps(1)
    step_flops = counter.get_total_flops()
    note("warm-up step")
    step_s = steps(args.steps)

    run_ = AssembledRun(config, dataset, features, {}, model, device)
    index = FilterIndex(torch.cat([dataset.train, dataset.valid, dataset.test]), E, R)
    window = relation_window(dataset.valid, max(1, config.evaluation.batch_size // 2))  # one batch of queries

    def timed_eval(selection_only: bool) -> tuple[float, int]:
        """Seconds (FLOPs counted along: the counter's overhead is small beside these products) and FLOPs."""
        with FlopCounterMode(display=False) as counter:
            start = time.perf_counter()
            evaluate_model(run_, window, index, selection_only=selection_only)
            seconds = time.perf_counter() - start
        return seconds, counter.get_total_flops()

    first_s, first_flops = timed_eval(True)  # builds the entity-side tables (parameters changed in training)
    kept_s, valid_batch_flops = timed_eval(True)  # the tables kept
    full_s, _ = timed_eval(False)  # every score key, as the final evaluation
    tables_flops = max(0, first_flops - valid_batch_flops)
    return dict(step_s=step_s, step_flops=step_flops, valid_first_s=first_s, valid_batch_s=kept_s,
                final_batch_s=full_s, valid_batch_flops=valid_batch_flops, tables_flops=tables_flops,
                steps_per_epoch=math.ceil(len(queries) / size),
                valid_batches=math.ceil(2 * len(dataset.valid) / config.evaluation.batch_size),
                test_batches=math.ceil(2 * len(dataset.test) / config.evaluation.batch_size),
                synthetic=bool(getattr(dataset, "synthetic", False)))


# ------------------------------------------------------------------------------------------ costing
def run_cost(config, m: dict) -> dict:
    """Seconds and FLOPs of one run: upper bound (every configured epoch) and earliest early stop."""
    epochs, every, patience = config.training.epochs, config.evaluation.every, config.evaluation.patience
    validation_s = m["valid_first_s"] + (m["valid_batches"] - 1) * m["valid_batch_s"]
    validation_flops = m["tables_flops"] + m["valid_batches"] * m["valid_batch_flops"]
    final_s = m["valid_first_s"] + (m["valid_batches"] + m["test_batches"] - 1) * m["final_batch_s"]
    final_flops = m["tables_flops"] + (m["valid_batches"] + m["test_batches"]) * m["valid_batch_flops"]
    out = {}
    earliest = epochs if patience is None else min(epochs, every * (patience + 1))
    for bound, n_epochs in (("upper", epochs), ("lower", earliest)):
        validations = n_epochs // every + (1 if n_epochs % every else 0)  # and after the last epoch
        steps = n_epochs * m["steps_per_epoch"]
        out[bound] = dict(epochs=n_epochs, validations=validations,
                          seconds=steps * m["step_s"] + validations * validation_s + final_s,
                          flops=steps * m["step_flops"] + validations * validation_flops + final_flops)
    out["validation_s"] = validation_s
    return out


def main(argv=None) -> int:
    args = parse_args(argv)
    reuse_freed_memory()
    torch.set_num_threads(args.threads)
    dims = {k: int(v) for k, v in (item.split("=", 1) for item in args.feature_dims)}
    print(f"# paper_budget, {args.threads} threads, torch {torch.__version__}; {load_average()}", flush=True)
    configs = args.configs or render_configs(args.configfile)
    runs = plan(configs, args)
    classes: dict[str, list[dict]] = {}
    for run in runs:
        classes.setdefault(cost_class(run), []).append(run)
    print(f"# {len(runs)} trainings from {configs} in {len(classes)} cost classes; "
          f"GPU estimate at {args.gpu_tflops:g} TFLOP/s x {args.utilisation:.0%}", flush=True)
    header = ("dataset", "model", "runs", "variants", "steps/ep", "step s", "GFLOP/step", "valid s",
              "upper CPU-d", "lower CPU-d", "upper GPU-h")
    print(" | ".join(header))
    datasets: dict[str, object] = {}
    rows, totals = [], {"upper": [0.0, 0.0], "lower": [0.0, 0.0]}
    rate = args.gpu_tflops * 1e12 * args.utilisation
    for key, members in classes.items():
        first = members[0]
        if first["dataset"] not in datasets:
            datasets[first["dataset"]] = dataset_of(first["dataset"], args.data_root)
        try:
            m = measure(first, datasets[first["dataset"]], dims, args)
        except (RuntimeError, MemoryError) as error:  # e.g. a step that does not fit in memory here
            print(f"{first['dataset']} | {first['model']} | {len(members)} | not measured: "
                  f"{str(error).splitlines()[0][:120]}", flush=True)
            continue
        costs = [run_cost(run["config"], m) for run in members]
        cls = {bound: [sum(c[bound]["seconds"] for c in costs), sum(c[bound]["flops"] for c in costs)]
               for bound in ("upper", "lower")}
        for bound in totals:
            totals[bound][0] += cls[bound][0]
            totals[bound][1] += cls[bound][1]
        variants = sorted({run["variant"] for run in members})
        row = [first["dataset"] + (" (synthetic)" if m["synthetic"] else ""), first["model"], str(len(members)),
               ",".join(variants), str(m["steps_per_epoch"]), f"{m['step_s']:.2f}", f"{m['step_flops'] / 1e9:.2f}",
               f"{costs[0]['validation_s']:.1f}", f"{cls['upper'][0] / 86400:.1f}", f"{cls['lower'][0] / 86400:.2f}",
               f"{cls['upper'][1] / rate / 3600:.2f}"]
        print(" | ".join(row), flush=True)
        rows.append(dict(class_key=json.loads(key), runs=len(members), variants=variants, measured=m,
                         upper_cpu_s=cls["upper"][0], lower_cpu_s=cls["lower"][0],
                         upper_flops=cls["upper"][1], lower_flops=cls["lower"][1]))
    for bound, (seconds, flops) in totals.items():
        print(f"total ({bound} bound): {seconds / 86400:.1f} CPU-days here ({seconds / 86400 / 365:.2f} years); "
              f"{flops / 1e15:.1f} PFLOP -> {flops / rate / 3600:.1f} GPU-hours at {args.gpu_tflops:g} TFLOP/s x "
              f"{args.utilisation:.0%}")
    print(f"# finished; {load_average()}")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1, default=str))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
