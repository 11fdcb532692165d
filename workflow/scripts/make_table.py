#!/usr/bin/env python
"""Write one of the paper's tables (2, 3 or 4) from run folders, ours beside the paper's numbers.

    python workflow/scripts/make_table.py --table table2 --runs RUN_DIR [RUN_DIR ...] \\
        --out-prefix results/tables/table2

RUN_DIR is ``.../runs/<dataset>/<model>/<variant>/seed<k>`` or its ``metrics.json``. Writes
``<prefix>.csv`` (tidy, one row per cell), ``<prefix>.md`` and ``<prefix>.tex`` (booktabs). A missing
run or an unreadable metrics.json stops it with a one-line error naming the file (exit status 2).
"""

from __future__ import annotations

import argparse
import sys

from momok.errors import MomokError
from momok.report import tables
from momok.report.runs import load_runs


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--table", required=True, choices=sorted(tables.TABLES), help="which table")
    parser.add_argument("--runs", nargs="+", required=True, metavar="RUN_DIR",
                        help="run folders (or their metrics.json); every seed of every model to show")
    parser.add_argument("--out-prefix", required=True, help="output path without extension")
    parser.add_argument("--paper", default=None, help="paper numbers YAML (default: momok/report/paper.yaml)")
    parser.add_argument("--split", default="test", choices=["test", "valid"], help="evaluation split to report")
    parser.add_argument("--min-count", type=int, default=10,
                        help="table4: skip relations with fewer test queries (head + tail) than this")
    parser.add_argument("--top", type=int, default=8, help="table4: relations listed per modality score")
    parser.add_argument("--criterion", default="margin", choices=tables.CRITERIA,
                        help="table4: margin = relations where the score beats every other score, by margin; "
                             "mrr = the score's own best relations by MRR")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        runs = load_runs(args.runs)
        paper = tables.load_paper(args.paper)
        options = {"paper": paper, "split": args.split}
        if args.table == "table4":
            options.update(min_count=args.min_count, top=args.top, criterion=args.criterion)
        table = tables.TABLES[args.table](runs, **options)
        for path in tables.write_table(table, args.out_prefix):
            print(path)
    except MomokError as err:
        print(f"make_table {args.table}: error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
