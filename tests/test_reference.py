"""Expected results (momok.report.reference): a finished run frozen into a folder, and the committed
CPU reference (results/reference/cpu) matching what config/cpu.yaml plans."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from momok.report import reference

ROOT = Path(__file__).resolve().parents[1]
CPU_REFERENCE = ROOT / "results" / "reference" / "cpu"


def write_run(results: Path, dataset, model, variant, seed, *, mrr, seconds, epochs=3):
    run = results / "runs" / dataset / model / variant / f"seed{seed}"
    run.mkdir(parents=True)
    metrics = {"best_epoch": epochs, "epochs_run": epochs,
               "selection": {"split": "valid", "score_key": "joint", "metric": "mrr", "value": mrr + 0.01},
               "test": {"joint": {"both": {"realistic": {"mrr": mrr, "hits@1": mrr / 2, "hits@10": 2 * mrr}}}}}
    (run / "metrics.json").write_text(json.dumps(metrics), encoding="utf-8")
    bench = results / "benchmarks" / "train" / dataset / model / variant / f"seed{seed}.tsv"
    bench.parent.mkdir(parents=True, exist_ok=True)
    bench.write_text(f"s\th:m:s\tmax_rss\n{seconds}\t0:00:{seconds}\t812.5\n", encoding="utf-8")


def write_csv(path: Path, rows: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def row(dataset, model, variant, mean, std, paper, score_key="joint"):
    return {"dataset": dataset, "model": model, "variant": variant, "score_key": score_key, "metric": "mrr",
            "ours_mean": mean, "ours_std": std, "paper": paper}


def test_collect_freezes_runs_benchmarks_tables_and_provenance(tmp_path):
    results, out = tmp_path / "results", tmp_path / "reference"
    write_run(results, "MKG-Y", "momok", "full", 0, mrr=0.25, seconds=30)
    write_run(results, "MKG-Y", "momok", "full", 1, mrr=0.27, seconds=32)
    write_run(results, "MKG-Y", "momok", "wo_exid", 0, mrr=0.24, seconds=31)
    write_csv(results / "tables" / "table2.csv", [row("MKG-Y", "momok", "full", 26.0, 1.41, 37.91),
                                                  row("MKG-Y", "transe", "full", 20.5, "", 30.73)])
    write_csv(results / "tables" / "table3.csv", [row("MKG-Y", "momok", "full", 26.0, 1.41, 35.89),
                                                  row("MKG-Y", "momok", "wo_exid", 24.0, "", 34.0),
                                                  row("MKG-Y", "momok", "wo_exid", 11.0, "", "", score_key="s")])
    (results / "figures").mkdir()
    (results / "figures" / "figure3.png").write_bytes(b"png")
    config = tmp_path / "cpu.yaml"
    config.write_text("seeds: [0, 1]\n", encoding="utf-8")

    reference.collect(results, config, out, "2026-12-03T13:00:00Z", "2026-12-03T14:00:00Z")

    with open(out / "runs.tsv", newline="", encoding="utf-8") as handle:
        runs = list(csv.DictReader(handle, delimiter="\t"))
    assert [(r["variant"], r["seed"], r["test_mrr"], r["seconds"]) for r in runs] == [
        ("full", "0", "0.25", "30"), ("full", "1", "0.27", "32"), ("wo_exid", "0", "0.24", "31")]
    assert runs[0]["valid_mrr"] == "0.26" and runs[0]["max_rss_mb"] == "812.5"
    assert (out / "benchmarks" / "train" / "MKG-Y" / "momok" / "wo_exid" / "seed0.tsv").exists()
    assert (out / "figures" / "figure3.png").read_bytes() == b"png"
    summary = (out / "summary.md").read_text(encoding="utf-8")
    assert "| momok | 26.00 ± 1.41 | 37.91 |" in summary
    assert "| transe | 20.50 | 30.73 |" in summary
    assert "| MKG-Y | wo_exid | 24.00 | 26.00 | -2.00 | 34.0 | 35.89 |" in summary  # joint score only
    provenance = json.loads((out / "provenance.json").read_text(encoding="utf-8"))
    assert provenance["trainings"] == 3 and provenance["training_seconds"] == 93
    assert len(provenance["config_sha256"]) == 64 and provenance["machine"]["cores"] >= 1


def test_collect_without_runs_is_a_one_line_error(tmp_path, capsys):
    config = tmp_path / "cpu.yaml"
    config.write_text("seeds: [0]\n", encoding="utf-8")
    assert reference.main(["--config", str(config), "--out", str(tmp_path / "out"),
                           "--results", str(tmp_path / "results")]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "no finished run" in err


def test_a_bad_benchmark_file_names_the_file(tmp_path):
    results = tmp_path / "results"
    write_run(results, "MKG-Y", "momok", "full", 0, mrr=0.25, seconds=30)
    bench = results / "benchmarks" / "train" / "MKG-Y" / "momok" / "full" / "seed0.tsv"
    bench.write_text("s\tmax_rss\n", encoding="utf-8")
    with pytest.raises(reference.InputError, match="seed0.tsv: expected one benchmark line, found 0"):
        reference.run_rows(results)
