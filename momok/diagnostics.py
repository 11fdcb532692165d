"""``weights.csv``: per-relation means of a model's diagnostics (MoMoK: attention α per modality and the
experts' gates), the data of the paper's Figure 5.

Models expose ``LinkPredictor.diagnostics(heads, relations)``; a model without diagnostics writes no file.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any

import torch

from momok.assembly import AssembledRun, autocast
from momok.atomic import write_text_atomic


def diagnostic_columns(diagnostics: dict[str, Any], prefix: str = "") -> dict[str, torch.Tensor]:
    """Flatten diagnostics to ``[B]`` columns: ``{name: Tensor[B]}`` -> ``name``; ``Tensor[B, k, ...]`` ->
    ``name_0 .. name_{k-1}``; a nested ``{name: {key: tensor}}`` -> ``name_key...``."""
    columns = {}
    for name, value in diagnostics.items():
        name = f"{prefix}{name}"
        if isinstance(value, dict):
            columns.update(diagnostic_columns(value, prefix=f"{name}_"))
            continue
        value = value.detach().float().cpu()
        if value.dim() == 1:
            columns[name] = value
        else:
            flat = value.reshape(value.shape[0], -1)
            for i in range(flat.shape[1]):
                columns[f"{name}_{i}"] = flat[:, i]
    return columns


def relation_weights(run: AssembledRun, triples: torch.Tensor) -> list[dict[str, Any]]:
    """Mean of every diagnostic column per relation and direction over the queries of ``triples``.

    Tail queries ``(h, r)`` are direction ``tail``, head queries ``(t, r + R)`` direction ``head``;
    rows are keyed by the original relation id ``r``. Empty when the model has no diagnostics.
    """
    model, R = run.model, run.dataset.num_relations
    model.eval()
    rows = []
    size = run.config.evaluation.batch_size
    for direction, entities, relations in (("tail", triples[:, 0], triples[:, 1]),
                                           ("head", triples[:, 2], triples[:, 1] + R)):
        sums: dict[str, torch.Tensor] = {}
        counts = torch.zeros(R, dtype=torch.float64)
        for start in range(0, len(triples), size):
            e, r = entities[start:start + size], relations[start:start + size]
            with torch.no_grad(), autocast(run.config, run.device):
                columns = diagnostic_columns(model.diagnostics(e.to(run.device), r.to(run.device)))
            if not columns:
                return []
            base = (r % R).long()
            counts.index_add_(0, base, torch.ones(len(base), dtype=torch.float64))
            for name, values in columns.items():
                sums.setdefault(name, torch.zeros(R, dtype=torch.float64)).index_add_(0, base, values.double())
        for relation in range(R):
            if counts[relation] > 0:
                row = {"relation": relation, "relation_name": run.dataset.relations[relation],
                       "direction": direction, "count": int(counts[relation])}
                row.update({name: float(total[relation] / counts[relation]) for name, total in sums.items()})
                rows.append(row)
    return rows


def write_weights(run: AssembledRun, triples: torch.Tensor, path: Path) -> bool:
    """Write ``weights.csv`` from :func:`relation_weights`; False (nothing written) without diagnostics."""
    rows = relation_weights(run, triples)
    if not rows:
        return False
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(rows[0]), lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    write_text_atomic(path, buffer.getvalue())
    return True
