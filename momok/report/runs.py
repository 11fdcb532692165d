"""Find, load and aggregate run folders (the input of every table and figure).

A run folder is ``.../runs/<dataset>/<model>/<variant>/seed<k>/`` (docs/ARCHITECTURE.md, "Run folder")
holding ``config.yaml``, ``metrics.json`` and, for MoMoK, ``weights.csv``. The run's dataset, model,
variant and seed come from the folder path; ``metrics.json`` gives the numbers. Runs that differ only
in their seed form a :class:`RunGroup`, whose metrics are aggregated to mean, sample standard deviation
(``ddof=1``; ``None`` for a single seed) and the number of seeds.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any, Iterable

import pandas as pd

from momok.errors import InputError
from momok.yamlio import load_yaml

#: The score key that ranks a model's predictions: MoMoK's combined score, else a baseline's single key.
RANKING_KEYS = ("joint", "score")

_SEED_RE = re.compile(r"^seed(\d+)$")


@dataclass(frozen=True, order=True)
class RunKey:
    """Where a run sits: ``runs/<dataset>/<model>/<variant>/seed<seed>``."""

    dataset: str
    model: str
    variant: str
    seed: int

    @property
    def group(self) -> tuple[str, str, str]:
        return (self.dataset, self.model, self.variant)


def parse_run_path(path: str | Path) -> tuple[Path, RunKey]:
    """Return the run folder and its key for a run folder or a file inside it (e.g. ``metrics.json``).

    The last path component named ``seed<k>`` marks the run folder; the three components above it are
    variant, model and dataset. Raises :class:`InputError` when the path has no such shape.
    """
    path = Path(path)
    parts = path.parts
    for i in range(len(parts) - 1, -1, -1):
        match = _SEED_RE.match(parts[i])
        if match:
            if i < 3:
                break
            run_dir = Path(*parts[: i + 1])
            dataset, model, variant = parts[i - 3], parts[i - 2], parts[i - 1]
            return run_dir, RunKey(dataset, model, variant, int(match.group(1)))
    raise InputError(path, "not a run folder: expected .../<dataset>/<model>/<variant>/seed<k>[/metrics.json]")


def _read_json(path: Path) -> dict:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InputError(path, "missing: the run is unfinished or was never run (no metrics.json)") from None
    except OSError as err:
        raise InputError(path, f"unreadable: {err}") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as err:
        raise InputError(path, f"not valid JSON: {err.msg}", line=err.lineno) from None
    if not isinstance(data, dict):
        raise InputError(path, "expected a JSON object at the top level")
    return data


def _read_yaml(path: Path) -> dict:
    data = load_yaml(path)
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise InputError(path, "expected a mapping at the top level")
    return data


@dataclass
class RunResults:
    """The results of one finished run: its key, folder, resolved config and metrics."""

    key: RunKey
    path: Path
    config: dict[str, Any]
    metrics: dict[str, Any]

    @property
    def metrics_path(self) -> Path:
        return self.path / "metrics.json"

    def score_keys(self, split: str = "test") -> list[str]:
        return list(self._split(split))

    def _split(self, split: str) -> dict:
        block = self.metrics.get(split)
        if not isinstance(block, dict) or not block:
            raise InputError(self.metrics_path, f"no {split!r} results (expected {{score_key: summary}})")
        return block

    def ranking_key(self, split: str = "test") -> str:
        """The key that ranks this model: ``joint`` when present, else ``score`` (else the only key)."""
        keys = self._split(split)
        for key in RANKING_KEYS:
            if key in keys:
                return key
        if len(keys) == 1:
            return next(iter(keys))
        raise InputError(self.metrics_path, f"cannot tell the ranking score among keys {sorted(keys)}")

    def summary(self, split: str = "test", score_key: str | None = None) -> dict:
        """The evaluator's summary of one score key (the ranking key by default)."""
        keys = self._split(split)
        score_key = score_key or self.ranking_key(split)
        if score_key not in keys:
            raise InputError(self.metrics_path, f"{split}: no score key {score_key!r} (has {sorted(keys)})")
        return keys[score_key]

    def metric(
        self,
        metric: str,
        *,
        split: str = "test",
        score_key: str | None = None,
        direction: str = "both",
        rank: str = "realistic",
    ) -> float:
        """One number, e.g. ``metric("hits@10")``: a fraction in [0, 1] (MR excepted)."""
        summary = self.summary(split, score_key)
        try:
            value = summary[direction][rank][metric]
        except (KeyError, TypeError):
            raise InputError(
                self.metrics_path, f"{split}/{score_key or self.ranking_key(split)}: no {direction}/{rank}/{metric}"
            ) from None
        return float(value)

    def per_relation(self, split: str = "test", score_key: str | None = None,
                     metric: str = "mrr") -> dict[str, tuple[float, int]]:
        """Relation name -> (realistic ``metric``, number of test queries) for one score key."""
        rows = self.summary(split, score_key).get("per_relation") or {}
        out = {}
        for name, entry in rows.items():
            try:
                count = entry.get("count", entry["realistic"].get("count", 0))
                out[str(name)] = (float(entry["realistic"][metric]), int(count))
            except (KeyError, TypeError, ValueError):
                raise InputError(self.metrics_path, f"per_relation[{name!r}] lacks realistic/{metric}") from None
        return out

    @property
    def feature_sources(self) -> dict[str, Any]:
        return self.metrics.get("feature_sources") or {}

    @property
    def feature_label(self) -> str:
        """A short description of the modality features the run used, e.g.
        ``image: encoder mobilenet_v2; text: encoder all-MiniLM-L6-v2``."""
        return describe_feature_sources(self.feature_sources)

    @cached_property
    def weights(self) -> pd.DataFrame | None:
        """``weights.csv`` (MoMoK's mean attention and expert gates per relation), or None if absent."""
        path = self.path / "weights.csv"
        if not path.exists():
            return None
        try:
            table = pd.read_csv(path)
        except Exception as err:  # pandas raises several parser error types
            raise InputError(path, f"unreadable CSV: {err}") from None
        missing = {"relation_name", "direction", "count"} - set(table.columns)
        if missing:
            raise InputError(path, f"missing columns {sorted(missing)}")
        return table


def describe_feature_sources(sources: dict[str, Any] | None) -> str:
    """One line naming, per modality, the feature source, encoder, text source and noise ratio
    (``none`` = absent), from the feature files' metadata that ``metrics.json`` records."""
    if not sources:
        return "structure only (no feature files)"
    parts = []
    for modality in sorted(sources):
        meta = sources[modality]
        if not meta:
            parts.append(f"{modality}: none")
            continue
        if not isinstance(meta, dict):
            parts.append(f"{modality}: {meta}")
            continue
        words = [str(meta.get("source", "unknown"))]
        if meta.get("noise_base_source"):
            words.append(f"(on {meta['noise_base_source']})")
        if meta.get("encoder"):
            words.append(str(meta["encoder"]))
        if meta.get("text_source"):
            words.append(f"text_source={_compact(meta['text_source'])}")
        if meta.get("noise_ratio") not in (None, ""):
            words.append(f"noise_ratio={meta['noise_ratio']}")
        parts.append(f"{modality}: " + " ".join(words))
    return "; ".join(parts)


def _compact(value: Any) -> str:
    """A metadata value on one short line: a JSON object ``{"description": 131}`` -> ``description:131``."""
    try:
        parsed = json.loads(value) if isinstance(value, str) else value
    except ValueError:
        return str(value)
    if isinstance(parsed, dict):
        return ",".join(f"{k}:{v}" for k, v in parsed.items())
    return str(value)


def load_run(path: str | Path) -> RunResults:
    """Load a run from its folder or its ``metrics.json``. :class:`InputError` names the bad file."""
    run_dir, key = parse_run_path(path)
    if not run_dir.is_dir():
        raise InputError(run_dir, "run folder does not exist")
    metrics = _read_json(run_dir / "metrics.json")
    for split in ("test",):
        if not isinstance(metrics.get(split), dict):
            raise InputError(run_dir / "metrics.json", f"missing {split!r} block")
    config_path = run_dir / "config.yaml"
    config = _read_yaml(config_path) if config_path.exists() else {}
    seed = config.get("seed")
    if seed is not None and int(seed) != key.seed:
        raise InputError(config_path, f"seed {seed} disagrees with the folder name seed{key.seed}")
    return RunResults(key=key, path=run_dir, config=config, metrics=metrics)


def load_runs(paths: Iterable[str | Path]) -> list[RunResults]:
    """Load several runs; the same run given twice is an error (it would count one seed twice)."""
    runs: dict[RunKey, RunResults] = {}
    for path in paths:
        run = load_run(path)
        if run.key in runs:
            raise InputError(path, f"run {run.key} given twice (also {runs[run.key].path})")
        runs[run.key] = run
    return sorted(runs.values(), key=lambda r: r.key)


def discover_runs(root: str | Path) -> list[Path]:
    """Every finished run folder (one with ``metrics.json``) under ``root``, sorted."""
    root = Path(root)
    if not root.is_dir():
        raise InputError(root, "not a folder")
    return sorted(p.parent for p in root.rglob("metrics.json") if _SEED_RE.match(p.parent.name))


@dataclass(frozen=True)
class Stat:
    """Mean, sample standard deviation (None for one value) and count of a metric over seeds."""

    mean: float
    std: float | None
    n: int

    @staticmethod
    def of(values: list[float]) -> "Stat":
        if not values:
            raise ValueError("no values")
        n = len(values)
        mean = sum(values) / n
        std = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1)) if n > 1 else None
        return Stat(mean, std, n)

    def scaled(self, factor: float) -> "Stat":
        return Stat(self.mean * factor, None if self.std is None else self.std * factor, self.n)


@dataclass
class RunGroup:
    """The seeds of one (dataset, model, variant)."""

    dataset: str
    model: str
    variant: str
    runs: list[RunResults] = field(default_factory=list)

    @property
    def seeds(self) -> list[int]:
        return sorted(r.key.seed for r in self.runs)

    def stat(self, metric: str, *, split: str = "test", score_key: str | None = None,
             direction: str = "both", rank: str = "realistic") -> Stat:
        """The metric aggregated over seeds (fractions; multiply by 100 for the paper's percentages)."""
        return Stat.of([r.metric(metric, split=split, score_key=score_key, direction=direction, rank=rank)
                        for r in self.runs])

    def has_score_key(self, score_key: str, split: str = "test") -> bool:
        return all(score_key in r.score_keys(split) for r in self.runs)

    @property
    def feature_label(self) -> str:
        """The runs' feature description; differing seeds are listed with their seed."""
        labels = {r.feature_label for r in self.runs}
        if len(labels) == 1:
            return labels.pop()
        return " | ".join(f"seed{r.key.seed}: {r.feature_label}" for r in sorted(self.runs, key=lambda r: r.key))


def group_runs(runs: Iterable[RunResults]) -> dict[tuple[str, str, str], RunGroup]:
    """(dataset, model, variant) -> RunGroup, in sorted key order."""
    groups: dict[tuple[str, str, str], RunGroup] = {}
    for run in sorted(runs, key=lambda r: r.key):
        group = groups.setdefault(run.key.group, RunGroup(*run.key.group))
        group.runs.append(run)
    return groups


def normalize_name(name: str) -> str:
    """Compare model names loosely: ``"MoSE*"``, ``"mose"`` and ``"Mo-SE"`` all become ``"mose"``."""
    return re.sub(r"[^0-9a-z]", "", name.lower())


def short_relation(name: str) -> str:
    """Short display name of a relation: the last segment of a URI, without brackets.

    ``<http://dbpedia.org/ontology/routeJunction>`` -> ``routeJunction``;
    ``http://www.wikidata.org/prop/direct/P31`` -> ``P31``; plain names are returned unchanged.
    """
    text = str(name).strip().strip("<>")
    text = re.split(r"[/#]", text.rstrip("/"))[-1] or text
    return text

