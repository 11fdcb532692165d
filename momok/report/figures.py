"""The paper's Figures 3, 4 and 5 from run folders (matplotlib, Agg backend).

- Figure 3: MRR and Hits@10 against the modality noise ratio (variants ``noise<ratio>``), MoMoK and the
  baselines that were run (the paper: TBKGC, AdaMF); one panel per dataset and metric; error bars are
  the sample standard deviation over seeds.
- Figure 4: MoMoK's metrics against the number of experts K (variants ``K<k>``) and the ExID weight
  lambda (variants ``lambda<value>``, log x-axis).
- Figure 5: heatmaps from ``weights.csv`` of the full MoMoK model: MuJoD attention alpha per relation
  and modality, and the ReMoKE expert gates per relation and expert, one panel per modality.

Every figure carries a caption line naming the dataset(s), the seeds and the feature source. The paper's
text gives no values for these figures (they are only in its images), so nothing of the paper is drawn.
"""

from __future__ import annotations

import re
import textwrap
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from momok.atomic import write_atomic  # noqa: E402
from momok.errors import InputError  # noqa: E402
from momok.modalities import SCORE_KEYS  # noqa: E402
from momok.report.runs import RunGroup, RunResults, group_runs, normalize_name, short_relation  # noqa: E402
from momok.report.tables import MOMOK, dataset_order, ordered_datasets  # noqa: E402
from momok.report.variants import NOISE, variant_value  # noqa: E402

METRIC_LABELS = {"mrr": "MRR", "hits@1": "Hits@1", "hits@3": "Hits@3", "hits@10": "Hits@10"}
MODALITY_LABELS = {key: modality for modality, key in SCORE_KEYS.items()}
#: Display names of models (folder names are compared loosely).
MODEL_LABELS = {"momok": "MoMoK", "tbkgc": "TBKGC", "adamf": "AdaMF"}
STYLE = {"font.size": 10, "axes.titlesize": 11, "axes.labelsize": 10, "legend.fontsize": 9,
         "xtick.labelsize": 9, "ytick.labelsize": 9, "axes.grid": True, "grid.alpha": 0.3}


def _label(model: str) -> str:
    return MODEL_LABELS.get(normalize_name(model), model)


def _caption(groups: list[RunGroup]) -> str:
    """``dataset: X; seeds: 0,1,2; features: ...`` (one clause per distinct value)."""
    datasets = ordered_datasets({g.dataset for g in groups})
    seeds = sorted({s for g in groups for s in g.seeds})
    labels = {g.feature_label for g in groups}
    # Noisy copies of the same features: name the base features once and list the noise ratios.
    ratios = sorted({float(r) for label in labels for r in _NOISE_RATIO_RE.findall(label)})
    features = sorted({_NOISE_RATIO_RE.sub("", _NOISE_ON_RE.sub(r"\1", label)) for label in labels})
    text = (f"Dataset: {', '.join(datasets)}; seeds: {', '.join(map(str, seeds))}; "
            f"features: {' | '.join(features)}")
    if ratios:
        text += f"; noise ratios {', '.join(f'{r:g}' for r in ratios)} (share of entities with Gaussian feature noise)"
    return text


_NOISE_ON_RE = re.compile(r"noise \(on ([^)]*)\)")
_NOISE_RATIO_RE = re.compile(r" noise_ratio=([0-9.eE+-]+)")


def _add_caption(fig, text: str) -> None:
    """A grey caption line under the axes (outside them; ``bbox_inches="tight"`` keeps it in the file)."""
    width = max(40, int(fig.get_figwidth() * 15))
    fig.text(0.01, 0.0, textwrap.fill(text, width), ha="left", va="top", fontsize=8, color="0.3")


def save_figure(fig, prefix: str | Path, dpi: int = 150) -> list[Path]:
    """Save ``<prefix>.png`` and ``<prefix>.pdf`` atomically (:func:`momok.atomic.write_atomic`)."""
    prefix = Path(prefix)
    paths = []
    for ext in ("png", "pdf"):
        target = prefix.with_name(f"{prefix.name}.{ext}")
        write_atomic(target, lambda f, ext=ext: fig.savefig(f, format=ext, dpi=dpi, bbox_inches="tight"))
        paths.append(target)
    plt.close(fig)
    return paths


Sweep = dict[tuple[str, str], list[tuple[float, RunGroup]]]


def _sweep(groups: dict, prefix: str, *, model: str | None = None) -> Sweep:
    """(dataset, model) -> [(value, group)] sorted by value, for variants named ``<prefix><value>``."""
    out: Sweep = {}
    for (dataset, name, variant), group in groups.items():
        if model is not None and normalize_name(name) != normalize_name(model):
            continue
        value = variant_value(variant, prefix)
        if value is not None:
            out.setdefault((dataset, name), []).append((value, group))
    for points in out.values():
        points.sort(key=lambda p: p[0])
    return out


def _errorbar(ax, points: list[tuple[float, RunGroup]], metric: str, split: str, **style) -> None:
    xs, ys, es = [], [], []
    for value, group in points:
        stat = group.stat(metric, split=split).scaled(100.0)
        xs.append(value)
        ys.append(stat.mean)
        es.append(stat.std or 0.0)
    style = {"marker": "o", **style}
    ax.errorbar(xs, ys, yerr=es, capsize=3, markersize=4, linewidth=1.5, **style)


def _shared_legend(fig, axes) -> None:
    """One legend for all panels, right of them (the panels share their lines' labels)."""
    handles, labels = {}, []
    for ax in np.ravel(axes):
        for handle, label in zip(*ax.get_legend_handles_labels()):
            if label not in handles:
                handles[label] = handle
                labels.append(label)
    fig.legend([handles[l] for l in labels], labels, loc="outside right upper",
               frameon=False)


# ---------------------------------------------------------------- Figure 3

def figure3(runs: list[RunResults], *, metrics: tuple[str, ...] = ("mrr", "hits@10"), split: str = "test",
            clean_variant: str = "full"):
    """Metrics vs noise ratio for every model with ``noise<ratio>`` runs.

    ``clean_variant``: a model's run variant used as noise ratio 0 when it has no ``noise0`` run
    (its clean-feature default run); set to None to plot only ``noise<ratio>`` runs.
    """
    groups = group_runs(runs)
    sweeps = _sweep(groups, NOISE)
    if not sweeps:
        raise InputError(None, f"figure3: none of the {len(runs)} runs is a noise run (variant noise<ratio>)")
    for (dataset, model), points in sweeps.items():
        clean = groups.get((dataset, model, clean_variant)) if clean_variant else None
        if clean is not None and not any(v == 0 for v, _ in points):
            points.insert(0, (0.0, clean))
    datasets = ordered_datasets({d for d, _ in sweeps})
    models = sorted({m for _, m in sweeps}, key=lambda m: (normalize_name(m) != MOMOK, _label(m)))
    styles = {m: {"color": f"C{i}", "marker": "osD^v<>"[i % 7], "linestyle": ("-", "--", ":", "-.")[i % 4]}
              for i, m in enumerate(models)}
    used = [g for points in sweeps.values() for _, g in points]
    with plt.rc_context(STYLE):
        fig, axes = plt.subplots(len(datasets), len(metrics), figsize=(4.2 * len(metrics), 3.3 * len(datasets) + 0.5),
                                 squeeze=False, layout="constrained")
        for i, dataset in enumerate(datasets):
            for j, metric in enumerate(metrics):
                ax = axes[i][j]
                for model in models:
                    points = sweeps.get((dataset, model))
                    if points:
                        _errorbar(ax, points, metric, split, label=_label(model), **styles[model])
                ax.set_title(f"{dataset}: {METRIC_LABELS.get(metric, metric)}")
                ax.set_xlabel("noise ratio")
                ax.set_ylabel(f"{METRIC_LABELS.get(metric, metric)} (%)")
        fig.suptitle("Figure 3: robustness to modality noise")
        _shared_legend(fig, axes)
        _add_caption(fig, _caption(used))
    return fig


# ---------------------------------------------------------------- Figure 4

def figure4(runs: list[RunResults], *, metrics: tuple[str, ...] = ("mrr", "hits@1", "hits@3", "hits@10"),
            split: str = "test", model: str = MOMOK):
    """Metrics vs the number of experts K (``K<k>`` runs) and vs lambda (``lambda<v>`` runs, log x)."""
    groups = group_runs(runs)
    sweeps = {"K": _sweep(groups, "K", model=model), "lambda": _sweep(groups, "lambda", model=model)}
    sweeps = {name: s for name, s in sweeps.items() if s}
    if not sweeps:
        raise InputError(None, f"figure4: none of the {len(runs)} runs is a {model} K<k> or lambda<value> run")
    datasets = ordered_datasets({d for s in sweeps.values() for d, _ in s})
    used = [g for s in sweeps.values() for points in s.values() for _, g in points]
    with plt.rc_context(STYLE):
        fig, axes = plt.subplots(len(datasets), len(sweeps), figsize=(4.6 * len(sweeps), 3.4 * len(datasets) + 0.5),
                                 squeeze=False, layout="constrained")
        for i, dataset in enumerate(datasets):
            for j, (name, sweep) in enumerate(sweeps.items()):
                ax = axes[i][j]
                points = next((p for (d, _), p in sweep.items() if d == dataset), None)
                if not points:
                    ax.set_axis_off()
                    ax.text(0.5, 0.5, f"no {name} runs", ha="center", va="center", transform=ax.transAxes)
                    continue
                for k, metric in enumerate(metrics):
                    _errorbar(ax, points, metric, split, color=f"C{k}", label=METRIC_LABELS.get(metric, metric))
                if name == "lambda":
                    positive = all(v > 0 for v, _ in points)
                    ax.set_xscale("log" if positive else "symlog", **({} if positive else {"linthresh": 1e-4}))
                    ax.set_xlabel("ExID loss weight λ")
                else:
                    ax.set_xlabel("number of experts K")
                    ax.set_xticks([v for v, _ in points])
                ax.set_ylabel("metric (%)")
                ax.set_title(f"{dataset}: effect of {'K' if name == 'K' else 'λ'}")
        fig.suptitle("Figure 4: hyper-parameter sensitivity of MoMoK")
        _shared_legend(fig, axes)
        _add_caption(fig, _caption(used))
    return fig


# ---------------------------------------------------------------- Figure 5

#: ``gate_<modality>_<expert>`` (also accepted: ``gates_<modality>_<expert>``)
_GATE_RE = re.compile(r"^gates?_([A-Za-z]+)_(\d+)$")


def relation_weights(group: RunGroup, *, max_relations: int = 12, direction: str = "both") -> pd.DataFrame:
    """Mean α and gates per relation over the seeds' ``weights.csv``: the ``max_relations`` relations with
    the most queries (most frequent first). ``direction``: ``tail``, ``head`` or ``both`` (the two
    directions averaged, weighted by their query counts)."""
    frames = []
    for run in group.runs:
        table = run.weights
        if table is None:
            raise InputError(run.path / "weights.csv", "missing: figure5 needs MoMoK's weights.csv")
        frames.append(table)
    data = pd.concat(frames, ignore_index=True)
    if direction != "both":
        data = data[data["direction"] == direction]
    value_columns = [c for c in data.columns if c.startswith("alpha_") or _GATE_RE.match(c)]
    if not value_columns:
        raise InputError(group.runs[0].path / "weights.csv", "no alpha_<m> or gate_<m>_<k> columns")
    weighted = data[value_columns].multiply(data["count"], axis=0)
    weighted["count"] = data["count"]
    weighted["relation_name"] = data["relation_name"].astype(str)
    sums = weighted.groupby("relation_name").sum()
    means = sums[value_columns].divide(sums["count"].where(sums["count"] > 0), axis=0)
    means["count"] = sums["count"] / len(group.runs)
    means = means.sort_values(["count"], ascending=False, kind="stable").head(max_relations)
    return means


def _heatmap(ax, matrix: np.ndarray, rows: list[str], cols: list[str], title: str, vmax: float):
    image = ax.imshow(matrix, cmap="viridis", vmin=0.0, vmax=vmax, aspect="auto")
    ax.set_xticks(range(len(cols)), cols)
    ax.set_yticks(range(len(rows)), rows)
    ax.set_title(title)
    ax.grid(False)
    if matrix.size <= 160:
        for (r, c), value in np.ndenumerate(matrix):
            ax.text(c, r, f"{value:.2f}", ha="center", va="center", fontsize=7,
                    color="white" if value < 0.6 * vmax else "black")
    return image


def figure5(runs: list[RunResults], *, max_relations: int = 12, direction: str = "both", variant: str = "full",
            model: str = MOMOK, name_length: int = 22):
    """Heatmaps of α (relations × modalities) and the expert gates (relations × experts, one panel per
    modality) of the full model; ``name_length``: relation names are shortened to this many characters."""
    groups = [g for k, g in group_runs(runs).items()
              if normalize_name(k[1]) == normalize_name(model) and k[2] == variant]
    if not groups:
        raise InputError(None, f"figure5: none of the {len(runs)} runs is a {model}/{variant} run")
    groups.sort(key=lambda g: dataset_order(g.dataset))
    tables = [relation_weights(g, max_relations=max_relations, direction=direction) for g in groups]
    with plt.rc_context(STYLE):
        layouts = []
        for table in tables:
            alpha = [c for c in table.columns if c.startswith("alpha_")]
            gates: dict[str, list[str]] = {}
            for column in table.columns:
                match = _GATE_RE.match(column)
                if match:
                    gates.setdefault(match.group(1), []).append(column)
            layouts.append((alpha, gates))
        ncols = max(1 + len(g) for _, g in layouts)
        nrows_rel = max(len(t) for t in tables)
        fig, axes = plt.subplots(len(groups), ncols, squeeze=False, layout="constrained",
                                 figsize=(2.2 + 2.1 * ncols, 0.32 * nrows_rel * len(groups) + 1.6 * len(groups) + 0.4))
        for i, (group, table, (alpha, gates)) in enumerate(zip(groups, tables, layouts)):
            names = [_shorten(short_relation(r), name_length) for r in table.index]
            panels = [(alpha, _alpha_labels(alpha, list(gates)), f"{group.dataset}: attention α")]
            for modality, columns in gates.items():
                columns = sorted(columns, key=lambda c: int(_GATE_RE.match(c).group(2)))
                panels.append((columns, [str(int(_GATE_RE.match(c).group(2)) + 1) for c in columns],
                               f"gates: {MODALITY_LABELS.get(modality, modality)}"))
            for j in range(ncols):
                ax = axes[i][j]
                if j >= len(panels):
                    ax.set_axis_off()
                    continue
                columns, labels, title = panels[j]
                image = _heatmap(ax, table[columns].to_numpy(dtype=float), names, labels, title, vmax=1.0)
                ax.set_xlabel("modality" if j == 0 else "expert")
                if j > 0:
                    ax.set_yticklabels([])
            fig.colorbar(image, ax=list(axes[i]), fraction=0.02, pad=0.01, label="weight")
        queries = "both directions" if direction == "both" else f"{direction} queries"
        fig.suptitle(f"Figure 5: MuJoD attention and ReMoKE expert gates ({queries}; "
                     f"the {max(len(t) for t in tables)} most frequent relations)", fontsize=11)
        _add_caption(fig, _caption(groups))
    return fig


def _alpha_labels(alpha: list[str], gate_modalities: list[str]) -> list[str]:
    """Modality names of the ``alpha_<m>`` columns. Columns numbered ``alpha_0..`` (a flattened [B, M]
    tensor) follow the model's modality order, which is also the order of its gate columns."""
    suffixes = [c[len("alpha_"):] for c in alpha]
    if all(s.isdigit() for s in suffixes) and len(gate_modalities) == len(suffixes):
        suffixes = [gate_modalities[int(s)] for s in suffixes]
    return [MODALITY_LABELS.get(s, s) for s in suffixes]


def _shorten(name: str, length: int) -> str:
    return name if len(name) <= length else name[: length - 1] + "…"


FIGURES = {"figure3": figure3, "figure4": figure4, "figure5": figure5}
