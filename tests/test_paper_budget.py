"""benchmarks/paper_budget.py's bookkeeping (no timing): cost classes and the per-run cost bounds."""

from __future__ import annotations

import pytest

from benchmarks.paper_budget import cost_class, run_cost
from momok.config import config_from_dict


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
