"""The compute budget of regenerating the whole paper: every training of the default DAG, costed from
measured per-step and per-validation costs.

    python benchmarks/paper_budget.py [--steps 1] [--models momok ...] [--datasets MKG-Y ...]
        [--json budget.json [--resume]] [--class-timeout SECONDS]

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
   with ``torch.utils.flop_counter``'s formulas (matrix products only; :class:`MatmulFlops`), each
   evaluation counted in a second, untimed pass.
4. Per run: epoch = steps per epoch × step; validation = first batch + (batches − 1) × kept batch; upper
   bound = the configured epochs with every validation (``evaluation.every``), lower bound = the earliest
   early stop (the first validation best, then ``evaluation.patience`` worse ones: every × (patience + 1)
   epochs); plus the final valid + test evaluation.
5. CPU-days on this machine from the measured times; a GPU estimate from the FLOPs at ``--gpu-tflops``
   × ``--utilisation``; totals of the measured classes, then subtotals per dataset for MoMoK and for the
   baselines.

Each class is measured in a fresh Python process (``--child CONFIG``), which prints its figures and its
own peak resident memory (``ru_maxrss``) as one JSON line: a class that raises, exits non-zero, is killed
(e.g. SIGKILL from the out-of-memory killer) or outlives ``--class-timeout`` gives a "not measured" row,
and the next class is measured. ``--json`` is rewritten (atomically) after every class; ``--resume``
reads it back and measures only the classes not measured there, so an interrupted run goes on where it
stopped.

The machine is shared: the load average is printed at the start and the end, and measured times scale
with it.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, is_dataclass, replace
from pathlib import Path
from types import SimpleNamespace

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.flop_counter import flop_registry

import momok
from momok.assembly import AssembledRun, evaluate_model
from momok.atomic import write_text_atomic
from momok.config import load_config
from momok.data.datasets import load_dataset
from momok.errors import InputError, MomokError, first_line
from momok.evaluation import FilterIndex
from momok.features.store import FeatureTable
from momok.models.cache import ParameterCache
from momok.models.registry import BuildContext, build_model
from momok.training import _train_epoch, make_optimisers, training_queries
from momok.utils import reuse_freed_memory

REPO_ROOT = Path(__file__).resolve().parents[1]
#: KVC16K is not in the offline copy: the paper's Table 1 (entities, relations, train, valid, test)
TABLE1_SIZES = {"KVC16K": (16015, 4, 180190, 22523, 22525)}
#: NVIDIA H100 SXM, dense TF32 tensor-core rate (the datasheet's 989 TFLOP/s is with 2:4 sparsity)
H100_TF32_TFLOPS = 494.7
#: A child prints its figures as one line ``RESULT {json}`` on stdout
RESULT_PREFIX = "RESULT "
#: The folder holding the ``momok`` package this script imported: the children import the same one
MOMOK_ROOT = Path(momok.__file__).resolve().parents[1]


def positive(kind):
    """An argparse type: ``kind(text)``, which must be > 0."""
    def convert(text: str):
        value = kind(text)
        if not value > 0:
            raise argparse.ArgumentTypeError(f"must be > 0, got {text}")
        return value
    convert.__name__ = f"positive {kind.__name__}"
    return convert


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--configs", type=Path, help="run configs rendered before (results/configs layout); "
                        "default: render them with snakemake into a scratch directory")
    parser.add_argument("--configfile", type=Path, default=REPO_ROOT / "config/config.yaml")
    parser.add_argument("--data-root", type=Path, default=REPO_ROOT / "../shared/datasets",
                        help="folder with one benchmark folder per dataset name")
    parser.add_argument("--feature-dims", nargs="+", default=["image=4096", "text=768"],
                        help="width of the random features per modality (default: VGG16 fc7, BERT base)")
    parser.add_argument("--steps", type=positive(int), default=1, help="timed training steps per cost class")
    parser.add_argument("--models", nargs="+", help="only these models (default: every model of the DAG)")
    parser.add_argument("--datasets", nargs="+", help="only these datasets")
    parser.add_argument("--threads", type=positive(int), default=torch.get_num_threads(),
                        help="torch threads of each measuring process")
    parser.add_argument("--gpu-tflops", type=float, default=H100_TF32_TFLOPS,
                        help="device rate of the GPU estimate (default: H100 SXM dense TF32)")
    parser.add_argument("--utilisation", type=float, default=0.3,
                        help="share of --gpu-tflops the runs are assumed to reach")
    parser.add_argument("--json", type=Path, help="also write the per-class figures here, rewritten "
                        "(atomically) after every class")
    parser.add_argument("--resume", action="store_true", help="read --json and measure only the classes not "
                        "measured there (the others keep their figures, in the rows and the totals)")
    parser.add_argument("--class-timeout", type=positive(float), metavar="SECONDS",
                        help="stop a class's measuring process after this long: 'not measured' (default: no limit)")
    parser.add_argument("--child", type=Path, metavar="CONFIG", help=argparse.SUPPRESS)  # see child_main
    args = parser.parse_args(argv)
    if args.resume and args.json is None:
        parser.error("--resume needs --json PATH (the figures to resume from)")
    return args


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


def run_of(path: Path) -> dict:
    """A training from its run config ``<dataset>/<model>/<variant>/seed<seed>.yaml``: dataset, model,
    variant, seed, its RunConfig and the file's path."""
    dataset, model, variant = path.parts[-4:-1]
    return dict(dataset=dataset, model=model, variant=variant, seed=int(path.stem[4:]), config=load_config(path),
                path=path)


def plan(configs: Path, args) -> list[dict]:
    """One entry per training (:func:`run_of`)."""
    runs = []
    for path in sorted(configs.glob("*/*/*/seed*.yaml")):
        dataset, model = path.parts[-4:-2]
        if (args.models and model not in args.models) or (args.datasets and dataset not in args.datasets):
            continue
        runs.append(run_of(path))
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
        raise InputError(data_root / name, f"no such dataset folder, and {name} is not in TABLE1_SIZES")
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


def peak_mib() -> float:
    """This process's peak resident set size so far, MiB (Linux reports ``ru_maxrss`` in KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def note(text: str) -> None:
    """Progress on stderr (with the peak resident memory so far)."""
    print(f"  [{time.strftime('%H:%M:%S')}] {text} (peak memory {peak_mib():.0f} MiB)", file=sys.stderr, flush=True)


def measure(run: dict, dataset, dims: dict[str, int], args) -> dict:
    config = replace(run["config"], training=replace(run["config"].training, device="cpu", num_threads=None))
    device = torch.device("cpu")
    E, R = dataset.num_entities, dataset.num_relations
    g = torch.Generator().manual_seed(0)
    features = {m: FeatureTable(torch.randn(E, dims[m], generator=g), torch.ones(E, dtype=torch.bool))
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
    with MatmulFlops() as counter:  # the warm-up step, FLOPs counted
        steps(1)
    step_flops = counter.total
    note("warm-up step")
    step_s = steps(args.steps)

    run_ = AssembledRun(config, dataset, features, {}, model, device)
    index = FilterIndex(torch.cat([dataset.train, dataset.valid, dataset.test]), E, R)
    window = relation_window(dataset.valid, max(1, config.evaluation.batch_size // 2))  # one batch of queries

    def timed_eval(selection_only: bool, *, cold: bool = False) -> tuple[float, int]:
        """Seconds, then the FLOPs of a second, untimed pass (counting slows every operation down);
        ``cold``: the counted pass rebuilds the entity-side tables the timed one built, as it did."""
        start = time.perf_counter()
        evaluate_model(run_, window, index, selection_only=selection_only)
        seconds = time.perf_counter() - start
        if cold:
            drop_caches(model)
        with MatmulFlops() as counter:
            evaluate_model(run_, window, index, selection_only=selection_only)
        return seconds, counter.total

    first_s, first_flops = timed_eval(True, cold=True)  # builds the entity-side tables (parameters changed)
    kept_s, valid_batch_flops = timed_eval(True)  # the tables kept
    full_s, _ = timed_eval(False)  # every score key, as the final evaluation
    tables_flops = max(0, first_flops - valid_batch_flops)
    return dict(step_s=step_s, step_flops=step_flops, valid_first_s=first_s, valid_batch_s=kept_s,
                final_batch_s=full_s, valid_batch_flops=valid_batch_flops, tables_flops=tables_flops,
                steps_per_epoch=math.ceil(len(queries) / size),
                valid_batches=math.ceil(2 * len(dataset.valid) / config.evaluation.batch_size),
                test_batches=math.ceil(2 * len(dataset.test) / config.evaluation.batch_size),
                synthetic=bool(getattr(dataset, "synthetic", False)))


def drop_caches(model: torch.nn.Module) -> None:
    """Clear every :class:`~momok.models.cache.ParameterCache` of the model's modules (the entity-side
    tables kept across evaluation batches)."""
    for module in model.modules():
        for value in vars(module).values():
            if isinstance(value, ParameterCache):
                value.clear()


class MatmulFlops(TorchDispatchMode):
    """FLOPs of the matrix products run inside it (``torch.utils.flop_counter``'s formulas, 2 per
    multiply-add). Unlike ``FlopCounterMode`` it keeps no module hooks, which fail ("Expected gradient
    function to be set") on a module that returns a leaf requiring grad while autograd is off."""

    def __init__(self):
        super().__init__()
        self.total = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        count = flop_registry.get(func._overloadpacket)
        if count is not None:
            self.total += count(*args, **kwargs, out_val=out)
        return out


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


# ------------------------------------------------------------------------------------------ one process a class
def child_main(args) -> int:
    """``--child CONFIG``: measure the class of that run config and print the figures, with this process's
    peak resident memory (``peak_mib``), as one line ``RESULT {json}``; an error is printed the same way
    (``{"error": "<type>: <first line>"}``) and exits 1."""
    reuse_freed_memory()
    torch.set_num_threads(args.threads)
    dims = {k: int(v) for k, v in (item.split("=", 1) for item in args.feature_dims)}
    try:
        run = run_of(args.child)
        result = measure(run, dataset_of(run["dataset"], args.data_root), dims, args)
    except Exception as error:  # e.g. MemoryError, torch.OutOfMemoryError: the parent's "not measured" row
        print(RESULT_PREFIX + json.dumps({"error": f"{type(error).__name__}: {first_line(error, 200)}"}), flush=True)
        return 1
    print(RESULT_PREFIX + json.dumps({**result, "peak_mib": peak_mib()}), flush=True)
    return 0


def child_command(run: dict, args) -> list[str]:
    """The command line measuring ``run``'s class in a fresh process (this interpreter, this script)."""
    return [sys.executable, str(Path(__file__).resolve()), "--child", str(run["path"]), "--data-root",
            str(args.data_root), "--feature-dims", *args.feature_dims, "--steps", str(args.steps),
            "--threads", str(args.threads)]


def launch(command: list[str], timeout: float | None) -> dict:
    """Run a measuring process (stderr passes through: its progress) and return its figures, or
    ``{"not_measured": reason}``: it outlived ``timeout`` seconds (then it is killed), was killed by a
    signal, raised, or exited otherwise without figures."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(MOMOK_ROOT), os.environ.get("PYTHONPATH")])))
    try:
        done = subprocess.run(command, stdout=subprocess.PIPE, text=True, timeout=timeout, env=env)
    except subprocess.TimeoutExpired:
        return {"not_measured": f"stopped after --class-timeout {timeout:g} s"}
    results = [json.loads(line[len(RESULT_PREFIX):]) for line in done.stdout.splitlines()
               if line.startswith(RESULT_PREFIX)]
    if done.returncode < 0:
        number = -done.returncode
        return {"not_measured": f"killed by signal {number} ({signal_name(number)})"}
    if results and "error" in results[-1]:
        return {"not_measured": results[-1]["error"]}
    if done.returncode != 0 or not results:
        return {"not_measured": f"exited with status {done.returncode} without figures"}
    return results[-1]


def signal_name(number: int) -> str:
    """What a signal that ended a child says: SIGKILL is what the kernel's out-of-memory killer sends."""
    if number == signal.SIGKILL:
        return "out of memory?"
    try:
        return signal.Signals(number).name
    except ValueError:
        return "unknown signal"


# ------------------------------------------------------------------------------------------ rows and totals
def class_row(key: str, members: list[dict], measured: dict) -> dict:
    """A class's JSON row: its key, runs and variants, and the measured figures with the summed cost of
    its runs, or ``not_measured`` and the reason."""
    row = dict(class_key=json.loads(key), dataset=members[0]["dataset"], model=members[0]["model"],
               runs=len(members), variants=sorted({run["variant"] for run in members}))
    if "not_measured" in measured:
        return {**row, "not_measured": measured["not_measured"]}
    costs = [run_cost(run["config"], measured) for run in members]
    sums = {f"{bound}_{what}": sum(c[bound][field] for c in costs)
            for bound in ("upper", "lower") for what, field in (("cpu_s", "seconds"), ("flops", "flops"))}
    return {**row, "measured": measured, "validation_s": costs[0]["validation_s"], **sums}


def class_key_of(row: dict) -> str:
    """The key of a JSON row's class, as :func:`cost_class` writes it."""
    return json.dumps(row["class_key"], sort_keys=True, default=str)


def previous_rows(path: Path) -> list[dict]:
    """The rows of an earlier ``--json`` (none when the file does not exist yet)."""
    if not path.exists():
        return []
    try:
        rows = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise InputError(path, f"cannot be resumed from: not readable as JSON ({first_line(error)})") from None
    if not isinstance(rows, list) or not all(isinstance(row, dict) and "class_key" in row for row in rows):
        raise InputError(path, "cannot be resumed from: not a paper_budget --json file (a list of rows with "
                               "a class_key)")
    return rows


def format_row(row: dict, rate: float) -> str:
    """The printed row of a class (``rate``: the GPU estimate's FLOP/s)."""
    if "not_measured" in row:
        return f"{row['dataset']} | {row['model']} | {row['runs']} | not measured: {row['not_measured']}"
    m = row["measured"]
    return " | ".join([
        row["dataset"] + (" (synthetic)" if m["synthetic"] else ""), row["model"], str(row["runs"]),
        ",".join(row["variants"]), str(m["steps_per_epoch"]), f"{m['step_s']:.2f}", f"{m['step_flops'] / 1e9:.2f}",
        f"{row['validation_s']:.1f}", f"{row['upper_cpu_s'] / 86400:.1f}", f"{row['lower_cpu_s'] / 86400:.2f}",
        f"{row['upper_flops'] / rate / 3600:.2f}", f"{m['peak_mib']:.0f}" if "peak_mib" in m else "?"])


def print_totals(rows: list[dict], args, rate: float) -> None:
    """Totals of the measured classes, what was not measured, and subtotals per dataset and group."""
    measured = [row for row in rows if "measured" in row]
    for bound in ("upper", "lower"):
        seconds = sum(row[f"{bound}_cpu_s"] for row in measured)
        flops = sum(row[f"{bound}_flops"] for row in measured)
        print(f"total ({bound} bound): {seconds / 86400:.1f} CPU-days here ({seconds / 86400 / 365:.2f} years); "
              f"{flops / 1e15:.1f} PFLOP -> {flops / rate / 3600:.1f} GPU-hours at {args.gpu_tflops:g} TFLOP/s x "
              f"{args.utilisation:.0%}")
    missing = [row for row in rows if "measured" not in row]
    print(f"# measured {len(measured)} of {len(rows)} cost classes ({sum(row['runs'] for row in measured)} of "
          f"{sum(row['runs'] for row in rows)} trainings); not measured, left out of the totals: {len(missing)} "
          f"classes ({sum(row['runs'] for row in missing)} trainings)")
    print("# subtotals (measured classes)")
    print(" | ".join(("dataset", "models", "classes", "runs", "not measured runs", "upper CPU-d", "lower CPU-d",
                      "upper GPU-h", "lower GPU-h")))
    groups: dict[tuple[str, str], list[dict]] = {}
    for row in rows:
        groups.setdefault((row["dataset"], "MoMoK" if row["model"] == "momok" else "baselines"), []).append(row)
    for (dataset, models), members in sorted(groups.items()):
        done = [row for row in members if "measured" in row]
        print(" | ".join([dataset, models, str(len(members)), str(sum(row["runs"] for row in members)),
                          str(sum(row["runs"] for row in members if "measured" not in row)),
                          f"{sum(row['upper_cpu_s'] for row in done) / 86400:.1f}",
                          f"{sum(row['lower_cpu_s'] for row in done) / 86400:.2f}",
                          f"{sum(row['upper_flops'] for row in done) / rate / 3600:.2f}",
                          f"{sum(row['lower_flops'] for row in done) / rate / 3600:.2f}"]))


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.child:
        return child_main(args)
    earlier = previous_rows(args.json) if args.resume else []  # a bad file fails before any work
    print(f"# paper_budget, {args.threads} threads, torch {torch.__version__}; {load_average()}", flush=True)
    configs = args.configs or render_configs(args.configfile)
    runs = plan(configs, args)
    classes: dict[str, list[dict]] = {}
    for run in runs:
        classes.setdefault(cost_class(run), []).append(run)
    print(f"# {len(runs)} trainings from {configs} in {len(classes)} cost classes; "
          f"GPU estimate at {args.gpu_tflops:g} TFLOP/s x {args.utilisation:.0%}", flush=True)
    done = {class_key_of(row): row["measured"] for row in earlier if "measured" in row}
    others = [row for row in earlier if class_key_of(row) not in classes]  # kept in --json, not costed here
    if args.resume:
        print(f"# resuming from {args.json}: {sum(key in done for key in classes)} of these classes measured "
              f"there", flush=True)
    header = ("dataset", "model", "runs", "variants", "steps/ep", "step s", "GFLOP/step", "valid s",
              "upper CPU-d", "lower CPU-d", "upper GPU-h", "peak MiB")
    print(" | ".join(header))
    rate = args.gpu_tflops * 1e12 * args.utilisation
    rows = []
    for key, members in classes.items():
        measured = done.get(key) or launch(child_command(members[0], args), args.class_timeout)
        rows.append(class_row(key, members, measured))
        print(format_row(rows[-1], rate), flush=True)
        if args.json:
            write_text_atomic(args.json, json.dumps(others + rows, indent=1, default=str))
    print_totals(rows, args, rate)
    print(f"# finished; {load_average()}")
    return 0


def cli(argv=None) -> int:
    """:func:`main`, with a one-line message for an error the user can act on."""
    try:
        return main(argv)
    except MomokError as error:
        print(f"paper_budget: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(cli())
