"""Expected results: freeze a finished workflow run into a folder to commit and compare against.

    python -m momok.report.reference --config config/cpu.yaml --out results/reference/cpu \
        [--results results] [--started ISO-TIME --finished ISO-TIME]

run from the working directory of the workflow run (the folder with ``results/``). Like PyKEEN's
expected results, the folder holds what a user's rerun is compared against:

* ``tables/`` and ``figures/``: the workflow's tables (csv, md) and figures (png);
* ``benchmarks/``: every rule's Snakemake ``benchmark:`` file (wall time, memory, CPU time), as made;
* ``runs.tsv``: one line per training run: its epochs, best epoch, validation selection value, test
  MRR/Hits of the ranking score, wall seconds and peak memory (from its benchmark file);
* ``summary.md``: Table 2's MRR (ours mean ± sample std over seeds beside the paper's) and every Table 3
  ablation's change of the mean against the full model, with its sign;
* ``provenance.json``: the commit (and whether the tree had local changes), the config file and its
  sha256, the machine (CPU, cores, memory), library versions and the run's start and end times.

Nothing is computed anew: every figure is read from the run's files.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import shutil
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

from momok.atomic import write_text_atomic
from momok.checksums import file_sha256
from momok.errors import InputError

RUN_COLUMNS = ["dataset", "model", "variant", "seed", "epochs_run", "best_epoch", "score_key", "valid_mrr",
               "test_mrr", "test_hits@1", "test_hits@10", "seconds", "max_rss_mb"]


def read_benchmark(path: Path) -> dict[str, float]:
    """The numbers of the one data line of a Snakemake benchmark file (tab-separated, with a header;
    ``h:m:s`` and unmeasured ``NA`` fields are left out)."""
    with open(path, newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle, delimiter="\t"))
    if len(rows) != 1:
        raise InputError(path, f"expected one benchmark line, found {len(rows)}")
    numbers = {}
    for key, value in rows[0].items():
        try:
            numbers[key] = float(value)
        except (TypeError, ValueError):
            continue
    return numbers


def run_rows(results: Path) -> list[dict]:
    """One row per ``results/runs/<dataset>/<model>/<variant>/seed<n>/metrics.json``."""
    rows = []
    for metrics_path in sorted(results.glob("runs/*/*/*/seed*/metrics.json")):
        dataset, model, variant, seed_dir = metrics_path.parts[-5:-1]
        metrics = json.loads(metrics_path.read_text(encoding="utf-8"))
        key = metrics["selection"]["score_key"]
        test = metrics["test"][key]["both"]["realistic"]
        bench_path = results / "benchmarks" / "train" / dataset / model / variant / f"{seed_dir}.tsv"
        bench = read_benchmark(bench_path) if bench_path.exists() else {}
        rows.append({
            "dataset": dataset, "model": model, "variant": variant, "seed": int(seed_dir[len("seed"):]),
            "epochs_run": metrics["epochs_run"], "best_epoch": metrics["best_epoch"], "score_key": key,
            "valid_mrr": metrics["selection"]["value"], "test_mrr": test["mrr"],
            "test_hits@1": test["hits@1"], "test_hits@10": test["hits@10"],
            "seconds": bench.get("s"), "max_rss_mb": bench.get("max_rss"),
        })
    if not rows:
        raise InputError(results / "runs", "no finished run (metrics.json) to collect")
    return rows


def _fmt(value) -> str:
    if value is None:
        return ""
    return f"{value:.6g}" if isinstance(value, float) else str(value)


def write_runs(rows: list[dict], path: Path) -> None:
    lines = ["\t".join(RUN_COLUMNS)]
    lines += ["\t".join(_fmt(row[column]) for column in RUN_COLUMNS) for row in rows]
    write_text_atomic(path, "\n".join(lines) + "\n")


def _mrr_records(path: Path) -> list[dict]:
    """The rows of a table's CSV that hold one of our MRR values."""
    with open(path, newline="", encoding="utf-8") as handle:
        return [r for r in csv.DictReader(handle) if r["metric"] == "mrr" and r["ours_mean"]]


def summary_markdown(tables: Path) -> str:
    """Table 2's MRR beside the paper's, and Table 3's ablation changes, from the tables' CSV files."""
    out = []
    table2 = tables / "table2.csv"
    if table2.exists():
        records = _mrr_records(table2)
        datasets = list(dict.fromkeys(r["dataset"] for r in records))
        out += ["## Table 2: test MRR (× 100), ours (mean ± std over seeds) and the paper's", "",
                "| model | " + " | ".join(f"{d} ours | {d} paper" for d in datasets) + " |",
                "|---|" + "---|---|" * len(datasets)]
        cells = {(r["model"], r["dataset"]): r for r in records}
        for model in dict.fromkeys(r["model"] for r in records):
            line = [model]
            for dataset in datasets:
                r = cells.get((model, dataset))
                std = f" ± {float(r['ours_std']):.2f}" if r and r["ours_std"] else ""
                line += [f"{float(r['ours_mean']):.2f}{std}" if r else "", r["paper"] if r else ""]
            out.append("| " + " | ".join(line) + " |")
        out.append("")
    table3 = tables / "table3.csv"
    if table3.exists():
        records = _mrr_records(table3)
        out += ["## Table 3: each ablation's test MRR (× 100) against the full model's", "",
                "| dataset | variant | ours | full | change | paper | paper full |", "|---|---|---|---|---|---|---|"]
        by_dataset = defaultdict(dict)
        for r in records:
            if r["score_key"] == "joint":
                by_dataset[r["dataset"]][r["variant"]] = r
        for dataset, variants in by_dataset.items():
            full = variants.get("full")
            for variant, r in variants.items():
                if variant == "full" or full is None:
                    continue
                change = float(r["ours_mean"]) - float(full["ours_mean"])
                out.append(f"| {dataset} | {variant} | {float(r['ours_mean']):.2f} | {float(full['ours_mean']):.2f} | "
                           f"{change:+.2f} | {r['paper']} | {full['paper']} |")
        out.append("")
    return "\n".join(out)


def _git(*args: str) -> str:
    try:
        return subprocess.run(["git", *args], capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return ""


def machine() -> dict:
    info = {"platform": platform.platform(), "python": platform.python_version(), "cores": os.cpu_count()}
    try:
        cpuinfo = Path("/proc/cpuinfo").read_text(encoding="utf-8")
        info["cpu"] = next(line.split(":", 1)[1].strip() for line in cpuinfo.splitlines()
                           if line.startswith("model name"))
        meminfo = Path("/proc/meminfo").read_text(encoding="utf-8").split()
        info["memory_gib"] = round(int(meminfo[meminfo.index("MemTotal:") + 1]) / 2**20, 1)
    except (OSError, StopIteration, ValueError):
        pass
    from importlib.metadata import PackageNotFoundError, version

    for package in ("torch", "snakemake", "transformers", "pykeen"):
        try:
            info[package] = version(package)
        except PackageNotFoundError:
            pass
    return info


def collect(results: Path, config: Path, out: Path, started: str | None, finished: str | None,
            command: str | None = None) -> None:
    if not config.is_file():
        raise InputError(config, "no such config file")
    rows = run_rows(results)
    for kind, patterns in (("tables", ("*.csv", "*.md")), ("figures", ("*.png",))):
        for pattern in patterns:
            for source in sorted((results / kind).glob(pattern)):
                (out / kind).mkdir(parents=True, exist_ok=True)
                shutil.copyfile(source, out / kind / source.name)
    for source in sorted((results / "benchmarks").rglob("*.tsv")):
        target = out / "benchmarks" / source.relative_to(results / "benchmarks")
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, target)
    write_runs(rows, out / "runs.tsv")
    write_text_atomic(out / "summary.md", summary_markdown(out / "tables"))
    provenance = {
        "commit": _git("rev-parse", "HEAD"),
        "local_changes": bool(_git("status", "--porcelain", "--untracked-files=no")),
        "config": str(config), "config_sha256": file_sha256(config),
        "command": command or f"snakemake --cores {os.cpu_count()} all --configfile {config}",
        "started": started, "finished": finished,
        "trainings": len(rows), "training_seconds": sum(r["seconds"] or 0.0 for r in rows),
        "machine": machine(),
    }
    write_text_atomic(out / "provenance.json", json.dumps(provenance, indent=2) + "\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", required=True, type=Path, help="the config file the run used")
    parser.add_argument("--out", required=True, type=Path, help="folder of the expected results")
    parser.add_argument("--results", default=Path("results"), type=Path, help="the run's results folder")
    parser.add_argument("--started", help="when the run started (ISO time)")
    parser.add_argument("--finished", help="when the run finished (ISO time)")
    parser.add_argument("--command", help="the command line of the run (default: snakemake --cores N all --configfile CONFIG)")
    args = parser.parse_args(argv)
    try:
        collect(args.results, args.config, args.out, args.started, args.finished, args.command)
    except InputError as err:
        print(f"reference: error: {err}", file=sys.stderr)
        return 2
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
