"""Atomic file writes: every file ``momok`` writes goes through :func:`write_atomic`.

The new content goes to a temporary file ``.<name>.<random>.tmp`` in the destination folder, which is
flushed, fsynced and renamed over the target (``os.replace``); the folder is fsynced after the rename.
A reader, or a crash at any moment, sees the old file or the new one, never a half-written one, and a
failed write leaves the old file as it was and no temporary file behind (only a process killed
mid-write leaves a ``.*.tmp`` file). Files get the mode a plain ``open()`` gives them under the umask.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO

from momok.errors import InputError

#: Ending of the temporary files of :func:`write_atomic` (``.<name>.<random>.tmp``); a file so named
#: is left only by a process killed mid-write.
TEMP_SUFFIX = ".tmp"


def file_mode() -> int:
    """The mode a new file gets from ``open()`` under the current umask: ``0o666 & ~umask``."""
    try:  # Linux reports the umask without changing it (no window where another thread sees umask 0)
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return 0o666 & ~int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return 0o666 & ~mask


def _fsync_folder(folder: Path) -> None:
    """Make a rename in ``folder`` durable (a no-op where folders cannot be opened or synced)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:  # some file systems refuse fsync on a folder; the rename itself is still atomic
        pass
    finally:
        os.close(fd)


def write_atomic(path: str | Path, write: Callable[[BinaryIO], None]) -> Path:
    """Call ``write(fileobj)`` on a new temporary file and rename it to ``path``; returns ``path``.

    The temporary file is ``.<name>.<random>.tmp`` in ``path``'s folder (created if missing), gets the
    mode a plain ``open()`` would give (``0o666 & ~umask``, not ``mkstemp``'s private 0600), is
    flushed and fsynced, then renamed over ``path`` with ``os.replace``; the folder is fsynced last.
    A reader or a crash sees the old file or the new one, never a half-written one. On any error
    (including an exception raised by ``write``) the temporary file is removed and ``path`` is left
    as it was; an ``OSError`` (no such folder, permission denied, disk full, ``path`` is a folder)
    becomes ``InputError(path, "cannot write it (<reason>)")``, a one-line message for the user.
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=TEMP_SUFFIX, dir=path.parent)
    except FileExistsError as err:  # mkdir: something that is not a folder has the folder's name
        raise InputError(path, f"cannot write it ({path.parent} is not a folder)") from err
    except OSError as err:
        raise InputError(path, f"cannot write it ({err.strerror or err})") from err
    try:
        with os.fdopen(fd, "wb") as handle:
            os.fchmod(handle.fileno(), file_mode())
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException as err:
        Path(tmp).unlink(missing_ok=True)
        if isinstance(err, OSError):
            raise InputError(path, f"cannot write it ({err.strerror or err})") from err
        raise
    _fsync_folder(path.parent)
    return path


def write_bytes_atomic(path: str | Path, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically (:func:`write_atomic`)."""
    return write_atomic(path, lambda f: f.write(data))


def write_text_atomic(path: str | Path, text: str) -> Path:
    """Write UTF-8 ``text`` to ``path`` atomically (line ends as they are in ``text``)."""
    return write_bytes_atomic(path, text.encode("utf-8"))


def write_json_atomic(path: str | Path, obj: Any) -> Path:
    """Write ``obj`` as indented JSON (keys in insertion order, trailing newline) atomically."""
    return write_text_atomic(path, json.dumps(obj, indent=2, allow_nan=True) + "\n")


def main(argv: list[str] | None = None) -> int:
    """``python -m momok.atomic PATH TEXT``: write TEXT to PATH atomically (the workflow's run configs)."""
    import sys

    args = sys.argv[1:] if argv is None else argv
    if len(args) != 2:
        print("usage: python -m momok.atomic PATH TEXT", file=sys.stderr)
        return 2
    try:
        write_text_atomic(args[0], args[1])
    except InputError as err:
        print(f"momok.atomic: error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
