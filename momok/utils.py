"""Small helpers shared by the commands: ``torch.save`` as an atomic write, seeding, RNG state, device
choice, the malloc setting, provenance.

The atomic writes themselves live in :mod:`momok.atomic` (no torch import, so light commands stay fast);
:func:`torch_save_atomic` adds ``torch.save`` to them.
"""

from __future__ import annotations

import os
import random
import subprocess
from pathlib import Path
from typing import Any

import numpy as np
import torch

from momok.atomic import write_atomic
from momok.errors import ConfigError


# ---------------------------------------------------------------------------------------------
# Atomic writes


def torch_save_atomic(path: str | Path, obj: Any) -> Path:
    """``torch.save(obj)`` to ``path`` atomically."""
    return write_atomic(path, lambda f: torch.save(obj, f))


# ---------------------------------------------------------------------------------------------
# Randomness


def seed_everything(seed: int) -> None:
    """Seed Python's ``random``, NumPy's global RNG and torch (CPU and every CUDA device)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def rng_state() -> dict[str, Any]:
    """The state of every global RNG (Python, NumPy, torch CPU, torch CUDA when available), as tensors and
    plain Python values only, so that a checkpoint holding it loads with ``torch.load(weights_only=True)``."""
    name, keys, position, has_gauss, cached_gaussian = np.random.get_state()
    state = {"python": random.getstate(),
             "numpy": [name, torch.from_numpy(keys.astype(np.int64)), int(position), int(has_gauss),
                       float(cached_gaussian)],
             "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore what :func:`rng_state` returned."""
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    name, keys, position, has_gauss, cached_gaussian = state["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), position, has_gauss, cached_gaussian))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


# ---------------------------------------------------------------------------------------------
# Device and provenance


def select_device(name: str) -> torch.device:
    """``"auto"`` -> CUDA when available, else CPU; ``"cpu"``; ``"cuda"`` (an error when there is none)."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("training.device: 'cuda' requested but torch sees no CUDA device")
    if name not in ("cpu", "cuda"):
        raise ConfigError(f"training.device: expected auto, cpu or cuda, got {name!r}")
    return torch.device(name)


#: glibc ``mallopt`` parameters (malloc.h)
_M_TRIM_THRESHOLD, _M_MMAP_MAX = -1, -4


def reuse_freed_memory() -> bool:
    """Make glibc's malloc keep freed memory for reuse instead of handing it back to the kernel.

    glibc serves every allocation above its mmap threshold (at most 32 MiB; a ``[1024, 15000]`` float
    score matrix is 59 MiB) with a fresh ``mmap`` and unmaps it when it is freed, so each such temporary
    pays one page fault per 4 KiB when first written (the measured cost on a score matrix and on a MoMoK
    training step is in ``benchmarks/README.md``). ``M_MMAP_MAX = 0`` serves large
    blocks from the heap and ``M_TRIM_THRESHOLD = 2 GiB`` keeps up to 2 GiB of freed heap for the next
    step. Called by ``momok`` at start; ``MOMOK_SYSTEM_MALLOC=1`` in the environment skips it. Returns
    whether the settings took effect (False outside glibc).
    """
    if os.environ.get("MOMOK_SYSTEM_MALLOC") == "1":
        return False
    try:
        import ctypes

        libc = ctypes.CDLL(None)
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    return bool(mallopt(_M_MMAP_MAX, 0)) and bool(mallopt(_M_TRIM_THRESHOLD, 2**31 - 1))


def git_commit(path: str | Path | None = None) -> str | None:
    """The commit checked out in the git work tree holding ``path`` (default: this package), with a
    ``-dirty`` suffix when tracked files differ from it; ``None`` outside git or without git."""
    cwd = Path(path) if path is not None else Path(__file__).resolve().parent
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True,
                                timeout=10, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=cwd,
                               capture_output=True, text=True, timeout=30, check=True).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return commit + ("-dirty" if dirty else "") if commit else None
