"""The run config: defaults, YAML loading, --set overrides and the errors of momok/config.py."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import pytest
import yaml

from momok.config import (EvaluationConfig, RunConfig, TrainingConfig, config_from_dict, dump_config,
                          load_config, parse_override)
from momok.errors import ConfigError
from momok.models.registry import ModelEntry

REPO = Path(__file__).resolve().parents[1]


@dataclass
class ProbeOptions:
    """Options of a registered test model, with every kind of annotation the loader handles."""

    dim: int = 4
    rate: float = 0.5
    modalities: list[str] = field(default_factory=lambda: ["structure", "image"])
    shape: tuple[int, int] = (2, 3)
    mode: Literal["a", "b"] = "a"
    limit: int | None = None

    def __post_init__(self):
        if self.dim % 2:
            raise ValueError(f"dim must be even, got {self.dim}")
        if self.rate >= 1:
            raise ConfigError(f"model.rate: must be below 1 (got {self.rate})")


@pytest.fixture(autouse=True)
def probe_model(monkeypatch):
    from momok.models import registry

    monkeypatch.setitem(registry._REGISTRY, "probe", ModelEntry(ProbeOptions, lambda options, context: None))


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "run.yaml"
    path.write_text(text)
    return path


BASE = """\
seed: 7
dataset:
  path: data/kg
features:
  image: feats/image.safetensors
model:
  name: probe
  dim: 6
training:
  epochs: 3
"""


def test_defaults_are_filled_in_and_values_converted(tmp_path):
    config = load_config(write(tmp_path, BASE + "  lr: 1e-2\n  grad_clip: 1\n"))
    assert config.seed == 7 and config.dataset.path == "data/kg" and config.dataset.duplicates == "keep"
    assert config.features.image == "feats/image.safetensors" and config.features.text is None
    assert config.model.name == "probe"
    assert config.model.options == ProbeOptions(dim=6)
    assert config.training == TrainingConfig(epochs=3, lr=0.01, grad_clip=1.0)
    assert isinstance(config.training.lr, float) and isinstance(config.training.grad_clip, float)
    assert config.training.batch_size == 1024 and config.evaluation == EvaluationConfig()
    assert config.file_modalities() == ["image"]


def test_to_dict_round_trips_through_yaml(tmp_path):
    config = load_config(write(tmp_path, BASE), ["model.shape=[4, 5]"])
    data = config.to_dict()
    assert data["model"] == {"name": "probe", "dim": 6, "rate": 0.5, "modalities": ["structure", "image"],
                             "shape": [4, 5], "mode": "a", "limit": None}
    assert list(data) == ["seed", "dataset", "features", "model", "training", "evaluation", "output"]
    text = dump_config(config, {"provenance": {"git_commit": "abc"}})
    again = load_config(write(tmp_path, text))  # provenance is ignored on load
    assert again == config and again.model.options.shape == (4, 5)


def test_overrides_are_yaml_values(tmp_path):
    config = load_config(write(tmp_path, BASE), [
        "model.modalities=[structure]", "training.lr=0.5", "features.image=null", "evaluation.patience=null",
        "model.mode=b", "seed=11", "output.checkpoint_every=5", "model.dim=8",
    ])
    assert config.model.options.modalities == ["structure"] and config.model.options.dim == 8
    assert config.model.options.mode == "b" and config.training.lr == 0.5 and config.seed == 11
    assert config.features.image is None and config.evaluation.patience is None
    assert config.output.checkpoint_every == 5


def test_override_can_switch_model_and_add_a_missing_section(tmp_path):
    other = write(tmp_path, "dataset: {path: x}\nmodel: {name: probe, modalities: [structure]}\n")
    config = load_config(other, ["training.amp=bf16", "evaluation.metric=hits@10"])
    assert config.training.amp == "bf16" and config.evaluation.metric == "hits@10"


@pytest.mark.parametrize("text, overrides, message", [
    (BASE + "  epochz: 3\n", [], r"run.yaml:11: training.epochz: unknown key; known keys here: epochs, "),
    (BASE + "optimizer: {}\n", [], r"run.yaml:11: optimizer: unknown key"),
    (BASE, ["training.epochz=3"], r"--set training.epochz=3: training.epochz: unknown key"),
    (BASE + "  batch_size: 1.5\n", [], r"run.yaml:11: training.batch_size: expected an integer, got 1.5"),
    (BASE + "  tf32: 'yes'\n", [], r"training.tf32: expected true or false"),
    (BASE + "  lr: fast\n", [], r"training.lr: expected a number, got 'fast'"),
    (BASE, ["training.lr_schedule=step"],
     r"training.lr_schedule: must be one of none, exponential, cosine; got 'step'"),
    (BASE, ["training.device=gpu"], r"training.device: must be one of auto, cpu, cuda"),
    (BASE, ["evaluation.metric=mr"], r"evaluation.metric: must be one of mrr, hits@1, hits@3, hits@10"),
    (BASE, ["model.dim=7"], r"run.yaml:6: model: dim must be even, got 7"),
    (BASE, ["model.rate=2"], r"--set model.rate=2: model.rate: must be below 1 \(got 2.0\)"),
    (BASE.replace("  dim: 6\n", "  dim: 6\n  rate: 3\n"),
     [], r"run.yaml:9: model.rate: must be below 1"),
    (BASE, ["model.mode=c"], r"model.mode: must be one of a, b"),
    (BASE, ["model.shape=[1]"], r"model.shape: expected a list of 2 values, got 1"),
    (BASE, ["model.modalities=image"], r"model.modalities: expected a list"),
    (BASE, ["model.name=nope"], r"model.name: unknown model 'nope'; known: .*probe"),
    (BASE, ["model.width=3"], r"model.width: unknown key"),
    (BASE.replace("  path: data/kg\n", "  duplicates: drop\n"), [], r"run.yaml:2: dataset.path: missing required key"),
    (BASE, ["training.epochs=0"], r"training.epochs: must be at least 1, got 0"),
    (BASE, ["training.lr=-1"], r"training.lr: must be positive, got -1.0"),
    (BASE, ["evaluation.patience=0"], r"evaluation.patience: must be at least 1, got 0"),
    (BASE, ["dataset.unseen=remove"], r"dataset.unseen: must be one of keep, drop"),
    (BASE, ["seed=true"], r"seed: expected an integer, got True"),
    (BASE, ["training=3"], r"training: expected a mapping of options, got 3"),
    (BASE, ["training.epochs.x=3"], r"training.epochs is not a section"),
    (BASE, ["training.epochs"], r"expected KEY=VALUE"),
    (BASE, ["model.modalities=[structure, text]"],
     r"run.yaml:4: features.text: model.modalities uses 'text' but no text "
     r"feature file is configured"),
    ("- a\n- b\n", [], r"run.yaml: a run config must be a YAML mapping"),
    ("seed: [1\n", [], r"run.yaml:2: not valid YAML"),
])
def test_errors_name_the_file_line_and_key(tmp_path, text, overrides, message):
    with pytest.raises(ConfigError, match=message):
        load_config(write(tmp_path, text), overrides)


def test_missing_modality_feature_file_is_an_error_unless_allowed(tmp_path):
    text = BASE.replace("  image: feats/image.safetensors\n", "  text: feats/text.safetensors\n")
    with pytest.raises(ConfigError, match=r"run.yaml:\d+: features.image: .*allow_missing"):
        load_config(write(tmp_path, text))
    config = load_config(write(tmp_path, text), ["features.allow_missing=true"])
    assert config.file_modalities() == ["image"] and config.features.image is None


def test_missing_config_file(tmp_path):
    with pytest.raises(ConfigError, match="absent.yaml: file not found"):
        load_config(tmp_path / "absent.yaml")


def test_parse_override():
    assert parse_override("a.b=[1, 2]") == (("a", "b"), [1, 2])
    assert parse_override("a=") == (("a",), None)
    assert parse_override("a.b=x=y") == (("a", "b"), "x=y")
    assert parse_override("model.lr=1e-3") == (("model", "lr"), 0.001)  # momok.yamlio: a float, as in YAML 1.2
    with pytest.raises(ConfigError):
        parse_override("a..b=1")


def test_every_option_is_documented_where_its_default_is_defined():
    """Each field of the config dataclasses has a docstring right below it in momok/config.py."""
    import ast

    source = (REPO / "momok" / "config.py").read_text()
    tree = ast.parse(source)
    undocumented = []
    for node in tree.body:
        if isinstance(node, ast.ClassDef) and node.name.endswith("Config"):
            body = node.body
            for i, statement in enumerate(body):
                if isinstance(statement, ast.AnnAssign) and isinstance(statement.target, ast.Name):
                    name = statement.target.id
                    following = body[i + 1] if i + 1 < len(body) else None
                    documented = (isinstance(following, ast.Expr) and isinstance(following.value, ast.Constant)
                                  and isinstance(following.value.value, str))
                    # section fields of RunConfig are documented by their own class
                    if not documented and not (node.name == "RunConfig" and name != "seed"):
                        undocumented.append(f"{node.name}.{name}")
    assert undocumented == []


def test_example_config_loads_and_names_every_option():
    """config/run.example.yaml is valid and spells out every option of every section but model."""
    path = REPO / "config" / "run.example.yaml"
    config = load_config(path)
    raw = yaml.safe_load(path.read_text())
    for section in ("dataset", "features", "training", "evaluation", "output"):
        cls = type(getattr(config, section))
        assert set(raw[section]) == {f.name for f in dataclasses.fields(cls)}, section
    assert config.model.name == "momok"


def test_config_from_dict_without_a_file():
    config = config_from_dict({"dataset": {"path": "d"}, "model": {"name": "probe"}, "features": {"image": "i"}})
    assert isinstance(config, RunConfig) and config.model.options == ProbeOptions()
    with pytest.raises(ConfigError, match=r"^config: dataset: missing required key"):
        config_from_dict({"model": {"name": "probe"}})


# ---------------------------------------------------------------------------------------------
# Values the loader must refuse (issue 11: NaN/Inf, non-decimal integers, out-of-range values,
# repeated keys), each named by file:line or --set and key


@pytest.mark.parametrize("text, overrides, message", [
    (BASE + "  weight_decay: .nan\n", [], r"run.yaml:11: training.weight_decay: must be a finite number, got nan"),
    (BASE + "  lr: -.inf\n", [], r"run.yaml:11: training.lr: must be a finite number, got -inf"),
    (BASE, ["training.lr=nan"], r"--set training.lr=nan: training.lr: expected a number, got 'nan'"),
    (BASE, ["training.lr=inf"], r"--set training.lr=inf: training.lr: expected a number, got 'inf'"),
    (BASE, ["training.lr=.inf"], r"training.lr: must be a finite number, got inf"),
    (BASE, ["training.lr=1e999"], r"training.lr: must be a finite number, got inf"),
    (BASE, ["training.lr=1_0.5"], r"training.lr: expected a number, got '1_0.5'"),
    (BASE, ["model.rate=.nan"], r"--set model.rate=.nan: model.rate: must be a finite number"),
    (BASE.replace("  dim: 6\n", "  dim: 0x10\n"), [], r"run.yaml:8: model.dim: expected an integer, got '0x10'"),
    (BASE, ["model.dim=010"], r"model.dim: expected an integer, got '010'"),
    (BASE, ["model.dim=0b10"], r"model.dim: expected an integer, got '0b10'"),
    (BASE, ["model.dim=1_000"], r"model.dim: expected an integer, got '1_000'"),
    (BASE, ["training.epochs=1:30"], r"training.epochs: expected an integer, got '1:30'"),
    (BASE, ["training.epochs=yes"], r"training.epochs: expected an integer, got True"),
    (BASE, ["seed=-1"], r"--set seed=-1: seed: must be in \[0, 4294967295\], got -1"),
    (BASE.replace("seed: 7", "seed: 4294967296"), [], r"run.yaml:1: seed: must be in \[0, 4294967295\]"),
    (BASE, ["training.lr_schedule=cosine", "training.lr_min=-5"], r"training.lr_min: must be non-negative, got -5.0"),
    (BASE, ["training.lr_schedule=cosine", "training.lr_min=0.1"],
     r"--set training.lr_min=0.1: training.lr_min: must not exceed training.lr \(0.001\)"),
    (BASE, ["training.weight_decay=-0.1"], r"training.weight_decay: must be non-negative, got -0.1"),
    (BASE, ["training.lr_decay=0"], r"training.lr_decay: must be in \(0, 1\], got 0.0"),
    (BASE, ["training.grad_clip=0"], r"training.grad_clip: must be positive, got 0.0"),
    (BASE, ["training.num_threads=0"], r"training.num_threads: must be at least 1, got 0"),
    (BASE, ["evaluation.batch_size=0"], r"evaluation.batch_size: must be at least 1, got 0"),
    (BASE, ["output.checkpoint_every=-2"], r"output.checkpoint_every: must be at least 1, got -2"),
    (BASE + "  epochs: 4\n", [], r"run.yaml:11: duplicate key 'epochs' \(first at line 10\)"),
    (BASE + "training:\n  epochs: 4\n", [], r"run.yaml:11: duplicate key 'training' \(first at line 9\)"),
])
def test_bad_values_are_rejected_with_the_key_named(tmp_path, text, overrides, message):
    with pytest.raises(ConfigError, match=message):
        load_config(write(tmp_path, text), overrides)


def test_decimal_numbers_still_load(tmp_path):
    text = BASE.replace("epochs: 3", "epochs: +4") + "  lr: 1e-2\n  weight_decay: 5.0E-4\n"
    config = load_config(write(tmp_path, text),
                         ["training.estimator_lr=2e-3", "training.grad_clip=.5"])
    assert (config.training.lr, config.training.weight_decay, config.training.epochs) == (0.01, 0.0005, 4)
    assert (config.training.estimator_lr, config.training.grad_clip) == (0.002, 0.5)
    assert config.evaluation.patience == 10 and load_config(write(tmp_path, BASE), ["evaluation.patience=null"]) \
        .evaluation.patience is None


@pytest.mark.parametrize("name, key, value, problem", [
    ("momok", "dim", 0, "must be at least 1, got 0"),
    ("momok", "num_experts", -1, "must be at least 1, got -1"),
    ("momok", "exid_weight", float("nan"), "must be a finite number, got nan"),
    ("momok", "exid_weight", -0.5, "must be non-negative, got -0.5"),
    ("momok", "exid_weight", "zero", "expected a number, got 'zero'"),
    ("momok", "hidden_dropout1", 1.0, r"must be in \[0, 1\), got 1.0"),
    ("momok", "club_hidden_dim", 0, "must be at least 1, got 0"),
    ("transe", "dim", 0, "must be at least 1, got 0"),  # a subclass of KGEOptions redeclares dim
    ("rotate", "adversarial_temperature", -1, "must be non-negative, got -1.0"),
    ("tbkgc", "num_negatives", 0, "must be at least 1, got 0"),
    ("adamf", "mat_weight", float("inf"), "must be a finite number, got inf"),
])
def test_model_options_declare_bounds(name, key, value, problem):
    raw = {"dataset": {"path": "d"}, "features": {"allow_missing": True}, "model": {"name": name, key: value}}
    with pytest.raises(ConfigError, match=rf"^config: model.{key}: {problem}"):
        config_from_dict(raw)


def test_config_from_layers_names_the_layer_that_set_the_key():
    from momok.config import config_from_layers

    base = ("workflow", {"dataset": {"path": "d"}, "features": {"image": "i"}})
    defaults = ("run_defaults", {"training": {"epochs": 3}, "model": {"name": "probe"}})
    config = config_from_layers([base, defaults, ("models.probe", {"model": {"dim": 8}})])
    assert config.training.epochs == 3 and config.model.options.dim == 8
    with pytest.raises(ConfigError, match=r"^models.probe: model.dimm: unknown key"):
        config_from_layers([base, defaults, ("models.probe", {"model": {"dimm": 8}})])
    with pytest.raises(ConfigError, match=r"^variants.fast: training.epochs: must be at least 1, got 0"):
        config_from_layers([base, defaults, ("variants.fast", {"training": {"epochs": 0}})])
    with pytest.raises(ConfigError, match=r"^run config: dataset: missing required key"):
        config_from_layers([defaults])


def test_package_yaml_readers_reject_repeated_keys(tmp_path):
    """Every user YAML the package reads goes through momok.yamlio: sources files, paper numbers, run configs."""
    from momok.data.fetch import load_sources
    from momok.errors import InputError
    from momok.report.tables import load_paper

    path = tmp_path / "twice.yaml"
    path.write_text("base_url: a\ndatasets: {}\nbase_url: b\n", encoding="utf-8")
    for reader in (load_sources, load_paper):
        with pytest.raises(InputError, match=r"twice.yaml:3: duplicate key 'base_url' \(first at line 1\)"):
            reader(path)


@pytest.mark.parametrize("override, message", [
    ("model.shape=[1, 2", r"^--set model.shape=\[1, 2: not valid YAML \(expected ',' or '\]'"),
    ("model.mode={a: 1, a: 2}", r"^--set model.mode=\{a: 1, a: 2\}: duplicate key 'a' \(first at line 1\)$"),
])
def test_override_values_are_read_like_config_files(override, message):
    with pytest.raises(ConfigError, match=message):
        parse_override(override)
