"""The run config of ``momok train``: typed sections with documented defaults, YAML loading, overrides.

A run config is a YAML file with the sections below; any key left out takes the default written next
to its field here, so a minimal config names only ``dataset.path``, the feature files and the model::

    seed: 0
    dataset: {path: data/raw/MKG-Y}
    features: {image: features/MKG-Y/image.safetensors, text: features/MKG-Y/text.safetensors}
    model: {name: momok, num_experts: 3}
    training: {epochs: 100}

``load_config(path, overrides)`` reads the file, applies ``--set a.b=value`` overrides (values parsed
as YAML, so ``--set model.modalities=[structure]`` gives a list and ``--set features.image=null``
removes a file), then checks every key and value. ``model:`` is checked against the options dataclass
that ``model.name`` registered (``momok.models.registry``). Unknown keys, wrong types, values
outside a fixed set or outside the bounds a field declares in its annotation (:mod:`momok.bounds`,
e.g. ``epochs: PositiveInt``), NaN or infinite numbers, integers not written in decimal (``0x10``) and
a key written twice in one mapping (:mod:`momok.yamlio`) are a :class:`~momok.errors.ConfigError`
naming the file, the line (or the ``--set`` override) and the key path. Relative paths in a config
(dataset, feature files) are resolved against the **current working directory** of the command, not
against the config file's folder, so configs written by the Snakemake workflow run from the
repository root.

``RunConfig.to_dict()`` gives the resolved config (every default filled in), which ``momok train``
writes into the run folder with a ``provenance`` section (momok version, git commit); that section is
ignored when such a file is loaded again.
"""

from __future__ import annotations

import copy
import dataclasses
import math
import re
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml

from momok.bounds import Bounds, NonNegativeFloat, PositiveFloat, PositiveInt
from momok.errors import ConfigError, InputError
from momok.modalities import FILE_MODALITIES  # their names are the keys of ``features:``
from momok.yamlio import StrictLoader, load_yaml, parse_yaml, yaml_problem


@dataclass
class DatasetConfig:
    """``dataset:`` which benchmark folder to train on and how to read it."""

    path: str
    """Dataset folder in the benchmark layout (``entity2id.txt``, ``train.txt``, ...). Required."""
    duplicates: Literal["keep", "drop"] = "keep"
    """``keep``: a triple repeated in a split counts once per line (the paper's protocol);
    ``drop``: only its first occurrence in each split is kept."""
    unseen: Literal["keep", "drop"] = "keep"
    """``keep``: valid/test triples with an entity absent from train stay (the paper's protocol);
    ``drop``: they are removed from valid and test."""


@dataclass
class FeaturesConfig:
    """``features:`` the feature file of each file-backed modality (``momok features`` output)."""

    image: str | None = None
    """Image feature file (safetensors, rows in entity-id order); ``null``: no image features."""
    text: str | None = None
    """Text feature file; ``null``: no text features."""
    allow_missing: bool = False
    """A modality listed in ``model.modalities`` whose feature file is ``null`` is an error, unless
    this is true: then the model is built without that file (what it does instead is the model's
    business, e.g. a randomly initialised table)."""

    def path_of(self, modality: str) -> str | None:
        return getattr(self, modality)


@dataclass
class TrainingConfig:
    """``training:`` the optimisation loop."""

    epochs: PositiveInt = 100
    """Maximum number of passes over the training queries (early stopping may end sooner)."""
    batch_size: PositiveInt = 1024
    """Queries per step (the paper: 1024). Each training triple gives two queries (tail and head)."""
    lr: PositiveFloat = 1e-3
    """Learning rate of the model's Adam optimiser."""
    lr_schedule: Literal["none", "exponential", "cosine"] = "none"
    """Learning-rate schedule, stepped once per epoch: ``none`` (constant), ``exponential``
    (multiplied by ``lr_decay`` after each epoch), ``cosine`` (from ``lr`` down to ``lr_min`` over
    ``epochs``). The estimator optimiser's learning rate stays constant."""
    lr_decay: Annotated[float, Bounds(min=0, max=1, min_open=True)] = 0.995
    """Per-epoch factor of the ``exponential`` schedule."""
    lr_min: NonNegativeFloat = 0.0
    """Final learning rate of the ``cosine`` schedule (at most ``lr``)."""
    weight_decay: NonNegativeFloat = 0.0
    """L2 penalty of the model's Adam optimiser (``torch.optim.Adam(weight_decay=...)``)."""
    estimator_lr: PositiveFloat = 1e-3
    """Learning rate of the second Adam optimiser over ``model.estimator_parameters()`` (ExID's CLUB
    estimators), stepped on ``model.estimator_loss`` after every model step. Unused by models without
    estimator parameters."""
    grad_clip: PositiveFloat | None = None
    """Clip the model's gradient to this total L2 norm before each step; ``null``: no clipping."""
    label_batching: bool = False
    """``false``: one training example per triple and direction, ``(h, r) -> t`` and
    ``(t, r+R) -> h``; ``true``: one example per distinct query ``(e, r)`` with all its training answers
    as ``labels`` (TuckER-style 1-N batches; only for models whose loss reads labels)."""
    device: Literal["auto", "cpu", "cuda"] = "auto"
    """``auto``: CUDA when torch sees a GPU, else CPU. ``momok train --device`` overrides it."""
    tf32: bool = True
    """On CUDA, allow TF32 tensor-core matmuls/convolutions (faster, ~1e-3 relative precision)."""
    amp: Literal["none", "bf16", "fp16"] = "none"
    """Automatic mixed precision for the forward passes: ``none`` (float32), ``bf16`` (CPU or CUDA),
    ``fp16`` (CUDA only, with loss scaling). Scores are ranked in float32 either way."""
    num_threads: PositiveInt | None = None
    """``torch.set_num_threads`` for the run; ``null``: torch's default (all cores)."""


@dataclass
class EvaluationConfig:
    """``evaluation:`` validation during training (model selection) and the final test."""

    every: PositiveInt = 1
    """Validate every this many epochs, and always after the last epoch."""
    patience: PositiveInt | None = 10
    """Stop after this many validations in a row without improvement of ``metric``; ``null``: never
    stop early."""
    batch_size: PositiveInt = 256
    """Queries per evaluation batch (scores are ``[batch_size, num_entities]``)."""
    metric: Literal["mrr", "hits@1", "hits@3", "hits@10"] = "mrr"
    """Validation metric that selects the best epoch, filtered, on the model's ``ranking_key`` score,
    over head and tail queries together. Its checkpoint is the one tested, once, at the end."""
    rank: Literal["realistic", "optimistic", "pessimistic"] = "realistic"
    """Tie handling of the selection metric: ``realistic`` (mean of optimistic and pessimistic ranks).
    ``metrics.json`` reports all three regardless."""


@dataclass
class OutputConfig:
    """``output:`` what the run folder keeps while training."""

    checkpoint_every: PositiveInt = 1
    """Write ``checkpoint/last.pt`` (everything needed by ``--resume``) every this many epochs, and
    when training ends."""


@dataclass
class ModelConfig:
    """``model:`` ``name`` (a registered model) and that model's options, written flat next to it."""

    name: str = "momok"
    """Registered model name (``momok.models.registry.model_names()``)."""
    options: Any = None
    """Instance of the model's registered options dataclass (the other keys of ``model:``)."""


@dataclass
class RunConfig:
    """A whole run config; see the module docstring."""

    dataset: DatasetConfig
    features: FeaturesConfig = field(default_factory=FeaturesConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    training: TrainingConfig = field(default_factory=TrainingConfig)
    evaluation: EvaluationConfig = field(default_factory=EvaluationConfig)
    output: OutputConfig = field(default_factory=OutputConfig)
    seed: Annotated[int, Bounds(min=0, max=2**32 - 1)] = 0
    """Seeds Python, NumPy and torch, the model's initialisation and the training shuffle; 0 to
    2**32 - 1."""

    def to_dict(self) -> dict[str, Any]:
        """The resolved config as plain YAML-able data (``model`` flattened: name then options)."""
        out: dict[str, Any] = {"seed": self.seed}
        for name in ("dataset", "features"):
            out[name] = _plain(dataclasses.asdict(getattr(self, name)))
        out["model"] = {"name": self.model.name, **_plain(dataclasses.asdict(self.model.options))}
        for name in ("training", "evaluation", "output"):
            out[name] = _plain(dataclasses.asdict(getattr(self, name)))
        return out

    def file_modalities(self) -> list[str]:
        """File-backed modalities the model uses: those in ``model.modalities`` when the model has that
        option (plus the files its negative sampler reads, MMRNS), else every modality with a configured
        feature file."""
        wanted = getattr(self.model.options, "modalities", None)
        if wanted is None:
            return [m for m in FILE_MODALITIES if self.features.path_of(m) is not None]
        sampler = getattr(self.model.options, "sampler", None)  # a sampler may read files of its own (MMRNS)
        wanted = list(wanted) + (sampler.file_modalities() if sampler is not None else [])
        return [m for m in FILE_MODALITIES if m in wanted]


def _plain(value: Any) -> Any:
    """Tuples -> lists, recursively (YAML safe_dump writes neither tuples nor dataclasses)."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


# ---------------------------------------------------------------------------------------------
# Loading


class _Where:
    """Names the origin of a key path in error messages: the source of the deepest key path that has
    one in ``origins`` (``file:line``, ``--set key=value``, a workflow config section), else
    ``fallback``."""

    def __init__(self, origins: dict[tuple, str], fallback: str):
        self.origins, self.fallback = origins, fallback

    def __call__(self, keys: tuple) -> str:
        for n in range(len(keys), 0, -1):
            if keys[:n] in self.origins:
                return self.origins[keys[:n]]
        return self.fallback

    def error(self, keys: tuple, problem: str) -> ConfigError:
        dotted = ".".join(str(k) for k in keys) or "(top level)"
        return ConfigError(f"{self(keys)}: {dotted}: {problem}")


def _key_lines(node: yaml.Node | None, prefix: tuple = ()) -> dict[tuple, int]:
    """Line (1-based) of every mapping key path in a composed YAML document."""
    lines: dict[tuple, int] = {}
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            keys = prefix + (key_node.value,)
            lines[keys] = key_node.start_mark.line + 1
            lines.update(_key_lines(value_node, keys))
    return lines


def _key_paths(raw: Any, prefix: tuple = ()) -> list[tuple]:
    """Every mapping key path in parsed data (``{"a": {"b": 1}}`` -> ``[("a",), ("a", "b")]``)."""
    paths: list[tuple] = []
    if isinstance(raw, dict):
        for key, value in raw.items():
            paths.append(prefix + (key,))
            paths.extend(_key_paths(value, prefix + (key,)))
    return paths


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


#: a number written in decimal notation (what a float field accepts as a string, e.g. from ``--set``)
_DECIMAL = re.compile(r"[-+]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][-+]?[0-9]+)?")


def _number(value: Any, keys: tuple, where: _Where) -> float:
    """A float field's value: a finite int or float, or a decimal string (``1e-3``)."""
    if isinstance(value, str) and _DECIMAL.fullmatch(value.strip()):
        value = float(value)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise where.error(keys, f"expected a number, got {value!r}")
    if not math.isfinite(value):
        raise where.error(keys, f"must be a finite number, got {value!r}")
    return float(value)


def _convert(value: Any, tp: Any, keys: tuple, where: _Where) -> Any:
    """Check ``value`` against the type annotation ``tp`` and convert it (ints to floats, lists to
    tuples, mappings to dataclasses); ``Annotated[..., Bounds(...)]`` bounds are checked too."""
    origin = typing.get_origin(tp)
    if tp is Any:
        return value
    if origin is Annotated:
        converted = _convert(value, tp.__origin__, keys, where)
        for bounds in tp.__metadata__:
            problem = bounds.problem(converted) if isinstance(bounds, Bounds) else None
            if problem is not None:
                raise where.error(keys, problem)
        return converted
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None:
            if type(None) in args:
                return None
            raise where.error(keys, f"must not be null (expected {_type_name(tp)})")
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _convert(value, arg, keys, where)
            except ConfigError as err:
                errors.append(err)
        raise errors[0]
    if origin is Literal:
        choices = typing.get_args(tp)
        if value not in choices or isinstance(value, bool) != isinstance(choices[0], bool):
            raise where.error(keys, f"must be one of {', '.join(map(str, choices))}; got {value!r}")
        return value
    if dataclasses.is_dataclass(tp):
        return _build_dataclass(tp, value, keys, where)
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise where.error(keys, f"expected a list, got {value!r}")
        args = typing.get_args(tp)
        if origin is tuple and args and (len(args) != 2 or args[1] is not Ellipsis):
            if len(value) != len(args):
                raise where.error(keys, f"expected a list of {len(args)} values, got {len(value)}")
            items = [_convert(v, a, keys + (i,), where) for i, (v, a) in enumerate(zip(value, args))]
        else:
            item_type = args[0] if args else Any
            items = [_convert(v, item_type, keys + (i,), where) for i, v in enumerate(value)]
        return tuple(items) if origin is tuple else items
    if origin is dict:
        if not isinstance(value, dict):
            raise where.error(keys, f"expected a mapping, got {value!r}")
        key_type, value_type = typing.get_args(tp) or (Any, Any)
        return {_convert(k, key_type, keys, where): _convert(v, value_type, keys + (k,), where)
                for k, v in value.items()}
    if value is None:
        raise where.error(keys, f"must not be null (expected {_type_name(tp)})")
    if tp is bool:
        if not isinstance(value, bool):
            raise where.error(keys, f"expected true or false, got {value!r}")
        return value
    if tp is int:  # decimal integers only: the config's YAML reads 0x10, 010, 1_000 as strings
        if isinstance(value, bool) or not isinstance(value, int):
            raise where.error(keys, f"expected an integer, got {value!r}")
        return value
    if tp is float:
        return _number(value, keys, where)
    if tp in (str, Path):
        if not isinstance(value, str):
            raise where.error(keys, f"expected a string, got {value!r}")
        return tp(value)
    if isinstance(tp, type) and isinstance(value, tp):
        return value
    raise where.error(keys, f"expected {_type_name(tp)}, got {value!r}")


def _build_dataclass(cls: type, raw: Any, keys: tuple, where: _Where, skip: tuple[str, ...] = ()) -> Any:
    """An instance of dataclass ``cls`` from the mapping ``raw`` (``None`` = all defaults)."""
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise where.error(keys, f"expected a mapping of options, got {raw!r}")
    hints = typing.get_type_hints(cls, include_extras=True)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init and f.name not in skip}
    unknown = [k for k in raw if k not in fields]
    if unknown:
        raise where.error(keys + (unknown[0],), f"unknown key; known keys here: {', '.join(fields)}")
    kwargs = {}
    for name, f in fields.items():
        if name in raw:
            kwargs[name] = _convert(raw[name], hints[name], keys + (name,), where)
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            raise where.error(keys + (name,), "missing required key")
    try:
        return cls(**kwargs)
    except (ValueError, TypeError, ConfigError) as err:  # checks in the dataclass's __post_init__
        problem = str(err)
        # a message that names its own key ("model.dim: ...") points at that key's line
        field_name, sep, rest = problem.removeprefix(".".join(map(str, keys)) + ".").partition(": ")
        if keys and sep and field_name in fields and problem.startswith(".".join(map(str, keys)) + "."):
            raise where.error(keys + (field_name,), rest) from None
        raise where.error(keys, problem) from None


def parse_override(text: str) -> tuple[tuple[str, ...], Any]:
    """``"a.b=value"`` -> (``("a", "b")``, value parsed as a YAML scalar or list, as in a config file)."""
    key, sep, raw = text.partition("=")
    keys = tuple(key.strip().split("."))
    if not sep or not all(keys):
        raise ConfigError(f"--set {text}: expected KEY=VALUE with a dotted key, e.g. model.num_experts=5")
    try:
        value = parse_yaml(raw) if raw.strip() else None
    except yaml.YAMLError as err:
        raise ConfigError(f"--set {text}: {yaml_problem(err)}") from None
    return keys, value


def config_from_dict(raw: Any, *, path: str | Path | None = None, lines: dict[tuple, int] | None = None,
                     overrides: dict[tuple, str] | None = None,
                     origins: dict[tuple, str] | None = None) -> RunConfig:
    """Check a parsed config mapping and build the :class:`RunConfig`.

    Errors name where a key came from: ``path:line`` (``lines``: key path -> line), ``--set TEXT``
    (``overrides``: key path -> override text) or any text given per key path in ``origins``.
    """
    named = {keys: f"{path}:{line}" for keys, line in (lines or {}).items()}
    named.update({keys: f"--set {text}" for keys, text in (overrides or {}).items()})
    named.update(origins or {})
    where = _Where(named, str(path) if path is not None else "config")
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise where.error((), "a run config must be a YAML mapping of sections")
    raw = {k: v for k, v in raw.items() if k != "provenance"}  # written by momok train, informative only
    model_raw = raw.get("model") or {}
    if not isinstance(model_raw, dict):
        raise where.error(("model",), f"expected a mapping with name and options, got {model_raw!r}")
    name = model_raw.get("name", ModelConfig.name)
    if not isinstance(name, str):
        raise where.error(("model", "name"), f"expected a model name, got {name!r}")
    from momok.models.registry import get_model

    try:
        options_cls = get_model(name).options
    except ConfigError as err:
        raise where.error(("model", "name"), str(err).removeprefix("model.name: ")) from None
    options = _build_dataclass(options_cls, {k: v for k, v in model_raw.items() if k != "name"}, ("model",), where)
    config = _build_dataclass(RunConfig, {k: v for k, v in raw.items() if k != "model"}, (), where, skip=("model",))
    config.model = ModelConfig(name=name, options=options)
    _check(config, where)
    return config


def config_from_layers(layers: list[tuple[str, dict]]) -> RunConfig:
    """Check a run config made of ``(label, partial config)`` layers deep-merged in order (later wins),
    as the workflow builds a run from ``run_defaults``, ``models.<name>``, ...: an error names the
    label of the last layer that set the offending key (``models.momok: model.num_expert: unknown
    key; ...``), or ``run config`` when no layer set it."""
    merged: dict = {}
    origins: dict[tuple, str] = {}
    for label, layer in layers:
        merged = deep_merge(merged, layer)
        origins.update({keys: label for keys in _key_paths(layer)})
    return config_from_dict(merged, path="run config", origins=origins)


def deep_merge(base: dict, extra: Any) -> dict:
    """``extra`` merged into a deep copy of ``base``: mappings key by key, anything else replaces (the
    workflow merges its config layers with it too)."""
    out = copy.deepcopy(base)
    for key, value in (extra or {}).items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def _check(config: RunConfig, where: _Where) -> None:
    """Checks across fields (each field's own range is in its annotation)."""
    training = config.training
    if training.lr_schedule == "cosine" and training.lr_min > training.lr:
        raise where.error(("training", "lr_min"), f"must not exceed training.lr ({training.lr}) with the cosine "
                                                  f"schedule, got {training.lr_min}")
    if not config.features.allow_missing:
        for modality in config.file_modalities():
            if config.features.path_of(modality) is None:
                raise where.error(("features", modality),
                                  f"model.modalities uses {modality!r} but no {modality} feature file is "
                                  f"configured (set features.{modality}, or features.allow_missing: true)")


def load_config(path: str | Path, overrides: list[str] | tuple[str, ...] = ()) -> RunConfig:
    """Read a YAML run config, apply ``--set`` overrides (``"a.b=value"``) and check it.

    The file is read with :mod:`momok.yamlio`'s strict loader (a repeated key is an error). Raises
    :class:`ConfigError` naming the file, line and key path on any problem.
    """
    path = Path(path)
    try:
        raw = load_yaml(path)
    except InputError as err:
        raise ConfigError(str(err)) from None
    lines = _key_lines(yaml.compose(path.read_text(encoding="utf-8"), Loader=StrictLoader))
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: a run config must be a YAML mapping of sections")
    sources: dict[tuple, str] = {}
    for text_override in overrides:
        keys, value = parse_override(text_override)
        node = raw
        for depth, key in enumerate(keys[:-1]):
            if not isinstance(node.get(key), dict):
                if node.get(key) is not None:
                    raise ConfigError(f"--set {text_override}: {'.'.join(keys[:depth + 1])} is not a section")
                node[key] = {}
            node = node[key]
        node[keys[-1]] = value
        sources[keys] = text_override
    return config_from_dict(raw, path=path, lines=lines, overrides=sources)


def dump_config(config: RunConfig, extra: dict[str, Any] | None = None) -> str:
    """The resolved config as YAML text, with ``extra`` top-level sections (e.g. ``provenance``) last."""
    data = config.to_dict()
    if extra:
        data.update(extra)
    return yaml.safe_dump(data, sort_keys=False, allow_unicode=True)
