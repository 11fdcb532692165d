"""``momok fetch DATASET --dest DIR [--mirror DIR] [--base-url URL] [--force]``.

Gets a benchmark's five files (``train.txt valid.txt test.txt entity2id.txt relation2id.txt``) from
their public upstream, or copies them from a local mirror folder, and verifies each against the
sha256 listed in ``momok/data/sources.yaml``. Every file is written to a temporary file in the
destination folder (:func:`momok.atomic.write_atomic`) and renamed into place only after its checksum
verifies, so an interrupted or corrupt transfer never leaves a final file behind. Files already present
are checked: those with the right checksum are skipped (a fetch is resumed by running it again), any
other is removed before it is fetched again, and the log says so; after a failed ``--force`` fetch a
file present is kept only if its checksum is right. No file with a wrong checksum is ever left.
"""

from __future__ import annotations

import argparse
import hashlib
import http.client
import math
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import IO

from momok.atomic import write_atomic
from momok.checksums import file_sha256
from momok.errors import ConfigError, InputError, MomokError
from momok.yamlio import load_yaml

DEFAULT_SOURCES = Path(__file__).with_name("sources.yaml")
CHUNK = 1 << 20


def load_sources(path: str | Path = DEFAULT_SOURCES) -> dict:
    """Read and check a sources file: ``{"base_url": str, "datasets": {name: {"upstream", "files"}}}``."""
    path = Path(path)
    data = load_yaml(path)
    if not isinstance(data, dict) or not isinstance(data.get("base_url"), str) \
            or not isinstance(data.get("datasets"), dict) or not data["datasets"]:
        raise ConfigError(f"{path}: expected the keys 'base_url' (a URL) and 'datasets' (a mapping)")
    for name, entry in data["datasets"].items():
        if not isinstance(entry, dict) or not isinstance(entry.get("upstream"), str) \
                or not isinstance(entry.get("files"), dict) or not entry["files"]:
            raise ConfigError(f"{path}: datasets.{name}: expected 'upstream' (a folder name) and 'files' "
                              f"(file name -> sha256)")
        for file, digest in entry["files"].items():
            if not (isinstance(digest, str) and len(digest) == 64
                    and all(c in "0123456789abcdef" for c in digest)):
                raise ConfigError(f"{path}: datasets.{name}.files.{file}: {digest!r} is not a sha256 "
                                  f"(64 lowercase hex digits)")
    return data


def install_stream(target: Path, expected: str | None, open_source: Callable[[], IO[bytes]], source: str) -> int:
    """Copy a stream to ``target`` through :func:`momok.atomic.write_atomic`, keeping the copy only if
    its sha256 is ``expected`` (``expected=None`` skips the check: mirror side files).

    Returns the number of bytes written. A failed or wrong transfer leaves ``target`` as it was.
    """
    size = 0

    def copy(handle: IO[bytes]) -> None:
        nonlocal size
        digest = hashlib.sha256()
        with open_source() as stream:
            while True:
                try:
                    chunk = stream.read(CHUNK)
                except (OSError, http.client.HTTPException) as err:
                    raise MomokError(f"{source}: transfer broke off after {size:,} bytes ({err})") from None
                if not chunk:
                    break
                handle.write(chunk)
                digest.update(chunk)
                size += len(chunk)
            missing = getattr(stream, "length", None)  # an HTTP response: bytes announced but not received
            if missing:
                raise MomokError(f"{source}: transfer broke off after {size:,} of {size + missing:,} bytes")
        actual = digest.hexdigest()
        if expected is not None and actual != expected:
            raise InputError(target, f"sha256 mismatch for {source}: expected {expected}, got {actual} "
                                     f"({size} bytes); the file was not kept")

    write_atomic(target, copy)
    return size


def _open_file(path: Path) -> Callable[[], IO[bytes]]:
    def opener() -> IO[bytes]:
        try:
            return open(path, "rb")
        except OSError as err:
            raise InputError(path, f"cannot read the mirror file ({err.strerror})") from None
    return opener


def _open_url(url: str, timeout: float) -> Callable[[], IO[bytes]]:
    def opener() -> IO[bytes]:
        try:
            return urllib.request.urlopen(url, timeout=timeout)
        except urllib.error.HTTPError as err:
            raise MomokError(f"{url}: HTTP {err.code} {err.reason}") from None
        except (urllib.error.URLError, OSError) as err:
            reason = getattr(err, "reason", err)
            raise MomokError(f"{url}: cannot download ({reason})") from None
        except ValueError as err:  # urllib's word for a URL it cannot parse
            raise MomokError(f"{url}: not a URL that can be downloaded ({err}); check --base-url") from None
    return opener


def fetch_dataset(name: str, dest: str | Path, *, mirror: str | Path | None = None, base_url: str | None = None,
                  force: bool = False, sources: str | Path = DEFAULT_SOURCES, timeout: float = 60.0,
                  log: Callable[[str], None] = print) -> Path:
    """Put the files of dataset ``name`` into the folder ``dest`` and verify them; returns ``dest``.

    mirror: a folder holding ``<name>/<file>`` (e.g. an offline copy of the benchmarks); files are copied from
        it instead of downloaded, and every other file under ``<mirror>/<name>/`` (side data such as
        ``MKG-W/entity_labels_partial.tsv`` or ``DB15K/mmkb/``) is copied too, unverified, when present.
    base_url: overrides the sources file's ``base_url``; a file's URL is ``<base_url>/<upstream>/<file>``.
    force: fetch every file again even if it is present with the right checksum.
    sources: the YAML file listing datasets, upstream folders and sha256 sums.
    timeout: seconds to wait for the server before a download fails.
    log: receives one progress line per file.
    """
    table = load_sources(sources)
    if name not in table["datasets"]:
        raise ConfigError(f"unknown dataset {name!r}; {sources} lists {', '.join(table['datasets'])}")
    if not (math.isfinite(timeout) and timeout > 0):
        raise ConfigError(f"--timeout: must be a number of seconds > 0, got {timeout}")
    entry = table["datasets"][name]
    dest = Path(dest)
    if dest.exists() and not dest.is_dir():
        raise InputError(dest, "--dest is a file, expected a folder")
    dest.mkdir(parents=True, exist_ok=True)
    base = (base_url or table["base_url"]).rstrip("/")
    if mirror is not None:
        folder = Path(mirror) / name
        if not folder.is_dir():
            raise InputError(folder, f"the mirror has no {name} folder")

    for file, expected in entry["files"].items():
        target = dest / file
        label = f"{name}/{file}"
        replaced = ""
        if target.exists() and not target.is_file():
            raise InputError(target, "exists and is not a file; move it away and fetch again")
        if target.exists() and not force:
            actual = file_sha256(target)
            if actual == expected:
                log(f"{label}: present, sha256 ok (skipped)")
                continue
            target.unlink()  # never leave a file whose sum is wrong, even if the new copy fails too
            log(f"{label}: removed the file present: its sha256 {actual} is not the expected {expected}; "
                f"fetching it again")
            replaced = " (replaces the removed file)"
        if mirror is not None:
            source = folder / file
            if not source.is_file():
                raise InputError(source, f"file not found in the mirror (needed for {name})")
            how, origin, opener = "copied", str(source), _open_file(source)
        else:
            origin = f"{base}/{entry['upstream']}/{file}"
            how, opener = "downloaded", _open_url(origin, timeout)
        try:
            size = install_stream(target, expected, opener, origin)
        except MomokError:
            _discard_if_wrong(target, expected, label, log)  # --force: a wrong file present stays no longer
            raise
        log(f"{label}: {how} {size:,} bytes from {origin}, sha256 ok{replaced}")

    if mirror is not None:
        for source in sorted(p for p in folder.rglob("*") if p.is_file()):
            relative = source.relative_to(folder)
            if str(relative) in entry["files"]:
                continue
            target = dest / relative
            if target.exists() and not force and target.stat().st_size == source.stat().st_size:
                log(f"{name}/{relative}: side file present (skipped)")
                continue
            size = install_stream(target, None, _open_file(source), str(source))
            log(f"{name}/{relative}: side file copied ({size:,} bytes, not verified)")
    log(f"{name}: {len(entry['files'])} files verified in {dest}")
    return dest


def _discard_if_wrong(target: Path, expected: str, label: str, log: Callable[[str], None]) -> None:
    """Remove ``target`` when it exists and its sha256 is not ``expected`` (after a failed fetch)."""
    if target.is_file() and file_sha256(target) != expected:
        target.unlink()
        log(f"{label}: removed the file present: its sha256 is not the expected {expected}")


def configure_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("dataset", metavar="DATASET", help="MKG-W, MKG-Y, DB15K or KVC16K (as named in --sources)")
    parser.add_argument("--dest", required=True, type=Path,
                        help="the dataset folder to fill, e.g. data/raw/MKG-W (created if missing)")
    parser.add_argument("--mirror", type=Path, default=None,
                        help="copy from MIRROR/DATASET/ instead of downloading (default: download)")
    parser.add_argument("--base-url", default=None,
                        help="download from BASE_URL/<upstream folder>/<file> (default: base_url of --sources)")
    parser.add_argument("--force", action="store_true",
                        help="fetch every file again, even those present with the right sha256")
    parser.add_argument("--sources", type=Path, default=DEFAULT_SOURCES,
                        help="YAML file of upstream folders and sha256 sums (default: the packaged sources.yaml)")
    parser.add_argument("--timeout", type=float, default=60.0, help="seconds to wait for the server, > 0 (default: 60)")


def run(args: argparse.Namespace) -> int:
    fetch_dataset(args.dataset, args.dest, mirror=args.mirror, base_url=args.base_url, force=args.force,
                  sources=args.sources, timeout=args.timeout, log=lambda line: print(line, flush=True))
    return 0
