"""The run folder that ``momok train --out DIR`` writes, what a folder found there holds, and its checkpoints.

Files (names relative to the folder):

* ``config.yaml``: the resolved config with a ``provenance:`` section; written first, so its presence marks
  the folder as a momok run.
* ``history.csv`` (per epoch), ``weights.csv`` (models with diagnostics).
* ``checkpoint/last.pt`` (for ``--resume``) and ``checkpoint/best.pt`` (the best-validation model).
* ``metrics.json``: written last; its presence marks the run finished.
* ``FAILED``: written by ``momok train`` when the run stopped on an error (not when it was interrupted).

Checkpoints hold tensors and plain Python values only and are read with ``torch.load(weights_only=True)``:
a crafted file cannot run code. A file that is truncated or is not such a checkpoint is an
:class:`~momok.errors.InputError` naming it.
"""

from __future__ import annotations

import pickle
import shutil
import zipfile
from enum import Enum
from pathlib import Path
from typing import Any

import torch
import yaml

from momok.atomic import TEMP_SUFFIX
from momok.errors import InputError, first_line
from momok.utils import torch_save_atomic
from momok.yamlio import load_yaml, parse_yaml

CONFIG_FILE = "config.yaml"
METRICS_FILE = "metrics.json"
HISTORY_FILE = "history.csv"
WEIGHTS_FILE = "weights.csv"
FAILED_FILE = "FAILED"
CHECKPOINT_DIR = "checkpoint"
BEST_CHECKPOINT = Path(CHECKPOINT_DIR) / "best.pt"
LAST_CHECKPOINT = Path(CHECKPOINT_DIR) / "last.pt"
#: everything momok writes into a run folder (what :func:`clear_run` removes)
RUN_ENTRIES = (CONFIG_FILE, METRICS_FILE, HISTORY_FILE, WEIGHTS_FILE, FAILED_FILE, CHECKPOINT_DIR)


class RunState(Enum):
    """What a ``--out`` folder holds."""

    NEW = "new"  # absent or empty
    STARTED = "started"  # config.yaml only: stopped before its first checkpoint
    INTERRUPTED = "interrupted"  # checkpoint/last.pt, no metrics.json, no FAILED
    FAILED = "failed"  # FAILED: the run stopped on an error
    FINISHED = "finished"  # metrics.json


def run_state(out: Path) -> RunState:
    """The state of the folder ``out``; an :class:`InputError` when it is a file, or a folder with other
    contents than a momok run (so that nothing of the user's is overwritten)."""
    if out.exists() and not out.is_dir():
        raise InputError(out, "--out must be a folder, but this is a file")
    if not out.exists():
        return RunState.NEW
    entries = [p for p in out.iterdir() if not is_temporary(p)]
    if not entries:
        return RunState.NEW
    if not _is_momok_config(out / CONFIG_FILE):
        raise InputError(out, "this folder is not empty and holds no momok run (no config.yaml with a provenance "
                              "section); choose a new or empty folder for --out")
    if (out / METRICS_FILE).exists():
        return RunState.FINISHED
    if (out / FAILED_FILE).exists():
        return RunState.FAILED
    if (out / LAST_CHECKPOINT).exists():
        return RunState.INTERRUPTED
    return RunState.STARTED


def _is_momok_config(path: Path) -> bool:
    try:
        saved = parse_yaml(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        return False
    return isinstance(saved, dict) and isinstance(saved.get("provenance"), dict)


def saved_config(out: Path) -> dict[str, Any]:
    """The resolved config a run folder was started with (``config.yaml`` without ``provenance``)."""
    saved = load_yaml(out / CONFIG_FILE)
    saved.pop("provenance", None)
    return saved


def is_temporary(path: Path) -> bool:
    """A temporary file of an atomic write (``.<name>.<random>.tmp``), left behind only by a killed process."""
    return path.name.startswith(".") and path.name.endswith(TEMP_SUFFIX)


def remove_temporaries(out: Path) -> list[Path]:
    """Remove the temporary files that a killed run left in ``out`` and ``out/checkpoint``; return them."""
    removed = []
    for folder in (out, out / CHECKPOINT_DIR):
        if folder.is_dir():
            for path in folder.iterdir():
                if path.is_file() and is_temporary(path):
                    path.unlink()
                    removed.append(path)
    return removed


def clear_run(out: Path) -> None:
    """Remove what momok wrote into the run folder ``out`` (only its own files), to start it afresh."""
    remove_temporaries(out)
    for name in RUN_ENTRIES:
        path = out / name
        if path.is_dir():
            shutil.rmtree(path)
        elif path.exists():
            path.unlink()


def save_checkpoint(path: Path, content: dict[str, Any]) -> None:
    """Write a checkpoint atomically (tensors and plain values only, so that it loads with weights_only)."""
    torch_save_atomic(path, content)


def load_checkpoint(path: Path, device: torch.device | str = "cpu") -> dict[str, Any]:
    """Read a checkpoint with ``torch.load(weights_only=True)``; an :class:`InputError` for a missing,
    truncated or foreign file, or one that holds Python objects beyond tensors and plain values."""
    if not path.is_file():
        raise InputError(path, "checkpoint not found")
    try:
        content = torch.load(path, map_location=device, weights_only=True)
    except pickle.UnpicklingError as err:
        raise InputError(path, "refused: the file holds Python objects beyond tensors and plain values, which "
                               f"momok never writes ({first_line(err)})") from None
    except (RuntimeError, EOFError, OSError, ValueError, zipfile.BadZipFile) as err:
        raise InputError(path, f"truncated or not a momok checkpoint ({first_line(err)}); delete the run "
                               "folder to start it again") from None
    if not isinstance(content, dict) or "model" not in content:
        raise InputError(path, "not a momok checkpoint (no model state)")
    return content
