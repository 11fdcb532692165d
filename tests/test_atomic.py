"""``momok.atomic``: one atomic write for every file momok writes (mode, fsync, failures)."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
import torch

from momok.atomic import file_mode, write_atomic, write_text_atomic
from momok.errors import InputError


@pytest.fixture
def umask():
    """Set the umask for one test and restore it afterwards."""
    old = os.umask(0o022)
    os.umask(old)
    yield lambda mask: os.umask(mask)
    os.umask(old)


@pytest.fixture
def events(monkeypatch):
    """Record ``os.fsync`` (file or folder) and ``os.replace`` calls in order, still doing them."""
    log: list[tuple[str, str]] = []
    fsync, replace = os.fsync, os.replace

    def recording_fsync(fd):
        log.append(("fsync", "folder" if os.path.isdir(f"/proc/self/fd/{fd}") else "file"))
        return fsync(fd)

    def recording_replace(src, dst, **kwargs):
        log.append(("replace", str(dst)))
        return replace(src, dst, **kwargs)

    monkeypatch.setattr(os, "fsync", recording_fsync)
    monkeypatch.setattr(os, "replace", recording_replace)
    return log


@pytest.mark.parametrize("mask, mode", [(0o022, 0o644), (0o027, 0o640), (0o002, 0o664), (0o077, 0o600)])
def test_mode_follows_the_umask(tmp_path, umask, mask, mode):
    umask(mask)
    assert file_mode() == mode
    path = write_text_atomic(tmp_path / "a.txt", "x\n")
    assert path.stat().st_mode & 0o777 == mode
    write_text_atomic(path, "y\n")  # replacing keeps the rule too
    assert path.stat().st_mode & 0o777 == mode


def test_temporary_file_is_recognisable_and_synced_before_the_rename(tmp_path, events):
    seen = []

    def write(handle):
        handle.write(b"new")
        seen.extend(p.name for p in (tmp_path / "sub").iterdir())

    target = tmp_path / "sub" / "out.bin"
    assert write_atomic(target, write) == target
    assert len(seen) == 1 and re.fullmatch(r"\.out\.bin\.[^.]+\.tmp", seen[0]), seen
    assert target.read_bytes() == b"new" and [p.name for p in target.parent.iterdir()] == ["out.bin"]
    assert events == [("fsync", "file"), ("replace", str(target)), ("fsync", "folder")]


def test_failure_mid_write_keeps_the_old_file_and_no_temporary(tmp_path, events):
    target = write_text_atomic(tmp_path / "metrics.json", "old\n")
    events.clear()

    def write(handle):
        handle.write(b"half of the new cont")
        raise RuntimeError("disk on fire")

    with pytest.raises(RuntimeError, match="disk on fire"):
        write_atomic(target, write)
    assert target.read_text() == "old\n"
    assert [p.name for p in tmp_path.iterdir()] == ["metrics.json"]
    assert not any(kind == "replace" for kind, _ in events)


def test_os_errors_become_one_line_input_errors(tmp_path, monkeypatch):
    (tmp_path / "folder").mkdir()
    (tmp_path / "file").write_text("x")
    cases = {tmp_path / "folder": "Is a directory",
             tmp_path / "file" / "a.txt": f"{tmp_path / 'file'} is not a folder",
             tmp_path / "file" / "sub" / "a.txt": "Not a directory"}
    for target, reason in cases.items():
        with pytest.raises(InputError) as err:
            write_text_atomic(target, "y")
        assert str(err.value) == f"{target}: cannot write it ({reason})"

    def no_space(fd):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", no_space)
    with pytest.raises(InputError, match=r"cannot write it \(No space left on device\)"):
        write_text_atomic(tmp_path / "file", "new")
    assert (tmp_path / "file").read_text() == "x" and sorted(p.name for p in tmp_path.iterdir()) == ["file", "folder"]


def _write_each_kind(kind: str, folder: Path) -> None:
    """Write one file the way momok writes files of ``kind``."""
    if kind == "features":
        from momok.features.store import FeatureTable, save_features

        meta = {"modality": "image", "source": "t", "encoder": "t", "weights": "t", "entities_sha256": "0"}
        save_features(folder / "f.safetensors", FeatureTable(torch.ones(3, 2), torch.ones(3, dtype=torch.bool), meta))
    elif kind == "chunks":
        from momok.features.store import run_chunked

        def encode(indices):
            return torch.ones(len(indices), 2), torch.ones(len(indices), dtype=torch.bool)

        run_chunked(folder / "f.safetensors", 3, encode, settings={"a": 1}, chunk_size=2, progress=False)
    elif kind == "table":
        import pandas as pd

        from momok.report.tables import Table, write_table

        write_table(Table("t", "T", pd.DataFrame({"a": [1]}), []), folder / "t")
    elif kind == "figure":
        import matplotlib.pyplot as plt

        from momok.report.figures import save_figure

        save_figure(plt.figure(figsize=(1, 1)), folder / "fig")
    elif kind == "run":
        from momok.atomic import write_json_atomic
        from momok.utils import torch_save_atomic

        torch_save_atomic(folder / "last.pt", {"x": torch.ones(2)})
        write_json_atomic(folder / "metrics.json", {"mrr": 0.5})


@pytest.mark.parametrize("kind", ["features", "chunks", "table", "figure", "run"])
def test_every_writer_fsyncs_before_each_rename(tmp_path, events, kind):
    _write_each_kind(kind, tmp_path)
    renames = [i for i, (name, _) in enumerate(events) if name == "replace"]
    assert renames, events
    for i in renames:
        assert events[i - 1] == ("fsync", "file") and events[i + 1] == ("fsync", "folder"), events
    leftovers = [p for p in tmp_path.rglob("*") if p.name.endswith(".tmp")]
    assert not leftovers
