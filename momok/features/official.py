"""``momok features import``: the authors' pre-extracted feature bundles into the momok feature format.

The official MoMoK code loads ``img_features.pth`` / ``text_features.pth`` (published on cloud drives):
one row per entity in ``entity2id`` order, as a torch tensor or a numpy array, sometimes inside a dict
or a list of per-entity vectors. This module reads ``.pth``/``.pt`` (``torch.load(weights_only=True)``,
with numpy arrays allowed; arbitrary pickled objects only with ``trust_pickle=True``), ``.npy``
(``allow_pickle=False``) and ``.npz``.

Mask: the bundles have no mask; the authors filled entities without images/text with the mean of the
other rows or with random vectors, so a filler cannot be told from a real row in general. The default
therefore marks every entity present (``zero_rows="present"``) and records ``source=official-bundle``;
``zero_rows="missing"`` marks rows that are exactly zero as missing (for bundles known to zero-fill).
The number of all-zero rows is recorded in the metadata either way.
"""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import torch

from momok.checksums import file_sha256
from momok.errors import InputError, MomokError, first_line
from momok.features import store

ZERO_ROW_RULES = ("present", "missing")


def _numpy_safe_globals() -> list:
    """The numpy classes a tensor-only unpickler must know to rebuild plain numpy arrays."""
    try:
        from numpy._core.multiarray import _reconstruct
    except ImportError:  # numpy < 2
        from numpy.core.multiarray import _reconstruct
    dtypes = [getattr(np.dtypes, n) for n in dir(np.dtypes) if n.endswith("DType")] if hasattr(np, "dtypes") else []
    return [_reconstruct, np.ndarray, np.dtype, *dtypes]


def read_bundle_object(path: str | Path, *, trust_pickle: bool = False):
    """The Python object stored in a bundle file (tensor, array, dict, list)."""
    path = Path(path)
    if not path.is_file():
        raise InputError(path, "bundle file not found")
    suffix = path.suffix.lower()
    try:
        if suffix == ".npy":
            return np.load(path, allow_pickle=False)
        if suffix == ".npz":
            with np.load(path, allow_pickle=False) as archive:
                return {k: archive[k] for k in archive.files}
        if trust_pickle:
            return torch.load(path, map_location="cpu", weights_only=False)
        with torch.serialization.safe_globals(_numpy_safe_globals()):
            return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:
        hint = ("; it holds Python objects beyond tensors and arrays: pass --trust-pickle only if you trust "
                "its source" if isinstance(err, pickle.UnpicklingError) and not trust_pickle else "")
        raise InputError(path, f"cannot read bundle ({first_line(err)}){hint}") from err


def _as_matrix(obj) -> torch.Tensor | None:
    if isinstance(obj, torch.Tensor):
        return obj.detach()
    if isinstance(obj, np.ndarray) and obj.dtype.kind in "fiu":
        return torch.from_numpy(np.ascontiguousarray(obj))
    if isinstance(obj, (list, tuple)) and obj and all(isinstance(v, (torch.Tensor, np.ndarray)) for v in obj):
        rows = [_as_matrix(v) for v in obj]
        if all(r is not None and r.ndim == 1 for r in rows) and len({r.shape for r in rows}) == 1:
            return torch.stack([r.to(torch.float32) for r in rows])
    return None


def select_matrix(obj, path: Path, key: str | None = None) -> tuple[torch.Tensor, str]:
    """The feature matrix inside a bundle object, and where it was found (``""`` or the dict key)."""
    if isinstance(obj, dict):
        if key is not None:
            if key not in obj:
                raise InputError(path, f"no key {key!r}; keys: {', '.join(map(str, obj))}")
            matrix = _as_matrix(obj[key])
            if matrix is None:
                raise InputError(path, f"entry {key!r} is a {type(obj[key]).__name__}, not a tensor or array")
            return matrix, key
        found = {str(k): m for k, v in obj.items() if (m := _as_matrix(v)) is not None and m.ndim == 2}
        if len(found) != 1:
            raise InputError(path, f"expected exactly one 2-D tensor/array in the dict, found "
                                   f"{len(found)} ({', '.join(found) or 'none'}); pass --key NAME")
        return next(iter(found.values())), next(iter(found))
    if key is not None:
        raise InputError(path, f"--key {key!r} given but the bundle holds a {type(obj).__name__}, not a dict")
    matrix = _as_matrix(obj)
    if matrix is None:
        raise InputError(path, f"holds a {type(obj).__name__}; expected a tensor, an array, a dict or a list of vectors")
    return matrix, ""


def import_bundle(bundle: str | Path, modality: str, dataset: str | Path, out: str | Path, *, key: str | None = None,
                  zero_rows: str = "present", encoder: str = "unknown (authors' bundle)",
                  trust_pickle: bool = False) -> store.FeatureTable:
    """Convert ``bundle`` (rows in ``dataset``'s entity2id order) into the feature file ``out``.

    ``key``: the dict entry holding the matrix (needed only when a dict holds several). ``zero_rows``:
    ``present`` (default) or ``missing``, see the module docstring. ``encoder``: free text recorded as the
    ``encoder`` metadata (the bundles do not say which encoder made them).
    """
    from momok.data.datasets import read_id_map

    if modality not in ("image", "text"):
        raise MomokError(f"--modality must be image or text, got {modality!r}")
    if zero_rows not in ZERO_ROW_RULES:
        raise MomokError(f"--zero-rows must be one of {ZERO_ROW_RULES}")
    bundle = Path(bundle)
    entities = read_id_map(Path(dataset) / "entity2id.txt")
    matrix, where = select_matrix(read_bundle_object(bundle, trust_pickle=trust_pickle), bundle, key)
    if matrix.ndim != 2:
        raise InputError(bundle, f"expected a 2-D [num_entities, dim] matrix{f' at {where!r}' if where else ''}, "
                                 f"got shape {tuple(matrix.shape)}")
    if matrix.shape[0] != len(entities):
        raise InputError(bundle, f"has {matrix.shape[0]} rows but {dataset}/entity2id.txt lists {len(entities)} "
                                 f"entities (rows must follow entity2id order)")
    features = matrix.to(torch.float32)
    bad = ~torch.isfinite(features).all(dim=1)
    if bad.any():
        raise InputError(bundle, f"{int(bad.sum())} rows contain NaN or inf (first: row {int(bad.nonzero()[0])})")
    zero = (features == 0).all(dim=1)
    mask = ~zero if zero_rows == "missing" else torch.ones(len(entities), dtype=torch.bool)
    digest = file_sha256(bundle)
    metadata = store.base_metadata(modality, "official-bundle", encoder, f"bundle:{bundle.name} sha256:{digest[:16]}",
                                   entities)
    metadata.update({"bundle_key": where, "zero_rows": str(int(zero.sum())), "zero_rows_rule": zero_rows,
                     "present": str(int(mask.sum()))})
    if modality == "text":
        metadata["text_source"] = "official-bundle"
    table = store.FeatureTable(features, mask, metadata)
    store.save_features(out, table)
    return table
