"""``momok train`` with bad run configs and ``--set`` values (issue 11): each is refused before any
work starts, with one line naming the file and line (or the override) and the key, and no traceback."""

from __future__ import annotations

from pathlib import Path

import pytest

from cli_checks import assert_rejected

CONFIG = """\
seed: 0
dataset: {path: data/kg}
features: {image: null, text: null}
model:
  name: momok
  modalities: [structure]
training:
  epochs: 1
"""


@pytest.mark.slow  # one momok process per case
@pytest.mark.parametrize("extra, overrides, names", [
    ("  weight_decay: .nan\n", [], ["run.yaml:9:", "training.weight_decay", "finite"]),
    ("", ["model.exid_weight=.nan"], ["--set model.exid_weight=.nan", "model.exid_weight", "finite"]),
    ("  lr_schedule: cosine\n  lr_min: -5\n", [], ["run.yaml:10:", "training.lr_min", "non-negative"]),
    ("", ["seed=-1"], ["--set seed=-1", "seed"]),
    ("", ["model.dim=0x10"], ["--set model.dim=0x10", "model.dim", "'0x10'"]),
    ("training:\n  epochs: 2\n", [], ["run.yaml:9:", "duplicate key 'training'"]),
])
def test_train_refuses_bad_values(tmp_path: Path, extra, overrides, names):
    config = tmp_path / "run.yaml"
    config.write_text(CONFIG + extra, encoding="utf-8")
    args = ["train", "--config", config, "--out", tmp_path / "out", "--quiet"]
    for override in overrides:
        args += ["--set", override]
    assert_rejected(args, *names, cwd=tmp_path)
    assert not (tmp_path / "out").exists()
