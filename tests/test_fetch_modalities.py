"""``momok fetch-modalities``: every source, served by a local HTTP server (never the internet).

The server answers like the real services (Wikidata ``wbgetentities``, the Commons ``imageinfo`` API,
``Special:FilePath`` thumbnails, the DBpedia SPARQL endpoint), built from the small hand-made records
in ``tests/fixtures/modalities/`` (not real data). Waits go through a fake clock, so the rate limit and
the backoff are checked by counting sleeps, never by timing.
"""

from __future__ import annotations

import copy
import csv
import hashlib
import json
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit

import pytest

from momok import __version__
from momok.cli import main
from momok.data.datasets import entity_dirname, read_descriptions
from momok.data.modalities import fetch_modalities, plan_modalities, read_manifest
from momok.data.modalities_http import PoliteClient
from momok.data.modalities_sources import Endpoints, commons_name
from momok.errors import ConfigError, MomokError

FIXTURES = Path(__file__).parent / "fixtures" / "modalities"
WD = "http://www.wikidata.org/entity/"
DBR = "http://dbpedia.org/resource/"
ENTITIES = {
    "wikidata": [f"{WD}Q370252", f"{WD}Q234900", f"{WD}Q3857815"],
    "yago": ["Gilles_Mbang_Ondo", "Libreville", "Ángel_Pérez_(footballer)", "Hideaki_Takeda"],
    "dbpedia": [f"<{DBR}Anarchism>", f"<{DBR}Alabama>", f"<{DBR}Pedagogy>", f"<{DBR}Franciaország>"],
}
DATASET = {"wikidata": "MKG-W", "yago": "MKG-Y", "dbpedia": "DB15K"}


class Services:
    """The fixture data behind the server; tests change it (a file that changed, failures to inject)."""

    def __init__(self):
        wikidata = json.loads((FIXTURES / "wikidata.json").read_text(encoding="utf-8"))
        self.items, self.redirects = wikidata["entities"], wikidata["enwiki_redirects"]
        self.files = json.loads((FIXTURES / "commons.json").read_text(encoding="utf-8"))["files"]
        self.resources = json.loads((FIXTURES / "dbpedia.json").read_text(encoding="utf-8"))["resources"]
        self.bytes = {p.name: p.read_bytes() for p in (FIXTURES / "files").iterdir()}
        self.requests: list[str] = []
        self.user_agents: set[str] = set()
        self.failures: list[int] = []  # statuses to answer (0: hang up), one per request, before answering normally

    def wbgetentities(self, query):
        out = {}
        if "ids" in query:
            for qid in query["ids"][0].split("|"):
                out[qid] = copy.deepcopy(self.items[qid]) if qid in self.items else {"id": qid, "missing": ""}
        else:
            by_title = {i["sitelinks"]["enwiki"]["title"]: i for i in self.items.values() if i["sitelinks"]}
            for n, title in enumerate(query["titles"][0].split("|"), start=1):
                if title in by_title:
                    out[by_title[title]["id"]] = copy.deepcopy(by_title[title])
                else:
                    out[f"-{n}"] = {"site": "enwiki", "title": title, "missing": ""}
        return {"entities": out, "success": 1}

    def enwiki_pageprops(self, query):
        by_title = {i["sitelinks"]["enwiki"]["title"]: i["id"] for i in self.items.values() if i["sitelinks"]}
        redirects, pages = [], []
        for title in query["titles"][0].split("|"):
            if title in self.redirects:
                redirects.append({"from": title, "to": self.redirects[title]})
                title = self.redirects[title]
            page = {"ns": 0, "title": title}
            page.update({"pageprops": {"wikibase_item": by_title[title]}} if title in by_title else {"missing": True})
            pages.append(page)
        return {"batchcomplete": True, "query": {"redirects": redirects, "pages": pages}}

    def imageinfo(self, query):
        pages, normalized = [], []
        for title in query["titles"][0].split("|"):
            name = commons_name(title)
            if f"File:{name}" != title:
                normalized.append({"fromencoded": False, "from": title, "to": f"File:{name}"})
            if name not in self.files:
                pages.append({"ns": 6, "title": f"File:{name}", "missing": True})
                continue
            data = self.bytes.get(name, b"")
            meta = {"LicenseShortName": {"value": self.files[name]["licence"]},
                    "Artist": {"value": self.files[name]["artist"]}}
            pages.append({"ns": 6, "title": f"File:{name}", "imageinfo": [
                {"size": len(data), "sha1": hashlib.sha1(data).hexdigest(), "extmetadata": meta}]})
        return {"batchcomplete": True, "query": {"normalized": normalized, "pages": pages}}

    def sparql(self, query):
        text = query["query"][0]
        subjects = re.findall(r"<([^>]+)>", re.search(r"VALUES \?s \{([^}]*)\}", text).group(1))
        rows = []
        for subject in subjects:
            resource = self.resources.get(subject, {})
            values = [("abstract", v, "literal") for v in [resource.get("abstract")] if v]
            values += [("thumbnail", v, "uri") for v in [resource.get("thumbnail")] if v]
            values += [("depiction", v, "uri") for v in resource.get("depiction", [])]
            values += [("redirect", v, "uri") for v in [resource.get("redirect")] if v]
            for kind, value, typ in values:
                row = {"s": {"type": "uri", "value": subject}, "kind": {"type": "literal", "value": kind},
                       "value": {"type": typ, "value": value}}
                if typ == "literal":
                    row["value"]["xml:lang"] = "en"
                rows.append(row)
        return {"head": {"vars": ["s", "kind", "value"]}, "results": {"distinct": False, "bindings": rows}}

    def answer(self, path: str) -> tuple[int, bytes]:
        if self.failures:
            return self.failures.pop(0), b"busy"
        parts = urlsplit(path)
        query = parse_qs(parts.query)
        if parts.path == "/wikidata/w/api.php" and query.get("action") == ["wbgetentities"]:
            return 200, json.dumps(self.wbgetentities(query)).encode()
        if parts.path == "/enwiki/w/api.php" and query.get("ppprop") == ["wikibase_item"]:
            return 200, json.dumps(self.enwiki_pageprops(query)).encode()
        if parts.path == "/commons/w/api.php" and query.get("prop") == ["imageinfo"]:
            return 200, json.dumps(self.imageinfo(query)).encode()
        if parts.path.startswith("/commons/wiki/Special:FilePath/"):
            name = commons_name(unquote(parts.path.rsplit("/", 1)[1]))
            return (200, self.bytes[name]) if name in self.bytes else (404, b"no such file")
        if parts.path == "/dbpedia/sparql":
            return 200, json.dumps(self.sparql(query)).encode()
        return 404, b"unknown"


@pytest.fixture
def services():
    """A local server of :class:`Services` in a daemon thread; yields (Services, Endpoints)."""
    state = Services()

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def do_GET(self):
            state.requests.append(self.path)
            state.user_agents.add(self.headers.get("User-Agent", ""))
            status, body = state.answer(self.path)
            if status == 0:  # a dropped connection, as a timed-out or reset request looks to the client
                self.close_connection = True
                return
            self.send_response(status)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{httpd.server_address[1]}"
    try:
        yield state, Endpoints(wikidata_api=f"{base}/wikidata/w/api.php", enwiki_api=f"{base}/enwiki/w/api.php",
                               commons_api=f"{base}/commons/w/api.php",
                               commons_filepath=f"{base}/commons/wiki/Special:FilePath",
                               dbpedia_sparql=f"{base}/dbpedia/sparql")
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=5)


class FakeClock:
    """``clock()`` and ``sleep(s)`` of a clock that moves only when slept on; records the sleeps."""

    def __init__(self):
        self.now, self.sleeps = 1000.0, []

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def dataset_dir(tmp_path: Path, source: str) -> Path:
    dest = tmp_path / DATASET[source]
    dest.mkdir()
    (dest / "entity2id.txt").write_text("".join(f"{n} {i}\n" for i, n in enumerate(ENTITIES[source])), encoding="utf-8")
    return dest


def fetch(source, dest, endpoints, clock=None, **options):
    clock = clock or FakeClock()
    client = PoliteClient(rate=options.pop("rate", 5.0), clock=clock.clock, sleep=clock.sleep)
    log: list[str] = []
    coverage = fetch_modalities(DATASET[source], dest, client=client, endpoints=endpoints, log=log.append, **options)
    return coverage, log


def images_of(dest: Path, name: str) -> list[Path]:
    folder = dest / "images" / entity_dirname(name)
    return sorted(folder.iterdir()) if folder.is_dir() else []


def test_mkgw_wikidata_texts_p18_images_manifest_and_provenance(services, tmp_path):
    state, endpoints = services
    dest = dataset_dir(tmp_path, "wikidata")
    coverage, log = fetch("wikidata", dest, endpoints)
    q1, q2, q3 = ENTITIES["wikidata"]
    assert read_descriptions(dest) == {q1: "Fixture person 370252: hand-made fixture item with an image",
                                       q2: "Fixture label 234900"}
    [image] = images_of(dest, q1)
    assert image.suffix == ".jpg" and image.read_bytes() == state.bytes["Q370252 portrait.jpg"]
    assert images_of(dest, q2) == images_of(dest, q3) == []
    # one wbgetentities call for the 3 ids, one imageinfo call, one thumbnail at the asked width
    calls = [urlsplit(r) for r in state.requests]
    assert [c.path for c in calls] == ["/wikidata/w/api.php", "/commons/w/api.php",
                                       "/commons/wiki/Special:FilePath/Q370252_portrait.jpg"]
    assert parse_qs(calls[0].query)["ids"] == ["Q370252|Q234900|Q3857815"]
    assert parse_qs(calls[2].query)["width"] == ["500"]
    assert all(ua.startswith(f"momok/{__version__} (") and "Python-urllib/" in ua for ua in state.user_agents)
    rows = read_manifest(dest / "modalities" / "manifest.tsv")
    image_row = next(r for r in rows.values() if r["kind"] == "image")
    assert image_row["entity"] == q1 and image_row["licence"] == "CC BY-SA 4.0" and image_row["status"] == "ok"
    assert image_row["sha256"] == hashlib.sha256(image.read_bytes()).hexdigest()
    assert int(image_row["bytes"]) == image.stat().st_size and image_row["file"] == str(image.relative_to(dest))
    assert image_row["detail"] == "commons:Q370252 portrait.jpg by Fixture"  # HTML stripped
    assert {r["licence"] for r in rows.values() if r["kind"] == "text"} == {"CC0-1.0"}
    provenance = [json.loads(line) for line in (dest / "modalities" / "provenance.jsonl").read_text().splitlines()]
    assert provenance[0]["wikidata"] == "Q370252" and provenance[0]["not_on_commons"] == ["Not on Commons.jpg"]
    assert provenance[2]["missing"] == "no such Wikidata item"
    assert coverage == json.loads((dest / "modalities" / "coverage.json").read_text())
    assert (coverage["entities"], coverage["with_text"], coverage["with_image"], coverage["images"]) == (3, 2, 1, 1)
    assert "MKG-W: coverage: 2/3 entities with text, 1/3 with >=1 image" in log[-1]


def test_mkgy_yago_names_through_wikipedia_titles(services, tmp_path):
    state, endpoints = services
    dest = dataset_dir(tmp_path, "yago")
    coverage, _ = fetch("yago", dest, endpoints, max_images=3)
    titles = parse_qs(urlsplit(state.requests[0]).query)
    assert titles["sites"] == ["enwiki"]
    assert titles["titles"] == ["Gilles Mbang Ondo|Libreville|Ángel Pérez (footballer)|Hideaki Takeda"]
    texts = read_descriptions(dest)
    assert "Hideaki_Takeda" not in texts
    # a renamed page: not matched by title, found through the English Wikipedia redirect, then by id
    assert texts["Ángel_Pérez_(footballer)"] == "Ángel Pérez: hand-made fixture: a footballer without an image"
    second = [parse_qs(urlsplit(r).query) for r in state.requests[1:3]]
    assert second[0]["titles"] == ["Ángel Pérez (footballer)|Hideaki Takeda"] and second[0]["redirects"] == ["1"]
    assert second[1]["ids"] == ["Q5000003"]
    # preferred rank first, deprecated skipped; "Mbang_Ondo_2010.jpg" (underscores) is the same file
    libreville = [p.read_bytes() for p in images_of(dest, "Libreville")]
    assert sorted(libreville) == sorted([state.bytes["Libreville skyline.jpg"], state.bytes["Libreville map.svg"]])
    assert [p.read_bytes() for p in images_of(dest, "Gilles_Mbang_Ondo")] == [state.bytes["Mbang Ondo 2010.jpg"]]
    downloads = [r for r in state.requests if "FilePath" in r]
    assert downloads.index(next(r for r in downloads if "skyline" in r)) < downloads.index(
        next(r for r in downloads if "map.svg" in r))
    lines = (dest / "modalities" / "provenance.jsonl").read_text().splitlines()
    provenance = {p["entity"]: p for p in map(json.loads, lines)}
    assert provenance["Libreville"]["wikidata"] == "Q5000002" and provenance["Libreville"]["enwiki"] == "Libreville"
    assert provenance["Hideaki_Takeda"]["missing"] == "no English Wikipedia page with a Wikidata item"
    assert provenance["Ángel_Pérez_(footballer)"]["enwiki_page"] == "Ángel Pérez (footballer, born 1981)"
    assert provenance["Ángel_Pérez_(footballer)"]["wikidata"] == "Q5000003"
    assert (coverage["with_text"], coverage["with_image"], coverage["images"]) == (3, 2, 3)


def test_db15k_dbpedia_abstracts_bad_bytes_and_missing_files(services, tmp_path):
    state, endpoints = services
    dest = dataset_dir(tmp_path, "dbpedia")
    coverage, _ = fetch("dbpedia", dest, endpoints)
    anarchism, alabama, pedagogy, francia = ENTITIES["dbpedia"]
    texts = read_descriptions(dest)
    assert texts == {anarchism: "Hand-made fixture abstract of Anarchism.",  # tab inside folded
                     alabama: "Hand-made fixture abstract of Alabama.",
                     pedagogy: "Hand-made fixture abstract of Pedagogy, no image."}
    query = parse_qs(urlsplit(state.requests[0]).query)["query"][0]
    assert f"<{DBR}Franciaország>" in query and 'FILTER(lang(?value) = "en")' in query
    # Pedagogy is a redirect: a second query asks for its target
    query = parse_qs(urlsplit(state.requests[1]).query)["query"][0]
    assert re.search(r"VALUES \?s \{ <([^>]+)> \}", query).group(1) == f"{DBR}Pedagogy_(fixture_target)"
    lines = (dest / "modalities" / "provenance.jsonl").read_text().splitlines()
    provenance = {p["entity"]: p for p in map(json.loads, lines)}
    assert provenance[pedagogy]["redirect"] == f"{DBR}Pedagogy_(fixture_target)"
    assert provenance[francia]["missing"] == "no English abstract or image in DBpedia"
    # thumbnail and its depiction are one file; then the sorted depictions until 3 images or none left
    assert [p.read_bytes() for p in images_of(dest, anarchism)] == [state.bytes["Anarchy-symbol.svg"]]
    assert sorted(p.read_bytes() for p in images_of(dest, alabama)) == sorted(
        [state.bytes["Alabama flag.png"], state.bytes["Alabama in United States.svg"]])
    manifest = read_manifest(dest / "modalities" / "manifest.tsv").values()
    rows = {(r["entity"], r["status"]): r for r in manifest if r["kind"] == "image"}
    bad = rows[(alabama, "bad_image")]
    assert bad["file"] == "" and "not decodable" in bad["detail"] and "Broken_thumbnail" in bad["source_url"]
    assert rows[(alabama, "not_found")]["source_url"].endswith("Gone.jpg?width=500")
    assert not any("Broken" in p.name for p in (dest / "images").rglob("*"))
    assert rows[(anarchism, "ok")]["licence"] == "Public domain"
    assert {r["licence"] for r in manifest if r["kind"] == "text"} == {"CC-BY-SA-3.0"}
    text_row = next(r for r in manifest if r["entity"] == pedagogy)
    assert text_row["source_url"] == "http://dbpedia.org/page/Pedagogy_(fixture_target)"
    assert rows[(anarchism, "ok")]["source_url"].endswith("/Special:FilePath/Anarchy-symbol.svg?width=500")
    counts = (coverage["with_text"], coverage["with_image"], coverage["bad_images"], coverage["not_found"])
    assert counts == (3, 2, 1, 1)


@pytest.mark.parametrize("source", ["wikidata", "yago", "dbpedia"])
def test_second_run_makes_no_request_and_changes_nothing(services, tmp_path, source):
    state, endpoints = services
    dest = dataset_dir(tmp_path, source)
    first, _ = fetch(source, dest, endpoints)
    assert first["requests"] > 0
    snapshot = {p: p.read_bytes() for p in dest.rglob("*") if p.is_file() and "cache" not in p.parts}
    state.requests.clear()
    second, _ = fetch(source, dest, endpoints)
    assert state.requests == [] and second["requests"] == 0
    assert {p: p.read_bytes() for p in dest.rglob("*") if p.is_file() and "cache" not in p.parts} == {
        **snapshot, dest / "modalities" / "coverage.json": (dest / "modalities" / "coverage.json").read_bytes()}
    assert {k: v for k, v in second.items() if k != "requests"} == {k: v for k, v in first.items() if k != "requests"}


def test_interrupted_run_continues_without_refetching(services, tmp_path):
    """Images on disk and cached answers survive an interruption before the manifest was written."""
    state, endpoints = services
    dest = dataset_dir(tmp_path, "yago")
    fetch("yago", dest, endpoints)
    (dest / "modalities" / "manifest.tsv").unlink()  # as if the run stopped before saving it
    [skyline] = [p for p in images_of(dest, "Libreville") if p.read_bytes() == state.bytes["Libreville skyline.jpg"]]
    skyline.unlink()  # ... and before this download
    state.requests.clear()
    coverage, _ = fetch("yago", dest, endpoints)
    paths = [unquote(urlsplit(r).path) for r in state.requests]
    assert paths == ["/commons/wiki/Special:FilePath/Libreville_skyline.jpg"]
    assert coverage["images"] == 3


def test_rate_limit_spaces_requests(services, tmp_path):
    state, endpoints = services
    dest = dataset_dir(tmp_path, "yago")
    clock = FakeClock()
    fetch("yago", dest, endpoints, clock=clock, rate=4.0)
    assert len(state.requests) == 7  # wbgetentities by title, enwiki, wbgetentities by id, imageinfo, 3 thumbnails
    # the fake clock stands still between requests, so each later request waits the full 1/rate
    assert clock.sleeps == pytest.approx([0.25] * 6)


def test_retry_with_exponential_backoff_on_503(services, tmp_path):
    state, endpoints = services
    dest = dataset_dir(tmp_path, "wikidata")
    state.failures = [503, 0, 429]
    clock = FakeClock()
    coverage, _ = fetch("wikidata", dest, endpoints, clock=clock, rate=1000.0)
    assert coverage["with_text"] == 2
    backoff = [s for s in clock.sleeps if s >= 0.5]
    assert backoff == [1.0, 2.0, 4.0]  # backoff * 2**attempt
    assert state.requests[0] == state.requests[3]  # the same call, answered on the fourth try
    state.failures = [503] * 3
    client = PoliteClient(retries=2, clock=clock.clock, sleep=clock.sleep)
    with pytest.raises(MomokError, match=r"HTTP 503 .* \(gave up after 3 tries\)"):
        client.get(f"{endpoints.wikidata_api}?action=wbgetentities&ids=Q1")


def test_changed_remote_file_is_refetched_with_refresh(services, tmp_path):
    state, endpoints = services
    dest = dataset_dir(tmp_path, "wikidata")
    fetch("wikidata", dest, endpoints)
    manifest = dest / "modalities" / "manifest.tsv"
    old = next(r for r in read_manifest(manifest).values() if r["kind"] == "image")
    new_bytes = (FIXTURES / "files" / "Alabama flag.png").read_bytes()
    state.bytes["Q370252 portrait.jpg"] = new_bytes  # Commons got a new version (new sha1)
    state.requests.clear()
    fetch("wikidata", dest, endpoints)  # without --refresh: cached metadata, nothing asked
    assert state.requests == []
    coverage, log = fetch("wikidata", dest, endpoints, refresh=True)
    assert any("Commons reports a new version of Q370252 portrait.jpg" in line for line in log)
    new = next(r for r in read_manifest(manifest).values() if r["kind"] == "image")
    assert new["sha256"] == hashlib.sha256(new_bytes).hexdigest() != old["sha256"]
    [image] = images_of(dest, ENTITIES["wikidata"][0])
    assert image.read_bytes() == new_bytes and image.suffix == ".png"  # the old .jpg is gone
    assert coverage["images"] == 1


def test_local_file_that_differs_from_the_manifest_is_refetched(services, tmp_path):
    state, endpoints = services
    dest = dataset_dir(tmp_path, "wikidata")
    fetch("wikidata", dest, endpoints)
    [image] = images_of(dest, ENTITIES["wikidata"][0])
    image.write_bytes(b"truncated")
    state.requests.clear()
    fetch("wikidata", dest, endpoints)
    assert [urlsplit(r).path for r in state.requests] == ["/commons/wiki/Special:FilePath/Q370252_portrait.jpg"]
    assert image.read_bytes() == state.bytes["Q370252 portrait.jpg"]


def test_other_width_replaces_the_thumbnails(services, tmp_path):
    state, endpoints = services
    dest = dataset_dir(tmp_path, "yago")
    fetch("yago", dest, endpoints)
    before = set((dest / "images").rglob("*.*"))
    state.requests.clear()
    coverage, _ = fetch("yago", dest, endpoints, width=300)
    assert len(state.requests) == 3 and all("width=300" in r for r in state.requests)
    after = set((dest / "images").rglob("*.*"))
    assert len(after) == len(before) == coverage["images"] == 3 and not after & before
    rows = read_manifest(dest / "modalities" / "manifest.tsv").values()
    assert all(r["source_url"].endswith("?width=300") for r in rows if r["kind"] == "image")


def test_plan_counts_without_requests(services, tmp_path, capsys):
    state, endpoints = services
    dest = dataset_dir(tmp_path, "dbpedia")
    plan = plan_modalities("DB15K", dest, endpoints=endpoints, max_images=2, image_bytes=1000, log=lambda _: None)
    assert state.requests == []
    assert (plan["entities"], plan["metadata_requests"], plan["metadata_cached"], plan["exact"]) == (4, 1, 0, False)
    assert (plan["image_requests"], plan["expected_bytes"], plan["commons_info_requests"]) == (8, 8000, 1)
    fetch("dbpedia", dest, endpoints, max_images=2)
    state.requests.clear()
    args = ["fetch-modalities", "DB15K", "--dest", str(dest), "--plan", "--max-images", "2",
            *[f"--{k.replace('_', '-')}={v}" for k, v in endpoints.__dict__.items()]]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert state.requests == [] and not (dest / "plan").exists()
    assert "DB15K (dbpedia): 4 entities; 0 metadata requests (1 cached); 0 Commons file-info requests" in out
    assert "and 0 image downloads (3 images already in the manifest)" in out
    # one more image per entity: Alabama's third candidate, now known from the cached answers
    plan = plan_modalities("DB15K", dest, endpoints=endpoints, max_images=3, log=lambda _: None)
    assert (plan["exact"], plan["image_requests"], plan["metadata_requests"]) == (True, 1, 0)
    assert state.requests == []


def test_cli_fetch_and_errors(services, tmp_path, capsys):
    state, endpoints = services
    dest = dataset_dir(tmp_path, "wikidata")
    args = [f"--{k.replace('_', '-')}={v}" for k, v in endpoints.__dict__.items()]
    assert main(["fetch-modalities", "MKG-W", "--dest", str(dest), "--rate", "1000", *args]) == 0
    assert "MKG-W: coverage: 2/3 entities with text" in capsys.readouterr().out
    assert main(["fetch-modalities", "KVC16K", "--dest", str(dest)]) == 2
    err = capsys.readouterr().err
    assert "KVC16K" in err and "Chinese Wikipedia" in err and "Traceback" not in err
    assert main(["fetch-modalities", "MKG-W", "--dest", str(tmp_path / "nowhere")]) == 2
    assert "entity2id.txt: file not found (run `momok fetch" in capsys.readouterr().err
    with pytest.raises(ConfigError, match="no modality source known for 'TINY'"):
        fetch_modalities("TINY", dest)
    with pytest.raises(MomokError, match="--rate must be a positive"):
        PoliteClient(rate=0)


@pytest.mark.parametrize("name, source, calls", [("MKG-W", "wikidata", 300), ("MKG-Y", "yago", 300),
                                                 ("DB15K", "dbpedia", 257)])
def test_real_entity_names_map_to_their_source(shared_datasets, name, source, calls):
    """Every name of the real benchmarks has its id, title or IRI; 50 a call; URLs of a sane length."""
    from momok.data.datasets import read_id_map
    from momok.data.modalities_sources import DATASET_SOURCES, dbpedia_iri, metadata_urls, yago_title

    names = read_id_map(shared_datasets / name / "entity2id.txt")
    assert DATASET_SOURCES[name] == source
    urls = metadata_urls(source, Endpoints(), names)
    assert len(urls) == calls == -(-len(names) // 50)  # every entity asked for, none twice
    assert max(map(len, urls)) < 8000  # common servers' limit on a request line
    if source == "yago":
        assert len({yago_title(n) for n in names}) == len(names) and not any("|" in n for n in names)
    if source == "dbpedia":
        iris = [dbpedia_iri(n) for n in names]
        assert all(i.startswith(DBR) and not re.search(r'[<>"{}|^`\\ ]', i) for i in iris)
        assert dbpedia_iri('<http://dbpedia.org/resource/Abraham_"Bram"_Stoker>') == f"{DBR}Abraham_%22Bram%22_Stoker"


def test_manifest_is_a_plain_tsv(services, tmp_path):
    _, endpoints = services
    dest = dataset_dir(tmp_path, "dbpedia")
    fetch("dbpedia", dest, endpoints)
    with open(dest / "modalities" / "manifest.tsv", encoding="utf-8", newline="") as handle:
        rows = list(csv.reader(handle, delimiter="\t", quoting=csv.QUOTE_NONE))
    assert rows[0][:8] == ["entity", "kind", "status", "file", "source_url", "licence", "sha256", "bytes"]
    assert all(len(row) == len(rows[0]) for row in rows)
