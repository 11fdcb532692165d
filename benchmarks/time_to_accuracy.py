"""Time to accuracy: validation MRR against training time and epochs, for settings side by side.

    python benchmarks/time_to_accuracy.py --config config/experiments/mkgy_text_cpu.yaml \
        --out results/time_to_accuracy --epochs 40 [--setting NAME KEY=VALUE ...]...

Each setting is one ``momok train`` run of ``--config`` with the setting's overrides, validated after every
epoch and never stopped early (``evaluation.every=1``, ``evaluation.patience=null``), in ``OUT/<name>/``.
Runs resume: a rerun continues an interrupted one and reuses a finished one. Without ``--setting`` the two
settings compared are the paper's loss (softmax cross-entropy over all entities, Eq. 5; ranking by the sum of
the scores) and the authors' code (``loss: bce``, ``joint_score: mean_sigmoid``, random CLUB pairs without
the log-variance term, gate noise on candidates).

Printed per setting: the best validation MRR and its epoch; the epoch and the training minutes at which the
validation MRR first reaches 90 % of that best; and the fewest epochs whose best validation MRR so far is
within ``--tolerance`` (default 0.003, i.e. 0.3 MRR points on the paper's ×100 scale) of the best of the whole
run, the figure that sets an epoch budget. Minutes are the sum of the epochs' training seconds from
``history.csv`` (validation time excluded). ``OUT/time_to_accuracy.png`` plots both views.
"""

from __future__ import annotations

import argparse
import csv
import sys
from pathlib import Path

DEFAULT_SETTINGS = {
    "paper": ["model.loss=softmax_ce", "model.joint_score=sum"],
    "authors": ["model.loss=bce", "model.joint_score=mean_sigmoid", "model.club_pairs=random",
                "model.club_logvar_term=false", "model.candidate_gate_noise=true"],
}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", required=True, type=Path, help="run config shared by every setting")
    parser.add_argument("--out", required=True, type=Path, help="folder of the runs and the plot")
    parser.add_argument("--epochs", type=int, required=True, help="epochs of every run")
    parser.add_argument("--setting", nargs="+", action="append", metavar=("NAME", "KEY=VALUE"),
                        help="a setting: its name, then its --set overrides (repeatable; default: paper, authors)")
    parser.add_argument("--tolerance", type=float, default=0.003,
                        help="MRR a shorter budget may lose against the whole run (default 0.003)")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    args = parser.parse_args(argv)
    if args.epochs < 1:
        parser.error("--epochs must be at least 1")
    if args.setting:
        args.settings = {words[0]: list(words[1:]) for words in args.setting}
    else:
        args.settings = DEFAULT_SETTINGS
    return args


def read_curve(run_dir: Path) -> list[tuple[int, float, float]]:
    """``(epoch, cumulative training minutes, validation MRR)`` per epoch of a run's ``history.csv``."""
    with open(run_dir / "history.csv", newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    curve, minutes = [], 0.0
    for row in rows:
        minutes += float(row["seconds"]) / 60
        curve.append((int(row["epoch"]), minutes, float(row["valid_mrr"])))
    return curve


def summarize(curve: list[tuple[int, float, float]], tolerance: float) -> dict[str, float]:
    """Best MRR and its epoch, first epoch/minutes at 90 % of it, fewest epochs within ``tolerance``."""
    best_epoch, _, best = max(curve, key=lambda point: point[2])
    at_90 = next(point for point in curve if point[2] >= 0.9 * best)
    running, budget = float("-inf"), None
    for epoch, _, mrr in curve:
        running = max(running, mrr)
        if budget is None and running >= best - tolerance:
            budget = epoch
    return {"best_mrr": best, "best_epoch": best_epoch, "epoch_90": at_90[0], "minutes_90": at_90[1],
            "budget_epochs": budget, "epochs": curve[-1][0], "minutes": curve[-1][1]}


def plot(curves: dict[str, list[tuple[int, float, float]]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, (by_time, by_epoch) = plt.subplots(1, 2, figsize=(10, 4), sharey=True)
    for name, curve in curves.items():
        epochs, minutes, mrr = zip(*curve)
        by_time.plot(minutes, mrr, marker=".", label=name)
        by_epoch.plot(epochs, mrr, marker=".", label=name)
    by_time.set_xlabel("training minutes")
    by_epoch.set_xlabel("epoch")
    by_time.set_ylabel("validation MRR (filtered, realistic)")
    by_epoch.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    from momok.config import load_config
    from momok.errors import MomokError
    from momok.training import train

    base = [f"training.epochs={args.epochs}", "evaluation.every=1", "evaluation.patience=null",
            "evaluation.metric=mrr"]
    curves = {}
    try:
        for name, overrides in args.settings.items():
            config = load_config(args.config, base + overrides)
            run_dir = args.out / name
            print(f"[{name}] {' '.join(overrides) or '(config as is)'} -> {run_dir}", file=sys.stderr)
            train(config, run_dir, resume=True, progress=not args.quiet)
            curves[name] = read_curve(run_dir)
    except MomokError as err:
        print(f"time_to_accuracy: error: {err}", file=sys.stderr)
        return 2
    print(f"{'setting':<12} {'best MRR':>9} {'at epoch':>9} {'90% epoch':>10} {'90% min':>8} "
          f"{'budget':>7} {'epochs':>7} {'minutes':>8}")
    for name, curve in curves.items():
        s = summarize(curve, args.tolerance)
        print(f"{name:<12} {s['best_mrr']:>9.4f} {s['best_epoch']:>9} {s['epoch_90']:>10} {s['minutes_90']:>8.1f} "
              f"{s['budget_epochs']:>7} {s['epochs']:>7} {s['minutes']:>8.1f}")
    print(f"budget = fewest epochs whose best validation MRR is within {args.tolerance} of the run's best")
    plot(curves, args.out / "time_to_accuracy.png")
    print(f"plot: {args.out / 'time_to_accuracy.png'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
