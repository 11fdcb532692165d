"""The one feature file format, and the resumable chunked extraction every encoder shares.

A feature file is a safetensors file holding

* ``features``: float32 ``[num_entities, dim]``, rows in entity-id order;
* ``mask``: uint8 ``[num_entities]``, 1 = the entity has this modality (0 = its row is a documented filler);
* string metadata with at least ``modality``, ``source``, ``encoder``, ``weights``, ``num_entities``,
  ``entities_sha256`` (:func:`entity_list_digest`), ``created``, ``momok_version``, ``torch_version``
  and, for text, ``text_source``.

:func:`save_features` writes atomically (:mod:`momok.atomic`: temporary file, fsync, rename) and sets
``num_entities``, ``created``, ``momok_version`` and ``torch_version``; :func:`load_features` checks
everything it can and raises :class:`~momok.errors.InputError` naming the file.

Extraction (image and text alike) goes through :func:`extract_to_file` and :func:`run_chunked`: entities are processed in chunks of
a fixed size, each finished chunk is written atomically to ``<out>.partial/chunk-NNNNNN.safetensors``,
so an interrupted run continues at the first unfinished chunk and never recomputes a finished one.
Chunk boundaries (and therefore batches) do not depend on where a run stopped, so a resumed run gives
bit-identical output to an uninterrupted one. A finished file records the settings that made it
(``settings``, ``settings_sha256``), so rerunning the same command does nothing.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import math
import shutil
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch

from momok.atomic import write_bytes_atomic, write_text_atomic
from momok.errors import InputError, MomokError

REQUIRED_METADATA = ("modality", "source", "encoder", "weights", "entities_sha256")
"""Keys the caller must provide; ``save_features`` adds ``num_entities``, ``created`` and versions."""

MISSING_RULES = ("mean", "zeros")
"""How rows of entities without the modality are filled: the mean of present rows, or zeros."""


@dataclass
class FeatureTable:
    """Features of one modality for every entity of a dataset, in entity-id order."""

    features: torch.Tensor  # float32 [num_entities, dim]
    mask: torch.Tensor  # bool [num_entities]; True = the entity has this modality
    metadata: dict[str, str] = field(default_factory=dict)

    @property
    def num_entities(self) -> int:
        return int(self.features.shape[0])

    @property
    def dim(self) -> int:
        return int(self.features.shape[1])


def entity_list_digest(entities: Sequence[str]) -> str:
    """sha256 (hex) of the entity names joined by ``"\\n"``, UTF-8 encoded."""
    return hashlib.sha256("\n".join(entities).encode("utf-8")).hexdigest()


def _atomic_save(path: Path, tensors: dict[str, torch.Tensor], metadata: dict[str, str]) -> None:
    """Write a safetensors file through :func:`momok.atomic.write_bytes_atomic`."""
    from safetensors.torch import save

    write_bytes_atomic(path, save({k: v.contiguous() for k, v in tensors.items()}, metadata=metadata))


def save_features(path: str | Path, table: FeatureTable) -> None:
    """Write ``table`` to ``path`` atomically (:func:`momok.atomic.write_atomic`).

    Raises ``ValueError`` on a malformed table (wrong shapes, NaN/inf, missing metadata keys,
    non-string metadata): those are programming errors, not bad user input.
    """
    from momok import __version__

    features, mask = table.features, table.mask
    if features.ndim != 2:
        raise ValueError(f"features must be 2-D [num_entities, dim], got shape {tuple(features.shape)}")
    if mask.shape != (features.shape[0],):
        raise ValueError(f"mask shape {tuple(mask.shape)} does not match {features.shape[0]} rows")
    features = features.detach().to("cpu", torch.float32)
    if not torch.isfinite(features).all():
        raise ValueError("features contain NaN or inf")
    missing = [k for k in REQUIRED_METADATA if k not in table.metadata]
    if table.metadata.get("modality") == "text" and "text_source" not in table.metadata:
        missing.append("text_source")
    if missing:
        raise ValueError(f"metadata lacks {', '.join(missing)}")
    bad = [k for k, v in table.metadata.items() if not isinstance(k, str) or not isinstance(v, str)]
    if bad:
        raise ValueError(f"metadata values must be strings: {bad}")
    metadata = dict(table.metadata)
    metadata["num_entities"] = str(features.shape[0])
    metadata["created"] = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
    metadata["momok_version"] = __version__
    metadata["torch_version"] = torch.__version__
    _atomic_save(Path(path), {"features": features, "mask": mask.to("cpu", torch.uint8)}, metadata)


def load_features(path: str | Path, *, entities: Sequence[str] | None = None) -> FeatureTable:
    """Read a feature file and check it.

    Checks: the file exists and is safetensors; ``features`` is 2-D floating point; ``mask`` has one
    0/1 value per row; the row count equals the ``num_entities`` metadata; no NaN or inf. With
    ``entities`` given, also the row count equals ``len(entities)`` and ``entities_sha256`` matches
    :func:`entity_list_digest` of them. Every failure is an :class:`InputError` naming ``path``.
    """
    from safetensors import safe_open

    path = Path(path)
    if not path.is_file():
        raise InputError(path, "feature file not found")
    try:
        with safe_open(str(path), framework="pt") as f:
            metadata = dict(f.metadata() or {})
            keys = set(f.keys())
            missing = {"features", "mask"} - keys
            if missing:
                raise InputError(path, f"not a momok feature file: no tensor {', '.join(sorted(missing))}")
            features = f.get_tensor("features")
            mask = f.get_tensor("mask")
    except InputError:
        raise
    except Exception as err:  # safetensors raises its own error types for corrupt headers
        raise InputError(path, f"cannot read safetensors file ({err})") from err
    if features.ndim != 2 or not features.is_floating_point():
        raise InputError(path, f"features must be a 2-D float tensor, got {features.dtype} {tuple(features.shape)}")
    n = features.shape[0]
    if mask.shape != (n,):
        raise InputError(path, f"mask has shape {tuple(mask.shape)}, expected ({n},) (one value per row)")
    if mask.dtype == torch.bool:
        mask = mask.to(torch.uint8)
    if ((mask != 0) & (mask != 1)).any():
        raise InputError(path, "mask values must be 0 or 1")
    if "num_entities" in metadata and metadata["num_entities"] != str(n):
        raise InputError(path, f"has {n} rows but its metadata says num_entities={metadata['num_entities']}")
    bad = ~torch.isfinite(features)
    if bad.any():
        rows = bad.any(dim=1).nonzero().flatten()
        raise InputError(path, f"features contain NaN or inf in {len(rows)} rows (first: row {int(rows[0])})")
    if entities is not None:
        if n != len(entities):
            raise InputError(path, f"has {n} rows but the dataset has {len(entities)} entities")
        digest = entity_list_digest(entities)
        if metadata.get("entities_sha256") != digest:
            raise InputError(
                path,
                f"entity list digest {metadata.get('entities_sha256', '(none)')[:12]} does not match the "
                f"dataset's {digest[:12]}: the features were made for another entity list or order",
            )
    return FeatureTable(features=features.to(torch.float32), mask=mask.bool(), metadata=metadata)


def fill_missing(features: torch.Tensor, present: torch.Tensor, rule: str) -> torch.Tensor:
    """Rows of absent entities replaced by the mean of the present rows (``mean``) or by zeros (``zeros``).

    With no present entity at all both rules give zeros.
    """
    if rule not in MISSING_RULES:
        raise ValueError(f"unknown missing-row rule {rule!r}; choose one of {MISSING_RULES}")
    out = features.clone()
    if rule == "mean" and present.any():
        out[~present] = features[present].mean(dim=0)
    else:
        out[~present] = 0.0
    return out


def settings_digest(settings: dict) -> str:
    """sha256 of a JSON-serialisable settings dict (key order does not matter)."""
    return hashlib.sha256(json.dumps(settings, sort_keys=True).encode("utf-8")).hexdigest()


def is_up_to_date(out: str | Path, entities: Sequence[str], settings: dict) -> bool:
    """True when ``out`` is a valid feature file for ``entities`` written with exactly ``settings``."""
    out = Path(out)
    if not out.is_file():
        return False
    try:
        table = load_features(out, entities=entities)
    except InputError:
        return False
    return table.metadata.get("settings_sha256") == settings_digest(settings)


def partial_dir(out: str | Path) -> Path:
    """The folder holding the finished chunks of an unfinished extraction into ``out``."""
    out = Path(out)
    return out.with_name(out.name + ".partial")


EncodeChunk = Callable[[list[int]], tuple[torch.Tensor, torch.Tensor]]
"""Given entity indices, return (vectors float32 [k, dim], present bool [k]); absent rows are ignored."""


def run_chunked(
    out: str | Path,
    num_entities: int,
    encode_chunk: EncodeChunk,
    *,
    settings: dict,
    chunk_size: int,
    desc: str = "entities",
    progress: bool = True,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Encode every entity chunk by chunk, keeping finished chunks in :func:`partial_dir` ``(out)``.

    ``settings`` (JSON-serialisable: encoder, weights, options, a digest of the inputs) is stored in
    the partial folder; resuming with different settings is an :class:`InputError` (delete the folder
    or rerun with the same options). Returns the concatenated ``(features [N, dim], present [N])``.
    The caller writes the final file and then calls :func:`finish_chunked` to remove the partial folder.
    """
    from safetensors.torch import load_file
    from tqdm import tqdm

    if chunk_size < 1:
        raise ValueError("chunk_size must be at least 1")
    part = partial_dir(out)
    state_path = part / "settings.json"
    state = {"settings": settings, "num_entities": num_entities, "chunk_size": chunk_size}
    if state_path.is_file():
        try:
            previous = json.loads(state_path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as err:
            raise InputError(state_path, f"unreadable partial-progress state ({err}); delete {part}") from err
        if previous != state:
            changed = sorted(
                k for k in set(previous.get("settings", {})) | set(settings)
                if previous.get("settings", {}).get(k) != settings.get(k)
            ) or ["num_entities/chunk_size"]
            raise InputError(
                state_path,
                f"an unfinished run with different settings ({', '.join(changed)}) is here; "
                f"rerun with the same options to resume it, or delete {part} to start over",
            )
    else:
        write_text_atomic(state_path, json.dumps(state, sort_keys=True, indent=1))

    num_chunks = math.ceil(num_entities / chunk_size)
    chunk_paths = [part / f"chunk-{i:06d}.safetensors" for i in range(num_chunks)]
    done = sum(min(chunk_size, num_entities - i * chunk_size) for i, p in enumerate(chunk_paths) if p.is_file())
    vectors: list[torch.Tensor] = []
    presents: list[torch.Tensor] = []
    with tqdm(total=num_entities, initial=done, desc=desc, unit="entity", disable=not progress) as bar:
        for i, chunk_path in enumerate(chunk_paths):
            indices = list(range(i * chunk_size, min((i + 1) * chunk_size, num_entities)))
            if chunk_path.is_file():
                try:
                    saved = load_file(str(chunk_path))
                    vec, present = saved["features"], saved["present"].bool()
                except Exception as err:
                    raise InputError(chunk_path, f"unreadable partial chunk ({err}); delete it to recompute") from err
                if vec.shape[0] != len(indices) or present.shape != (len(indices),):
                    raise InputError(chunk_path, f"partial chunk has {vec.shape[0]} rows, expected {len(indices)}")
            else:
                vec, present = encode_chunk(indices)
                vec = vec.detach().to("cpu", torch.float32)
                present = present.to("cpu", torch.bool)
                if vec.ndim != 2 or vec.shape[0] != len(indices) or present.shape != (len(indices),):
                    raise ValueError(f"encoder returned shapes {tuple(vec.shape)}, {tuple(present.shape)}")
                vec = torch.where(present[:, None], vec, torch.zeros_like(vec))
                _atomic_save(chunk_path, {"features": vec, "present": present.to(torch.uint8)}, {})
                bar.update(len(indices))
            vectors.append(vec)
            presents.append(present)
    dims = {v.shape[1] for v in vectors}
    if len(dims) > 1:
        raise InputError(part, f"partial chunks have different widths {sorted(dims)}; delete {part}")
    if not vectors:
        return torch.zeros(0, 0), torch.zeros(0, dtype=torch.bool)
    return torch.cat(vectors), torch.cat(presents)


def finish_chunked(out: str | Path) -> None:
    """Remove the partial-progress folder of ``out`` (call after the final file is written)."""
    part = partial_dir(out)
    if part.exists():
        shutil.rmtree(part)


def extract_to_file(out: str | Path, entities: Sequence[str], encode_chunk: EncodeChunk, *, settings: dict,
                    missing: str, metadata: dict[str, str], chunk_size: int, force: bool = False,
                    progress: bool = True) -> FeatureTable | None:
    """The whole extraction shared by image and text: skip when up to date, else encode resumably
    (:func:`run_chunked`), fill absent rows by the ``missing`` rule, write ``out`` atomically, remove
    the partial folder. ``settings`` (what determines the chunks) and the ``missing`` rule are stored in
    the metadata (``settings``, ``settings_sha256``), which is how a rerun knows ``out`` is up to date.
    Returns the table written, or ``None`` when ``out`` was already up to date (and ``force`` is false).
    """
    if missing not in MISSING_RULES:
        raise MomokError(f"--missing must be one of {MISSING_RULES}, got {missing!r}")
    final_settings = dict(settings, missing=missing)
    if not force and is_up_to_date(out, entities, final_settings):
        print(f"momok features: {out} is up to date (use --force to recompute)", file=sys.stderr)
        return None
    vectors, present = run_chunked(out, len(entities), encode_chunk, settings=settings, chunk_size=chunk_size,
                                   desc=f"{metadata.get('modality', '')} features".strip(), progress=progress)
    metadata = dict(metadata)
    metadata.update({
        "missing_rule": missing,
        "present": str(int(present.sum())),
        "settings": json.dumps(final_settings, sort_keys=True),
        "settings_sha256": settings_digest(final_settings),
    })
    table = FeatureTable(fill_missing(vectors, present, missing), present, metadata)
    save_features(out, table)
    finish_chunked(out)
    return table


def base_metadata(modality: str, source: str, encoder: str, weights: str, entities: Sequence[str]) -> dict[str, str]:
    """The metadata every feature file needs, ready for extra keys."""
    if not entities:
        raise MomokError("the dataset has no entities")
    return {
        "modality": modality,
        "source": source,
        "encoder": encoder,
        "weights": weights,
        "entities_sha256": entity_list_digest(entities),
    }
