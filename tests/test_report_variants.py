"""Variant names: what the workflow builds (momok/report/variants.py, used by common.smk) the report
reads back."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from momok.report.variants import FULL, noise_ratio, noise_variant, sweep_point, sweep_variant, variant_value

CONFIG = Path(__file__).resolve().parents[1] / "config" / "config.yaml"


def test_the_configured_sweeps_read_back():
    config = yaml.safe_load(CONFIG.read_text())
    for grid, spec in config["figure4"]["grids"].items():
        for value in spec["values"]:
            variant = sweep_variant(grid, value)
            assert variant_value(variant, grid) == pytest.approx(float(value))
            assert noise_ratio(variant) is None
    for ratio in config["figure3"]["ratios"]:
        variant = noise_variant(ratio)
        if float(ratio) == 0:
            assert variant == FULL
        else:
            assert variant_value(variant, "noise") == pytest.approx(float(ratio))
            assert noise_ratio(variant) == str(ratio)


@pytest.mark.parametrize("variant, grid", [("full", "K"), ("wo_exid", "K"), ("K3", "lambda"), ("Kx3", "K"),
                                           ("K1.2.3", "K"), ("noise0.2", "noi")])
def test_other_names_are_not_points_of_the_grid(variant, grid):
    assert variant_value(variant, grid) is None


def test_sweep_point_splits_grid_and_value_text():
    assert sweep_point("lambda1e-05") == ("lambda", "1e-05")
    assert sweep_point("wo_exid") is None
