"""``momok evaluate --checkpoint DIR --split test|valid [--out FILE]``: re-evaluate a saved run.

Rebuilds the run from ``DIR/config.yaml`` (dataset, feature files, model; relative paths against the
current working directory, as in training), loads ``DIR/checkpoint/best.pt`` and evaluates the split
with the same filtered protocol as ``momok train``. On the CPU the result equals the ``valid`` /
``test`` entry of ``DIR/metrics.json``. ``--out`` writes ``{score_key: summary}`` as JSON; the
realistic metrics are printed either way.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from momok.assembly import all_triples_filter, build_run, configure_torch, evaluate_model
from momok.config import load_config
from momok.errors import InputError
from momok.evaluation import metrics_table
from momok.run_folder import BEST_CHECKPOINT, CONFIG_FILE, load_checkpoint
from momok.atomic import write_json_atomic
from momok.utils import select_device


def evaluate_checkpoint(run_dir: str | Path, split: str = "test", *, device: str | None = None) -> dict[str, dict]:
    """``{score_key: summary}`` of the best checkpoint of ``run_dir`` on ``split`` (``test``/``valid``)."""
    run_dir = Path(run_dir)
    if split not in ("test", "valid"):
        raise ValueError(f"split must be 'test' or 'valid', got {split!r}")
    for needed in (CONFIG_FILE, BEST_CHECKPOINT):
        if not (run_dir / needed).is_file():
            raise InputError(run_dir / needed, "not found; is this a run folder written by momok train?")
    config = load_config(run_dir / CONFIG_FILE, [] if device is None else [f"training.device={device}"])
    torch_device = select_device(config.training.device)
    configure_torch(config, torch_device)
    run = build_run(config, torch_device)
    best = load_checkpoint(run_dir / BEST_CHECKPOINT, torch_device)
    try:
        run.model.load_state_dict(best["model"])
    except (RuntimeError, KeyError) as err:
        raise InputError(run_dir / BEST_CHECKPOINT, f"does not fit the model of {CONFIG_FILE}: {err}") from None
    return evaluate_model(run, getattr(run.dataset, split), all_triples_filter(run.dataset))


def configure_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--checkpoint", required=True, type=Path, metavar="DIR",
                        help="run folder written by momok train (config.yaml, checkpoint/best.pt)")
    parser.add_argument("--split", choices=["test", "valid"], default="test", help="split to evaluate (default test)")
    parser.add_argument("--out", type=Path, metavar="FILE", help="write {score_key: summary} as JSON here")
    parser.add_argument("--device", choices=["auto", "cpu", "cuda"], help="override training.device")


def run(args: argparse.Namespace) -> int:
    results = evaluate_checkpoint(args.checkpoint, args.split, device=args.device)
    if args.out is not None:
        write_json_atomic(args.out, results)
    print(metrics_table(results), file=sys.stdout)
    return 0
