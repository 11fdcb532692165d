"""Checks that a ``momok`` command rejects bad user input the way every command must: a non-zero exit
code, one line on stderr that names the file or key, and no Python traceback.

    from cli_checks import assert_rejected
    message = assert_rejected(["train", "--config", path, "--out", out], "training.lr", cwd=tmp_path)

The command runs as ``python -m momok.cli`` in a subprocess with this checkout first on PYTHONPATH.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def run_momok(args: list[str | os.PathLike], *, cwd: str | os.PathLike | None = None,
              timeout: float = 120) -> subprocess.CompletedProcess:
    """``momok ARGS`` in a subprocess (text output captured, one thread, this checkout's package)."""
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=os.pathsep.join(
        [str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])]))
    command = [sys.executable, "-m", "momok.cli", *map(str, args)]
    return subprocess.run(command, capture_output=True, text=True, timeout=timeout, cwd=cwd, env=env)


def assert_rejected(args: list[str | os.PathLike], *names: str, cwd: str | os.PathLike | None = None,
                    timeout: float = 120) -> str:
    """Run ``momok ARGS`` and assert it failed cleanly: exit code != 0, no "Traceback" anywhere, and
    stderr is exactly one line containing every string of ``names`` (a file, a key, ``path:line``).
    Returns that line."""
    result = run_momok(args, cwd=cwd, timeout=timeout)
    shown = f"momok {' '.join(map(str, args))}\nstdout: {result.stdout}\nstderr: {result.stderr}"
    assert result.returncode != 0, f"expected a failure\n{shown}"
    assert "Traceback" not in result.stderr + result.stdout, shown
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, f"expected a one-line error\n{shown}"
    for name in names:
        assert name in lines[0], f"{name!r} not named in the error\n{shown}"
    return lines[0]
