"""``momok fetch``: downloads from a local HTTP server (never the internet), checksums, resume, mirror."""

from __future__ import annotations

import functools
import hashlib
import os
import re
import threading
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import yaml

from momok.checksums import file_sha256
from momok.cli import main
from momok.data.fetch import DEFAULT_SOURCES, fetch_dataset, load_sources
from momok.errors import ConfigError, InputError, MomokError

FILES = ("train.txt", "valid.txt", "test.txt", "entity2id.txt", "relation2id.txt")


@pytest.fixture
def upstream(tiny_dataset_dir, tmp_path):
    """A served folder ``<root>/TinyUp/<file>`` and a sources file listing its sums as dataset TINY."""
    root = tmp_path / "served"
    (root / "TinyUp").mkdir(parents=True)
    sums = {}
    for file in FILES:
        data = (tiny_dataset_dir / file).read_bytes()
        (root / "TinyUp" / file).write_bytes(data)
        sums[file] = hashlib.sha256(data).hexdigest()
    sources = tmp_path / "sources.yaml"
    sources.write_text(yaml.safe_dump({"base_url": "http://127.0.0.1:9/unused",
                                       "datasets": {"TINY": {"upstream": "TinyUp", "files": sums}}}))
    return root, sources, sums


@pytest.fixture
def server(upstream):
    """A local HTTP server of the ``upstream`` folder in a daemon thread; yields (base URL, request log)."""
    requests: list[str] = []

    class Handler(SimpleHTTPRequestHandler):
        def log_message(self, *args):  # keep test output clean
            pass

        def do_GET(self):
            requests.append(self.path)
            super().do_GET()

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Handler, directory=str(upstream[0])))
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}", requests
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=5)


@pytest.fixture
def fetched(server, upstream, tmp_path):
    """TINY fetched once into ``tmp_path/dest``: (base URL, request log, served root, sources, sums, dest)."""
    base, requests = server
    root, sources, sums = upstream
    dest = tmp_path / "dest"
    fetch_dataset("TINY", dest, base_url=base, sources=sources, log=lambda _: None)
    requests.clear()
    return base, requests, root, sources, sums, dest


def no_partial_files(folder: Path) -> bool:
    return not [p for p in folder.rglob("*") if p.name.startswith(".") or p.name.endswith(".tmp")]


def test_download_verifies_and_writes_every_file(server, upstream, tmp_path):
    base, requests = server
    _, sources, sums = upstream
    dest = tmp_path / "data" / "raw" / "TINY"
    log: list[str] = []
    assert fetch_dataset("TINY", dest, base_url=base, sources=sources, log=log.append) == dest
    assert sorted(p.name for p in dest.iterdir()) == sorted(FILES)
    for file in FILES:
        assert file_sha256(dest / file) == sums[file]
    assert sorted(requests) == sorted(f"/TinyUp/{f}" for f in FILES)
    umask = os.umask(0)
    os.umask(umask)
    assert (dest / "train.txt").stat().st_mode & 0o777 == 0o666 & ~umask  # not the temporary file's 0600
    assert any(line.startswith("TINY/train.txt: downloaded") and "sha256 ok" in line for line in log)
    assert log[-1] == f"TINY: 5 files verified in {dest}"


def test_checksum_mismatch_keeps_no_file(server, upstream, tmp_path):
    base, _ = server
    root, sources, sums = upstream
    (root / "TinyUp" / "valid.txt").write_text("alpha likes beta .\n")  # upstream changed
    dest = tmp_path / "dest"
    with pytest.raises(InputError) as err:
        fetch_dataset("TINY", dest, base_url=base, sources=sources, log=lambda _: None)
    message = str(err.value)
    actual = hashlib.sha256(b"alpha likes beta .\n").hexdigest()
    assert message.startswith(f"{dest / 'valid.txt'}: sha256 mismatch for {base}/TinyUp/valid.txt")
    assert f"expected {sums['valid.txt']}, got {actual}" in message
    assert not (dest / "valid.txt").exists()
    assert (dest / "train.txt").exists()  # verified files before it stay
    assert no_partial_files(dest)


def test_resume_skips_verified_files_and_refetches_bad_ones(fetched):
    base, requests, _, sources, sums, dest = fetched
    (dest / "test.txt").write_text("truncated")
    log: list[str] = []
    fetch_dataset("TINY", dest, base_url=base, sources=sources, log=log.append)
    assert requests == ["/TinyUp/test.txt"]
    assert "TINY/train.txt: present, sha256 ok (skipped)" in log
    bad = hashlib.sha256(b"truncated").hexdigest()
    assert (f"TINY/test.txt: removed the file present: its sha256 {bad} is not the expected {sums['test.txt']}; "
            f"fetching it again") in log
    assert any(line.startswith("TINY/test.txt: downloaded") and line.endswith("(replaces the removed file)")
               for line in log)
    assert file_sha256(dest / "test.txt") == sums["test.txt"]
    requests.clear()
    fetch_dataset("TINY", dest, base_url=base, sources=sources, force=True, log=lambda _: None)
    assert len(requests) == 5


@pytest.mark.parametrize("failure", ["upstream changed", "missing upstream"])
def test_corrupt_file_is_not_left_when_the_refetch_fails(fetched, failure):
    base, _, root, sources, sums, dest = fetched
    (dest / "test.txt").write_text("truncated")
    if failure == "upstream changed":
        (root / "TinyUp" / "test.txt").write_text("alpha likes beta .\n")
    else:
        (root / "TinyUp" / "test.txt").unlink()
    log: list[str] = []
    with pytest.raises(MomokError, match="sha256 mismatch" if failure == "upstream changed" else "HTTP 404"):
        fetch_dataset("TINY", dest, base_url=base, sources=sources, log=log.append)
    assert not (dest / "test.txt").exists()
    assert any(line.startswith("TINY/test.txt: removed the file present") for line in log)
    assert file_sha256(dest / "train.txt") == sums["train.txt"]
    assert no_partial_files(dest)


def test_force_refetch_failure_keeps_only_a_right_file(fetched):
    base, _, root, sources, sums, dest = fetched
    (root / "TinyUp" / "test.txt").write_text("alpha likes beta .\n")  # upstream broke
    with pytest.raises(InputError, match="sha256 mismatch"):
        fetch_dataset("TINY", dest, base_url=base, sources=sources, force=True, log=lambda _: None)
    assert file_sha256(dest / "test.txt") == sums["test.txt"]  # the verified file stays
    (dest / "test.txt").write_text("truncated")
    log: list[str] = []
    with pytest.raises(InputError, match="sha256 mismatch"):
        fetch_dataset("TINY", dest, base_url=base, sources=sources, force=True, log=log.append)
    assert not (dest / "test.txt").exists()
    assert f"TINY/test.txt: removed the file present: its sha256 is not the expected {sums['test.txt']}" in log
    assert no_partial_files(dest)


def test_broken_transfer_is_a_one_line_error(upstream, tmp_path):
    """A server that promises more bytes than it sends: a MomokError naming the URL, nothing kept."""
    _, sources, _ = upstream

    class Truncating(SimpleHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def do_GET(self):
            self.send_response(200)
            self.send_header("Content-Length", "100000")
            self.end_headers()
            self.wfile.write(b"alpha likes beta .\n")
            self.close_connection = True

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Truncating)
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        base = f"http://127.0.0.1:{httpd.server_address[1]}"
        broke = re.escape(f"{base}/TinyUp/") + r".*: transfer broke off after 19 of 100,000 bytes"
        with pytest.raises(MomokError, match=broke):
            fetch_dataset("TINY", tmp_path / "dest", base_url=base, sources=sources, log=lambda _: None)
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=5)
    assert list((tmp_path / "dest").iterdir()) == []


def test_http_error_names_the_url(server, upstream, tmp_path):
    base, _ = server
    root, sources, _ = upstream
    (root / "TinyUp" / "entity2id.txt").unlink()
    with pytest.raises(MomokError, match=re.escape(f"{base}/TinyUp/entity2id.txt: HTTP 404")):
        fetch_dataset("TINY", tmp_path / "dest", base_url=base, sources=sources, log=lambda _: None)
    assert no_partial_files(tmp_path / "dest")


def test_cli_fetch_download_and_error(server, upstream, tmp_path, capsys):
    base, _ = server
    _, sources, _ = upstream
    dest = tmp_path / "cli"
    assert main(["fetch", "TINY", "--dest", str(dest), "--base-url", base, "--sources", str(sources)]) == 0
    assert "TINY: 5 files verified" in capsys.readouterr().out
    assert main(["fetch", "NOPE", "--dest", str(dest), "--sources", str(sources)]) == 2
    assert "unknown dataset 'NOPE'" in capsys.readouterr().err


@pytest.mark.parametrize("options, message", [
    (["--base-url", "notaurl"], "notaurl/TinyUp/"),
    (["--timeout", "nan"], "--timeout: must be a number of seconds > 0, got nan"),
    (["--timeout", "-1"], "--timeout: must be a number of seconds > 0, got -1.0"),
    (["--dest-is-a-file"], "--dest is a file, expected a folder"),
])
def test_cli_bad_options_are_one_line_errors(upstream, tmp_path, capsys, options, message):
    _, sources, _ = upstream
    dest = tmp_path / "dest"
    if options == ["--dest-is-a-file"]:
        dest.write_text("not a folder")
        options = []
    assert main(["fetch", "TINY", "--dest", str(dest), "--sources", str(sources), *options]) == 2
    err = capsys.readouterr().err
    assert err.startswith("momok fetch: error: ") and message in err and err.count("\n") == 1, err


def test_mirror_copy_with_side_files(upstream, tmp_path):
    root, sources, sums = upstream
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    (root / "TinyUp").rename(mirror / "TINY")
    (mirror / "TINY" / "mmkb").mkdir()
    (mirror / "TINY" / "mmkb" / "index.txt").write_text("side data\n")
    dest = tmp_path / "dest"
    log: list[str] = []
    fetch_dataset("TINY", dest, mirror=mirror, sources=sources, log=log.append)
    for file in FILES:
        assert file_sha256(dest / file) == sums[file]
    assert (dest / "mmkb" / "index.txt").read_text() == "side data\n"
    assert any("copied" in line and str(mirror / "TINY" / "train.txt") in line for line in log)
    log.clear()
    fetch_dataset("TINY", dest, mirror=mirror, sources=sources, log=log.append)
    assert all("skipped" in line for line in log[:-1]) and len(log) == 7
    (mirror / "TINY" / "relation2id.txt").unlink()
    with pytest.raises(InputError, match="relation2id.txt: file not found in the mirror"):
        fetch_dataset("TINY", tmp_path / "other", mirror=mirror, sources=sources, log=lambda _: None)
    with pytest.raises(InputError, match="the mirror has no TINY folder"):
        fetch_dataset("TINY", dest, mirror=root, sources=sources, log=lambda _: None)


def test_real_mirror_copy_verifies_published_sums(shared_datasets, tmp_path):
    log: list[str] = []
    dest = fetch_dataset("MKG-Y", tmp_path / "MKG-Y", mirror=shared_datasets, log=log.append)
    assert sorted(p.name for p in dest.iterdir()) == sorted(FILES)
    assert log[-1].startswith("MKG-Y: 5 files verified")


def test_packaged_sources_match_the_readme(shared_datasets):
    table = load_sources(DEFAULT_SOURCES)
    assert set(table["datasets"]) == {"MKG-W", "MKG-Y", "DB15K", "KVC16K"}
    assert table["datasets"]["KVC16K"]["upstream"] == "Kuai16K"
    assert table["base_url"] == "https://raw.githubusercontent.com/zjukg/MoMoK/main/datasets"
    readme = (shared_datasets / "README.md").read_text(encoding="utf-8")
    listed = {m[2]: m[1] for m in re.finditer(r"^([0-9a-f]{64})  (\S+)$", readme, re.M)}
    ours = {f"{d}/{f}": s for d, e in table["datasets"].items() for f, s in e["files"].items()}
    assert ours == listed
    for name in ("MKG-W", "MKG-Y", "DB15K"):  # and the offline copies are those files
        for file in FILES:
            assert file_sha256(shared_datasets / name / file) == ours[f"{name}/{file}"]


def test_bad_sources_file(tmp_path):
    bad = tmp_path / "s.yaml"
    bad.write_text("base_url: x\ndatasets:\n  A: {upstream: A, files: {train.txt: abc}}\n")
    with pytest.raises(ConfigError, match=r"datasets.A.files.train.txt: 'abc' is not a sha256"):
        load_sources(bad)
    bad.write_text("datasets: {}\n")
    with pytest.raises(ConfigError, match="expected the keys 'base_url'"):
        load_sources(bad)
    bad.write_text("base_url: x\ndatasets:\n  A: [unclosed\n")
    with pytest.raises(InputError) as err:
        load_sources(bad)
    assert str(err.value).startswith(f"{bad}:4: not valid YAML (") and "\n" not in str(err.value)
    with pytest.raises(InputError, match="unreadable"):
        load_sources(tmp_path)
