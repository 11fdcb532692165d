"""benchmarks/paper_budget.py: cost classes, the per-run cost bounds, one measuring process per class
(a class whose process dies is "not measured", the others are measured) and --resume."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from benchmarks import paper_budget
from benchmarks.paper_budget import cost_class, main, run_cost
from momok.config import config_from_dict
from momok.errors import InputError


def _run(variant="full", seed=0, dataset="MKG-W", **model):
    config = config_from_dict({
        "seed": seed, "dataset": {"path": f"data/raw/{dataset}"},
        "features": {"image": "i.safetensors", "text": "t.safetensors"},
        "model": {"name": "momok", **model},
        "training": {"epochs": 95, "batch_size": 1024}, "evaluation": {"every": 10, "patience": 5},
    })
    return {"dataset": dataset, "model": "momok", "variant": variant, "seed": seed, "config": config}


def test_cost_classes_ignore_seeds_and_the_exid_weight_value():
    full = cost_class(_run())
    assert cost_class(_run(seed=2)) == full
    assert cost_class(_run("lambda0.01", exid_weight=0.01)) == full
    assert cost_class(_run("wo_exid", exid_weight=0.0)) != full  # no estimators: cheaper
    assert cost_class(_run("K2", num_experts=2)) != full
    assert cost_class(_run(dataset="DB15K")) != full


def test_run_cost_bounds():
    measured = dict(step_s=2.0, step_flops=10.0, valid_first_s=5.0, valid_batch_s=1.0, final_batch_s=1.5,
                    valid_batch_flops=3.0, tables_flops=7.0, steps_per_epoch=4, valid_batches=3, test_batches=2)
    cost = run_cost(_run()["config"], measured)
    validation = 5.0 + 2 * 1.0
    final = 5.0 + 4 * 1.5
    # upper: all 95 epochs, validations at 10, 20, ..., 90 and after the last epoch
    assert cost["upper"]["validations"] == 10
    assert cost["upper"]["seconds"] == pytest.approx(95 * 4 * 2.0 + 10 * validation + final)
    assert cost["upper"]["flops"] == pytest.approx(95 * 4 * 10.0 + 10 * (7.0 + 3 * 3.0) + 7.0 + 5 * 3.0)
    # lower: best at the first validation, then patience (5) worse ones: 60 epochs, 6 validations
    assert (cost["lower"]["epochs"], cost["lower"]["validations"]) == (60, 6)
    assert cost["lower"]["seconds"] == pytest.approx(60 * 4 * 2.0 + 6 * validation + final)


# ------------------------------------------------------------------------------ one process per class
#: A measurement as a child returns it (the figures are made up: the tests below check the bookkeeping)
FAKE = dict(step_s=2.0, step_flops=4e9, valid_first_s=3.0, valid_batch_s=1.0, final_batch_s=1.0,
            valid_batch_flops=1e9, tables_flops=0.0, steps_per_epoch=2, valid_batches=1, test_batches=1,
            synthetic=False, peak_mib=321.0)


def _configs(root: Path, models: list[str]) -> Path:
    """One run config (seed 0, variant full) per model on the TINY dataset, in the results/configs layout."""
    for model in models:
        path = root / "configs" / "TINY" / model / "full" / "seed0.yaml"
        path.parent.mkdir(parents=True)
        path.write_text(f"seed: 0\ndataset: {{path: data/raw/TINY}}\nfeatures: {{allow_missing: true}}\n"
                        f"model: {{name: {model}, dim: 8}}\ntraining: {{epochs: 4, batch_size: 4}}\n"
                        f"evaluation: {{batch_size: 4, every: 2, patience: 1}}\n")
    return root / "configs"


def _rows(out: str) -> dict[str, list[str]]:
    """The printed class rows by model."""
    return {line.split(" | ")[1]: line.split(" | ") for line in out.splitlines() if line.startswith("TINY | ")}


def _python(code: str) -> list[str]:
    """A child command running ``code`` in a fresh interpreter."""
    return [sys.executable, "-c", code]


def test_a_class_whose_process_dies_is_not_measured_and_the_others_are(tmp_path, monkeypatch, capsys):
    configs = _configs(tmp_path, ["complex", "distmult", "rotate", "transe"])
    commands = {  # real processes: distmult killed as by the OOM killer, complex exits 3, rotate raises
        "distmult": _python("import os, signal; os.kill(os.getpid(), signal.SIGKILL)"),
        "complex": _python("import sys; sys.exit(3)"),
        "rotate": _python("print('RESULT " + json.dumps({"error": "OutOfMemoryError: no room"}) + "'); exit(1)"),
        "transe": _python("print('noise'); print('RESULT " + json.dumps(FAKE) + "')"),
    }
    monkeypatch.setattr(paper_budget, "child_command", lambda run, args: commands[run["model"]])
    out_json = tmp_path / "budget.json"
    assert main(["--configs", str(configs), "--json", str(out_json)]) == 0
    out = capsys.readouterr().out
    rows = _rows(out)
    assert rows["distmult"][2:] == ["1", "not measured: killed by signal 9 (out of memory?)"]
    assert rows["complex"][2:] == ["1", "not measured: exited with status 3 without figures"]
    assert rows["rotate"][2:] == ["1", "not measured: OutOfMemoryError: no room"]
    # transe: 2 steps/epoch, 2 s a step, validation 3 s (one batch), upper bound 4 epochs x 2 steps x 2 s
    # + 2 validations x 3 s + final (3 s + 1 batch x 1 s) = 26 s; 4 epochs x 2 steps x 4 GFLOP + 2
    # validations x 1 GFLOP + the final 2 batches x 1 GFLOP = 36 GFLOP (0.00 GPU-hours)
    assert rows["transe"] == ["TINY", "transe", "1", "full", "2", "2.00", "4.00", "3.0", "0.0", "0.00",
                              "0.00", "321"]
    assert ("# measured 1 of 4 cost classes (1 of 4 trainings); not measured, left out of the totals: "
            "3 classes (3 trainings)") in out
    assert "TINY | baselines | 4 | 4 | 3 | 0.0 | 0.00 | 0.00 | 0.00" in out  # the subtotals
    saved = {row["model"]: row for row in json.loads(out_json.read_text())}
    assert saved["distmult"]["not_measured"] == "killed by signal 9 (out of memory?)"
    assert saved["transe"]["measured"] == FAKE
    assert saved["transe"]["upper_cpu_s"] == pytest.approx(26.0) and saved["transe"]["upper_flops"] == 36e9


def test_class_timeout(tmp_path, monkeypatch, capsys):
    configs = _configs(tmp_path, ["transe"])
    monkeypatch.setattr(paper_budget, "child_command", lambda run, args: _python("import time; time.sleep(60)"))
    assert main(["--configs", str(configs), "--class-timeout", "0.5"]) == 0
    assert _rows(capsys.readouterr().out)["transe"][3:] == ["not measured: stopped after --class-timeout 0.5 s"]


def test_the_child_measures_its_class(tiny_dataset_dir, tmp_path, monkeypatch, capsys, one_torch_thread):
    """The child's command line, run in this process (a fresh interpreter would import torch again)."""
    monkeypatch.setattr(paper_budget, "reuse_freed_memory", lambda: None)  # leave this process's malloc be
    run = paper_budget.run_of(_configs(tmp_path, ["transe"]) / "TINY/transe/full/seed0.yaml")
    args = paper_budget.parse_args(["--data-root", str(tmp_path), "--threads", "1"])
    command = paper_budget.child_command(run, args)
    assert command[:2] == [sys.executable, str(Path(paper_budget.__file__).resolve())]
    assert main(command[2:]) == 0
    result = json.loads(capsys.readouterr().out.removeprefix(paper_budget.RESULT_PREFIX))
    assert (result["steps_per_epoch"], result["valid_batches"], result["test_batches"]) == (3, 2, 2)
    assert result["step_s"] > 0 and result["peak_mib"] > 50 and result["synthetic"] is False
    # a class that raises: one RESULT line with the error, exit status 1
    assert main(command[2:] + ["--data-root", str(tmp_path / "nowhere")]) == 1
    result = json.loads(capsys.readouterr().out.removeprefix(paper_budget.RESULT_PREFIX))
    assert result["error"].startswith("InputError: ") and "TINY: no such dataset folder" in result["error"]


def test_resume_measures_only_the_classes_missing_from_the_json(tmp_path, monkeypatch, capsys):
    configs = _configs(tmp_path, ["complex", "distmult", "transe"])
    out_json = tmp_path / "budget.json"
    launched, on_disk = [], []

    def launch(command, timeout):  # counts the launches, and the rows in the JSON at each
        on_disk.append(len(json.loads(out_json.read_text())) if out_json.exists() else None)
        launched.append(Path(command[command.index("--child") + 1]).parts[-3])
        return {"not_measured": "killed by signal 9 (out of memory?)"} if launched[-1] == "distmult" else FAKE

    monkeypatch.setattr(paper_budget, "launch", launch)
    base = ["--configs", str(configs), "--json", str(out_json)]
    assert main(base + ["--models", "distmult", "transe"]) == 0
    assert launched == ["distmult", "transe"] and on_disk == [None, 1]  # written after every class
    first = _rows(capsys.readouterr().out)
    assert main(base + ["--resume"]) == 0
    assert launched == ["distmult", "transe", "complex", "distmult"]  # transe reused, distmult tried again
    assert on_disk[2:] == [2, 1]  # the earlier file, then rewritten after complex
    out = capsys.readouterr().out
    second = _rows(out)
    assert second["transe"] == first["transe"] and second["transe"][-1] == "321"
    assert second["complex"][2:] == first["transe"][2:]  # the same figures
    assert "# resuming from " in out and ": 1 of these classes measured there" in out
    # totals: the two measured classes; per run 4 epochs x 2 steps x 2 s + 2 validations x 3 s + final 4 s
    assert "total (upper bound): 0.0 CPU-days" in out and "# measured 2 of 3 cost classes (2 of 3 trainings)" in out
    saved = json.loads(out_json.read_text())
    assert sum(row["upper_cpu_s"] for row in saved if "measured" in row) == pytest.approx(2 * (16 + 6 + 4))
    assert [row["model"] for row in saved] == ["complex", "distmult", "transe"]


def test_resume_needs_a_paper_budget_json(tmp_path):
    configs = _configs(tmp_path, ["transe"])
    bad = tmp_path / "bad.json"
    bad.write_text('{"not": "rows"}')
    with pytest.raises(InputError, match="not a paper_budget --json file"):
        main(["--configs", str(configs), "--json", str(bad), "--resume"])
    with pytest.raises(SystemExit):
        main(["--configs", str(configs), "--resume"])  # no --json: argparse's error


def test_matmul_flops_count_products_where_module_hooks_fail():
    """2·m·n·k per product, also under no_grad for a module that returns its own parameter (a leaf that
    requires grad: FlopCounterMode's module hooks raise there)."""
    import torch

    class Table(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.weight = torch.nn.Parameter(torch.ones(5, 3))

        def forward(self):
            return self.weight

    table = Table()
    with torch.no_grad(), paper_budget.MatmulFlops() as counter:
        table() @ torch.ones(3, 7)
        torch.ones(2, 4, 5).bmm(torch.ones(2, 5, 6))
    assert counter.total == 2 * 5 * 3 * 7 + 2 * (2 * 4 * 5 * 6)


def test_drop_caches_clears_every_parameter_cache():
    import torch

    from momok.models.cache import ParameterCache

    model = torch.nn.Sequential(torch.nn.Linear(2, 2)).eval()
    model[0].cache = ParameterCache()
    with torch.no_grad():
        model[0].cache.get(model[0], "rows", lambda: torch.ones(1))
        calls = []
        paper_budget.drop_caches(model)
        model[0].cache.get(model[0], "rows", lambda: calls.append(1) or torch.ones(1))
    assert calls == [1]
