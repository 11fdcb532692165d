"""``momok train --config FILE --out DIR [--set KEY=VALUE ...] [--resume [--restart-stale]]``."""

from __future__ import annotations

import argparse
from pathlib import Path

from momok.config import load_config
from momok.errors import ConfigError
from momok.training import train


def configure_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", required=True, type=Path, help="run config (YAML); see config/run.example.yaml")
    parser.add_argument("--out", required=True, type=Path,
                        help="run folder to write (new or empty, or a run to resume)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", dest="overrides",
                        help="override a config value, e.g. --set model.num_experts=5 (value parsed as YAML); "
                             "repeatable")
    parser.add_argument("--resume", action="store_true",
                        help="continue an interrupted run from OUT/checkpoint/last.pt; a finished run is left as is; "
                             "either only when its config and feature files are the ones given now")
    parser.add_argument("--restart-stale", action="store_true",
                        help="with --resume: start afresh (removing the run's own files) a run that failed, or whose "
                             "config or feature files differ, instead of refusing (the workflow passes this)")
    parser.add_argument("--device", choices=["auto", "cpu", "cuda"], help="override training.device")
    parser.add_argument("--quiet", action="store_true", help="no progress bars or summary")


def run(args: argparse.Namespace) -> int:
    if args.restart_stale and not args.resume:
        raise ConfigError("--restart-stale: only applies with --resume")
    overrides = list(args.overrides)
    if args.device is not None:
        overrides.append(f"training.device={args.device}")
    config = load_config(args.config, overrides)
    train(config, args.out, resume=args.resume, restart_stale=args.restart_stale, progress=not args.quiet)
    return 0
