"""``momok fetch-modalities DATASET --dest DIR [--max-images N] [--width W] [--rate R] [--plan]``.

Collects each entity's description text and up to N images from the benchmark's public primary source
(MKG-W: Wikidata + Commons; MKG-Y: YAGO name -> English Wikipedia title -> Wikidata + Commons; DB15K:
DBpedia + Commons; see :mod:`momok.data.modalities_sources`) into the layout that ``momok features
image|text`` reads (docs/ARCHITECTURE.md): ``DIR/descriptions.tsv`` and
``DIR/images/<entity_dirname(name)>/<16 hex digits of sha256(source URL)>.<png|jpg|...>``. ``DIR``
is a dataset folder written by ``momok fetch`` (its ``entity2id.txt`` lists the entities).

Bookkeeping under ``DIR/modalities/``:

* ``cache/``: every metadata answer (one file per URL), so a rerun or a resumed run asks nothing twice;
* ``manifest.tsv``: one row per text and per image tried (``entity kind status file source_url licence
  sha256 bytes source_sha1 detail``; status ``ok``, ``not_found`` or ``bad_image``), rewritten as the
  run goes, so an interrupted run continues where it stopped;
* ``provenance.jsonl``: per entity, the ids and titles that led to its data, and why it has none;
* ``coverage.json``: entities, with text, with at least one image, images, bytes, requests made.

An image is fetched again when its file is gone or its sha256 differs from the manifest, and (with
``--refresh``, which also asks the metadata again) when Commons reports a new sha1 for it; the manifest
is updated. Bytes that PIL cannot decode are recorded as ``bad_image`` and not saved. Entities a source
does not know are recorded, never fatal.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import io
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from momok.atomic import write_json_atomic, write_text_atomic
from momok.checksums import file_sha256
from momok.data.fetch import install_stream
from momok.data.modalities_http import (
    RATE,
    RETRIES,
    TIMEOUT,
    NotCached,
    PoliteClient,
    ResponseCache,
)
from momok.data.modalities_sources import (
    DATASET_SOURCES,
    RESOLVERS,
    SOURCES,
    UNSUPPORTED,
    Endpoints,
    EntityRecord,
    commons_info,
    commons_info_urls,
    image_url,
    metadata_urls,
    number_of_calls,
)
from momok.errors import ConfigError, InputError, MomokError

MAX_IMAGES = 3
"""Images per entity (``--max-images``); the paper's setting."""

WIDTH = 500
"""Thumbnail width in pixels asked from ``Special:FilePath`` (``--width``); VGG's input is 224x224."""

IMAGE_BYTES_ESTIMATE = 60_000
"""Plan mode's assumed bytes per thumbnail (``--image-bytes-estimate``): an assumption, not a measurement."""

SAVE_EVERY = 25
"""Downloads between two rewrites of the manifest (what an interrupted run keeps)."""

MANIFEST_COLUMNS = ("entity", "kind", "status", "file", "source_url", "licence", "sha256", "bytes",
                    "source_sha1", "detail")
SUFFIX = {"JPEG": ".jpg", "PNG": ".png", "GIF": ".gif", "WEBP": ".webp", "BMP": ".bmp"}


def source_of(dataset: str, source: str | None) -> str:
    """``--source`` when given, else the dataset's own; unsupported datasets say what is missing."""
    if source is not None:
        if source not in SOURCES:
            raise ConfigError(f"--source must be one of {', '.join(SOURCES)}, got {source!r}")
        return source
    if dataset in UNSUPPORTED:
        raise MomokError(f"{dataset}: {UNSUPPORTED[dataset]}")
    if dataset not in DATASET_SOURCES:
        raise ConfigError(f"no modality source known for {dataset!r} (known: {', '.join(DATASET_SOURCES)}); "
                          f"pass --source {'|'.join(SOURCES)}")
    return DATASET_SOURCES[dataset]


def read_entities(dest: Path) -> list[str]:
    from momok.data.datasets import read_id_map

    path = dest / "entity2id.txt"
    if not path.is_file():
        raise InputError(path, "file not found (run `momok fetch DATASET --dest DIR` first)")
    return read_id_map(path)


def read_manifest(path: Path) -> dict[tuple[str, str, str], dict]:
    """(entity, kind, source_url) -> row; ``{}`` when there is no manifest yet."""
    if not path.exists():
        return {}
    with open(path, encoding="utf-8", newline="") as handle:
        reader = csv.DictReader(handle, delimiter="\t", quoting=csv.QUOTE_NONE)
        if tuple(reader.fieldnames or ()) != MANIFEST_COLUMNS:
            raise InputError(path, f"expected the header {' '.join(MANIFEST_COLUMNS)}", line=1)
        return {(row["entity"], row["kind"], row["source_url"]): row for row in reader}


def write_manifest(path: Path, rows: dict[tuple[str, str, str], dict]) -> None:
    lines = ["\t".join(MANIFEST_COLUMNS)]
    for key in sorted(rows):
        lines.append("\t".join(" ".join(str(rows[key].get(c, "")).split()) for c in MANIFEST_COLUMNS))
    write_text_atomic(path, "\n".join(lines) + "\n")


def decode_image(data: bytes) -> str:
    """The file suffix of image bytes that PIL decodes completely; ``ValueError`` otherwise."""
    from PIL import Image

    try:
        with Image.open(io.BytesIO(data)) as image:
            image.load()
            kind = image.format
    except Exception as err:  # PIL raises many types for bad bytes
        raise ValueError(f"{type(err).__name__}: {err}") from None
    if kind not in SUFFIX:
        raise ValueError(f"unsupported image format {kind}")
    return SUFFIX[kind]


@dataclass
class Layout:
    """The paths of one dataset folder."""

    dest: Path

    @property
    def state(self) -> Path:
        return self.dest / "modalities"

    @property
    def manifest(self) -> Path:
        return self.state / "manifest.tsv"

    def image_dir(self, entity: str) -> Path:
        from momok.data.datasets import entity_dirname

        return self.dest / "images" / entity_dirname(entity)

    @staticmethod
    def stem(url: str) -> str:
        """An image's file name without suffix: its source URL's sha256, first 16 hex digits."""
        return hashlib.sha256(url.encode("utf-8")).hexdigest()[:16]


class ImageFetcher:
    """Puts one entity's chosen images in place, deciding from the manifest what needs a request."""

    def __init__(self, layout: Layout, client: PoliteClient, endpoints: Endpoints, width: int,
                 rows: dict, retry_failed: bool, log: Callable[[str], None]):
        self.layout, self.client, self.endpoints, self.width = layout, client, endpoints, width
        self.rows, self.retry_failed, self.log = rows, retry_failed, log
        self.downloads = 0

    def _row(self, entity, file, url, status, info, target=None, data=b"", detail=""):
        row = {"entity": entity, "kind": "image", "status": status, "file": "", "source_url": url,
               "licence": info["licence"], "sha256": "", "bytes": 0, "source_sha1": info["sha1"],
               "detail": detail or f"commons:{file}" + (f" by {info['artist']}" if info["artist"] else "")}
        if target is not None:
            row.update(file=str(target.relative_to(self.layout.dest)), sha256=hashlib.sha256(data).hexdigest()
                       if data else file_sha256(target), bytes=len(data) if data else target.stat().st_size)
        self.rows[(entity, "image", url)] = row
        return row

    def fetch(self, entity: str, file: str, info: dict) -> dict:
        url = image_url(self.endpoints, file, self.width)
        folder, stem = self.layout.image_dir(entity), self.layout.stem(url)
        on_disk = sorted(folder.glob(f"{stem}.*")) if folder.is_dir() else []
        row = self.rows.get((entity, "image", url))
        same_remote = row is not None and row["source_sha1"] == info["sha1"]
        if row is not None and same_remote and row["status"] == "ok":
            target = self.layout.dest / row["file"]
            if target.is_file() and file_sha256(target) == row["sha256"]:
                return row
            self.log(f"{entity}: {row['file']} is missing or differs from the manifest; fetching it again")
        elif row is not None and same_remote and not self.retry_failed:
            return row  # recorded as not found / bad before: not asked again
        elif row is None and on_disk:  # written by an interrupted run before its manifest was saved
            try:
                decode_image(on_disk[0].read_bytes())
                return self._row(entity, file, url, "ok", info, target=on_disk[0])
            except ValueError:
                pass
        elif row is not None and not same_remote:
            self.log(f"{entity}: Commons reports a new version of {file}; fetching it again")
        data = self.client.get(url)
        self.downloads += 1
        if data is None:
            return self._row(entity, file, url, "not_found", info, detail="HTTP 404")
        try:
            suffix = decode_image(data)
        except ValueError as err:
            return self._row(entity, file, url, "bad_image", info, detail=f"not decodable: {err}"[:300])
        target = folder / f"{stem}{suffix}"
        for old in on_disk:
            old.unlink()
        install_stream(target, None, lambda: io.BytesIO(data), url)
        return self._row(entity, file, url, "ok", info, target=target, data=data)


def _text_row(entity: str, record: EntityRecord) -> dict:
    data = record.text.encode("utf-8")
    return {"entity": entity, "kind": "text", "status": "ok", "file": "descriptions.tsv",
            "source_url": record.text_url, "licence": record.text_licence,
            "sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data), "source_sha1": "", "detail": ""}


def fetch_modalities(dataset: str, dest: str | Path, *, source: str | None = None, max_images: int = MAX_IMAGES,
                     width: int = WIDTH, client: PoliteClient | None = None, endpoints: Endpoints = Endpoints(),
                     refresh: bool = False, retry_failed: bool = False,
                     log: Callable[[str], None] = print) -> dict:
    """Fill ``dest`` with the texts and images of ``dataset``'s entities; returns the coverage record."""
    source = source_of(dataset, source)
    if max_images < 0 or width < 1:
        raise ConfigError(f"--max-images must be >= 0 and --width >= 1 (got {max_images}, {width})")
    layout = Layout(Path(dest))
    entities = read_entities(layout.dest)
    client = client or PoliteClient()
    cache = ResponseCache(layout.state / "cache", client, refresh=refresh)
    rows = {k: v for k, v in read_manifest(layout.manifest).items() if k[1] == "image"}

    records = RESOLVERS[source](cache, endpoints, entities)
    log(f"{dataset}: metadata of {len(entities)} entities from {source} ({client.requests} requests)")
    wanted = list(dict.fromkeys(f for name in entities for f in records[name].images))
    info = commons_info(cache, endpoints, wanted) if max_images else {}

    fetcher = ImageFetcher(layout, client, endpoints, width, rows, retry_failed, log)
    provenance, texts, kept = [], [], set()
    for name in entities:
        record = records[name]
        if record.text:
            texts.append(f"{name}\t{' '.join(record.text.split())}")
            rows[(name, "text", record.text_url)] = _text_row(name, record)
        images, skipped = [], []
        for file in record.images:
            if len(images) == max_images:
                break
            if file not in info:
                skipped.append(file)
                continue
            before = fetcher.downloads
            row = fetcher.fetch(name, file, info[file])
            kept.add((name, "image", row["source_url"]))
            if row["status"] == "ok":
                images.append(row["file"])
            if fetcher.downloads != before and fetcher.downloads % SAVE_EVERY == 0:
                write_manifest(layout.manifest, rows)
        provenance.append({"entity": name, "source": source, **record.route, "text": bool(record.text),
                           "images": images, "not_on_commons": skipped, "missing": record.missing})
    # images no longer chosen (e.g. after --refresh) leave the manifest; their files are removed
    for key in [k for k in rows if k[1] == "image" and k not in kept]:
        stale = rows.pop(key)
        if stale["file"]:
            (layout.dest / stale["file"]).unlink(missing_ok=True)

    write_text_atomic(layout.dest / "descriptions.tsv", "\n".join(["entity\tdescription", *texts]) + "\n")
    write_manifest(layout.manifest, rows)
    write_text_atomic(layout.state / "provenance.jsonl",
                      "".join(json.dumps(p, ensure_ascii=False) + "\n" for p in provenance))
    ok = [r for r in rows.values() if r["kind"] == "image" and r["status"] == "ok"]
    coverage = {"dataset": dataset, "source": source, "entities": len(entities), "with_text": len(texts),
                "with_image": len({r["entity"] for r in ok}), "images": len(ok),
                "image_bytes": sum(int(r["bytes"]) for r in ok),
                "not_found": sum(r["status"] == "not_found" for r in rows.values()),
                "bad_images": sum(r["status"] == "bad_image" for r in rows.values()),
                "requests": client.requests, "max_images": max_images, "width": width}
    write_json_atomic(layout.state / "coverage.json", coverage)
    log(f"{dataset}: coverage: {coverage['with_text']}/{coverage['entities']} entities with text, "
        f"{coverage['with_image']}/{coverage['entities']} with >=1 image ({coverage['images']} images, "
        f"{coverage['image_bytes']:,} bytes); {coverage['requests']} requests this run")
    return coverage


def plan_modalities(dataset: str, dest: str | Path, *, source: str | None = None, max_images: int = MAX_IMAGES,
                    endpoints: Endpoints = Endpoints(), image_bytes: int = IMAGE_BYTES_ESTIMATE,
                    width: int = WIDTH, log: Callable[[str], None] = print) -> dict:
    """What :func:`fetch_modalities` would download, from the entity list and what is cached; no request.

    ``metadata_requests`` counts the first-stage calls (MKG-Y may need a few more for renamed pages).
    Before the metadata are cached the image counts are upper bounds (every entity with ``max_images``
    images); once they are, the candidates are known and the count is that of the candidates the
    manifest has not settled (each may still turn out missing or bad).
    """
    source = source_of(dataset, source)
    layout = Layout(Path(dest))
    entities = read_entities(layout.dest)
    cache = ResponseCache(layout.state / "cache", client=None)
    urls = metadata_urls(source, endpoints, entities)
    cached = sum(cache.has(u) for u in urls)
    manifest = read_manifest(layout.manifest)
    done = sum(r["status"] == "ok" for k, r in manifest.items() if k[1] == "image")
    try:  # with every answer on disk, the resolver reads them without a request
        records = RESOLVERS[source](cache, endpoints, entities)
        exact = True
    except NotCached:  # (MKG-Y: its second stage depends on the first's answers)
        exact = False
    if exact:
        wanted = list(dict.fromkeys(f for name in entities for f in records[name].images))
        info_calls = sum(not cache.has(u) for u in commons_info_urls(endpoints, wanted))
        images = sum((name, "image", image_url(endpoints, file, width)) not in manifest
                     for name in entities for file in records[name].images[:max_images])
    else:
        info_calls = number_of_calls(len(entities) * max_images)
        images = max(len(entities) * max_images - done, 0)
    bound = "" if exact else "at most "
    plan = {"dataset": dataset, "source": source, "entities": len(entities), "exact": exact,
            "metadata_requests": len(urls) - cached, "metadata_cached": cached,
            "commons_info_requests": info_calls, "image_requests": images, "images_in_manifest": done,
            "expected_bytes": images * image_bytes, "bytes_per_image_assumed": image_bytes}
    log(f"{dataset} ({source}): {plan['entities']} entities; {plan['metadata_requests']} metadata requests "
        f"({cached} cached); {bound}{info_calls} Commons file-info requests and {bound}{images} image downloads "
        f"({done} images already in the manifest); about {plan['expected_bytes'] / 1e6:,.1f} MB "
        f"({image_bytes:,} bytes an image, assumed)")
    return plan


def configure_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("dataset", metavar="DATASET",
                        help=f"{', '.join(DATASET_SOURCES)} (or any name with --source); "
                             "KVC16K is explained, not fetched")
    parser.add_argument("--dest", required=True, type=Path,
                        help="the dataset folder written by `momok fetch` (entity2id.txt), e.g. data/raw/MKG-W")
    parser.add_argument("--source", choices=SOURCES, default=None,
                        help="where the entities' data come from (default: the dataset's own source)")
    parser.add_argument("--max-images", type=int, default=MAX_IMAGES, help=f"images per entity (default: {MAX_IMAGES})")
    parser.add_argument("--width", type=int, default=WIDTH, help=f"thumbnail width in pixels (default: {WIDTH})")
    parser.add_argument("--rate", type=float, default=RATE, help=f"requests per second at most (default: {RATE:g})")
    parser.add_argument("--retries", type=int, default=RETRIES,
                        help="retries of a request answered 429/5xx or timed out, with exponential backoff "
                             f"(default: {RETRIES})")
    parser.add_argument("--timeout", type=float, default=TIMEOUT,
                        help=f"seconds to wait for a server (default: {TIMEOUT:g})")
    parser.add_argument("--contact", default=None, help="an e-mail or URL appended to the User-Agent (recommended)")
    parser.add_argument("--refresh", action="store_true",
                        help="ask every metadata request again and refetch images whose Commons sha1 changed")
    parser.add_argument("--retry-failed", action="store_true", help="try again images recorded as not found or bad")
    parser.add_argument("--plan", action="store_true",
                        help="print what would be downloaded (entities, requests, bytes) and download nothing")
    parser.add_argument("--image-bytes-estimate", type=int, default=IMAGE_BYTES_ESTIMATE,
                        help=f"plan mode: bytes assumed per image (default: {IMAGE_BYTES_ESTIMATE:,}, an assumption)")
    for field_name, default in Endpoints().__dict__.items():
        parser.add_argument(f"--{field_name.replace('_', '-')}", default=default,
                            help=f"base URL (default: {default})")


def run(args: argparse.Namespace) -> int:
    endpoints = Endpoints(**{name: getattr(args, name) for name in Endpoints().__dict__})
    log = lambda line: print(line, flush=True)  # noqa: E731
    if args.plan:
        plan_modalities(args.dataset, args.dest, source=args.source, max_images=args.max_images,
                        endpoints=endpoints, image_bytes=args.image_bytes_estimate, width=args.width, log=log)
        return 0
    client = PoliteClient(rate=args.rate, retries=args.retries, timeout=args.timeout, contact=args.contact)
    fetch_modalities(args.dataset, args.dest, source=args.source, max_images=args.max_images, width=args.width,
                     client=client, endpoints=endpoints, refresh=args.refresh, retry_failed=args.retry_failed,
                     log=log)
    return 0
