#!/usr/bin/env python
"""Draw one of the paper's figures (3, 4 or 5) from run folders.

    python workflow/scripts/make_figure.py --figure figure3 --runs RUN_DIR [RUN_DIR ...] \\
        --out-prefix results/figures/figure3

figure3: ``noise<ratio>`` runs (and each model's ``full`` run as ratio 0); figure4: MoMoK ``K<k>`` and
``lambda<value>`` runs; figure5: ``weights.csv`` of MoMoK ``full`` runs. Writes ``<prefix>.png`` and
``<prefix>.pdf``; a missing run or unreadable file stops it with a one-line error (exit status 2).
"""

from __future__ import annotations

import argparse
import sys

from momok.errors import MomokError
from momok.report import figures
from momok.report.runs import load_runs


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--figure", required=True, choices=sorted(figures.FIGURES), help="which figure")
    parser.add_argument("--runs", nargs="+", required=True, metavar="RUN_DIR",
                        help="run folders (or their metrics.json)")
    parser.add_argument("--out-prefix", required=True, help="output path without extension")
    parser.add_argument("--split", default="test", choices=["test", "valid"], help="evaluation split to plot")
    parser.add_argument("--max-relations", type=int, default=12,
                        help="figure5: show the relations with the most queries, at most this many")
    parser.add_argument("--direction", default="both", choices=["both", "tail", "head"],
                        help="figure5: query direction of the weights (both = count-weighted mean)")
    parser.add_argument("--dpi", type=int, default=150, help="PNG resolution")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        runs = load_runs(args.runs)
        if args.figure == "figure5":
            fig = figures.figure5(runs, max_relations=args.max_relations, direction=args.direction)
        else:
            fig = figures.FIGURES[args.figure](runs, split=args.split)
        for path in figures.save_figure(fig, args.out_prefix, dpi=args.dpi):
            print(path)
    except MomokError as err:
        print(f"make_figure {args.figure}: error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
