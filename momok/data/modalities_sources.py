"""Where each benchmark's entity texts and image files come from (the public primary sources).

* ``wikidata`` (MKG-W, names ``http://www.wikidata.org/entity/Q42``): Wikidata ``wbgetentities``,
  50 ids a call: English label and description (text ``"label: description"``, CC0) and the
  ``P18`` (image) claims, preferred rank first, deprecated ones skipped.
* ``yago`` (MKG-Y, names ``Douglas_Adams``): a YAGO name is an English Wikipedia title with
  underscores; ``wbgetentities`` with ``sites=enwiki&titles=...`` (50 a call) finds the Wikidata item
  of each title and answers the same as above; titles it does not match (pages renamed since, now
  redirects) are looked up in the English Wikipedia API, which follows redirects.
* ``dbpedia`` (DB15K, names ``<http://dbpedia.org/resource/Anarchism>``): the DBpedia SPARQL endpoint,
  50 resources a query: the English ``dbo:abstract`` (CC BY-SA 3.0) and the ``dbo:thumbnail`` and
  ``foaf:depiction`` images (Wikimedia Commons ``Special:FilePath`` links); a resource that is now a
  redirect (``dbo:wikiPageRedirects``) takes its target's (a second query).

Image files are Wikimedia Commons file names; :func:`commons_info` asks the Commons API (50 files a
call) for each file's licence, original size and sha1, and :func:`image_url` is the ``Special:FilePath``
thumbnail link at a fixed width. Every request goes through a :class:`ResponseCache`.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from urllib.parse import quote, unquote, urlencode

from momok.data.modalities_http import ResponseCache
from momok.errors import MomokError

BATCH = 50
"""Ids, titles, resources or files per API call (the MediaWiki APIs' limit for ordinary clients)."""

WIKIDATA_LICENCE = "CC0-1.0"
DBPEDIA_LICENCE = "CC-BY-SA-3.0"

SOURCES = ("wikidata", "yago", "dbpedia")
DATASET_SOURCES = {"MKG-W": "wikidata", "MKG-Y": "yago", "DB15K": "dbpedia"}
"""The source of each benchmark whose modalities can be fetched (``--source`` picks one for other names)."""

UNSUPPORTED = {
    "KVC16K": (
        "KVC16K's entities are Chinese words from Kuaipedia (a short-video encyclopedia) with no public "
        "per-entity image or description source; the only public route is a lookup by label in Chinese "
        "Wikipedia/Wikidata (wbsearchentities language=zh), which is ambiguous for common words and is not "
        "implemented. Use the authors' feature bundle (snakemake --config features=official) or the entity "
        "names as text (momok features text without descriptions.tsv)."
    ),
}
"""Benchmarks whose modalities cannot be fetched from public primary sources, and why."""


@dataclass(frozen=True)
class Endpoints:
    """Base URLs of the services (tests point them at a local server)."""

    wikidata_api: str = "https://www.wikidata.org/w/api.php"
    enwiki_api: str = "https://en.wikipedia.org/w/api.php"
    commons_api: str = "https://commons.wikimedia.org/w/api.php"
    commons_filepath: str = "https://commons.wikimedia.org/wiki/Special:FilePath"
    dbpedia_sparql: str = "https://dbpedia.org/sparql"


@dataclass
class EntityRecord:
    """What a source says about one entity: its text and candidate image files, and how it was found."""

    text: str | None = None
    text_url: str | None = None
    text_licence: str | None = None
    images: list[str] = field(default_factory=list)  # Commons file names, preferred first
    route: dict[str, str] = field(default_factory=dict)  # provenance: ids and titles on the way
    missing: str | None = None  # why the source has nothing for it


def batches(items: Sequence[str], size: int = BATCH) -> Iterator[list[str]]:
    for start in range(0, len(items), size):
        yield list(items[start:start + size])


def number_of_calls(count: int) -> int:
    return math.ceil(count / BATCH)


def commons_name(value: str) -> str:
    """A Commons file name in MediaWiki's normal form: spaces, first letter upper case, no ``File:``."""
    name = unquote(value).replace("_", " ").strip()
    if name.lower().startswith("file:"):
        name = name[5:]
    return name[:1].upper() + name[1:]


def image_url(endpoints: Endpoints, name: str, width: int) -> str:
    return f"{endpoints.commons_filepath}/{quote(name.replace(' ', '_'))}?width={width}"


def _api_json(cache: ResponseCache, url: str) -> dict:
    body = cache.get(url)
    if body is None:
        raise MomokError(f"{url}: HTTP 404 from an API endpoint (check the endpoint URLs)")
    try:
        data = json.loads(body)
    except ValueError:
        raise MomokError(f"{url}: the answer is not JSON ({body[:80]!r})") from None
    if isinstance(data, dict) and "error" in data:
        error = data["error"]
        raise MomokError(f"{url}: API error {error.get('code')}: {error.get('info')}")
    return data


# --------------------------------------------------------------------------------------------
# Wikidata (MKG-W) and YAGO via English Wikipedia titles (MKG-Y)

_QID = re.compile(r"^<?https?://www\.wikidata\.org/entity/(Q\d+)>?$")


def wikidata_urls(endpoints: Endpoints, keys: Sequence[str], *, by_title: bool) -> list[str]:
    """The ``wbgetentities`` calls for Wikidata ids (or, ``by_title``, English Wikipedia titles)."""
    urls = []
    for chunk in batches(keys):
        params = {"action": "wbgetentities", "props": "labels|descriptions|claims|sitelinks",
                  "languages": "en", "sitefilter": "enwiki", "format": "json"}
        if by_title:
            params.update(sites="enwiki", titles="|".join(chunk))
        else:
            params["ids"] = "|".join(chunk)
        urls.append(f"{endpoints.wikidata_api}?{urlencode(params)}")
    return urls


def _item_record(item: dict) -> EntityRecord:
    qid = item["id"]
    label = item.get("labels", {}).get("en", {}).get("value", "").strip()
    description = item.get("descriptions", {}).get("en", {}).get("value", "").strip()
    text = f"{label}: {description}" if label and description else (label or description or None)
    claims = [c for c in item.get("claims", {}).get("P18", []) if c.get("rank") != "deprecated"
              and c.get("mainsnak", {}).get("snaktype") == "value"]
    claims.sort(key=lambda c: c.get("rank") != "preferred")  # stable: preferred first, then as listed
    images = []
    for claim in claims:
        name = commons_name(claim["mainsnak"]["datavalue"]["value"])
        if name not in images:
            images.append(name)
    return EntityRecord(text=text, text_url=f"https://www.wikidata.org/wiki/{qid}",
                        text_licence=WIKIDATA_LICENCE if text else None, images=images,
                        missing=None if text or images else "no English label, description or P18")


def _items_by_id(cache: ResponseCache, endpoints: Endpoints, qids: Sequence[str]) -> dict[str, dict | None]:
    """Wikidata id -> its item as ``wbgetentities`` answers it (a redirected id: the target's), None if missing."""
    items: dict[str, dict | None] = {}
    for url in wikidata_urls(endpoints, list(dict.fromkeys(qids)), by_title=False):
        for key, item in _api_json(cache, url).get("entities", {}).items():
            items[item.get("redirects", {}).get("from", key)] = None if "missing" in item else item
    return items


def _found(item: dict, route: dict[str, str]) -> EntityRecord:
    """The record of a Wikidata item, with the way it was found (``route``) and its id."""
    record = _item_record(item)
    record.route = {**route, "wikidata": item["id"]}
    return record


def wikidata_records(cache: ResponseCache, endpoints: Endpoints, names: Sequence[str]) -> dict[str, EntityRecord]:
    """MKG-W: entity name (a Wikidata URI) -> record."""
    qids = {name: match.group(1) for name in names if (match := _QID.match(name))}
    items = _items_by_id(cache, endpoints, list(qids.values()))
    out = {}
    for name in names:
        if name not in qids:
            out[name] = EntityRecord(missing="not a Wikidata entity URI")
        elif items.get(qids[name]) is None:
            out[name] = EntityRecord(route={"wikidata": qids[name]}, missing="no such Wikidata item")
        else:
            item = items[qids[name]]
            out[name] = _found(item, {"redirected_from": qids[name]} if item["id"] != qids[name] else {})
    return out


def yago_title(name: str) -> str:
    """The English Wikipedia title of a YAGO name: underscores as spaces, first letter upper case."""
    title = name.replace("_", " ").strip()
    return title[:1].upper() + title[1:]


def enwiki_urls(endpoints: Endpoints, titles: Sequence[str]) -> list[str]:
    """English Wikipedia ``query`` calls that follow redirects and give each page's Wikidata id."""
    return [f"{endpoints.enwiki_api}?" + urlencode({
        "action": "query", "titles": "|".join(chunk), "redirects": "1", "prop": "pageprops",
        "ppprop": "wikibase_item", "format": "json", "formatversion": "2"}) for chunk in batches(titles)]


def enwiki_items(cache: ResponseCache, endpoints: Endpoints, titles: Sequence[str]) -> dict[str, tuple[str, str]]:
    """English Wikipedia title -> (the page's title after normalisation and redirects, its Wikidata id)."""
    out = {}
    for chunk, url in zip(batches(titles), enwiki_urls(endpoints, titles)):
        query = _api_json(cache, url).get("query", {})
        steps = {s["from"]: s["to"] for s in query.get("normalized", []) + query.get("redirects", [])}
        pages = {p.get("title"): p.get("pageprops", {}).get("wikibase_item") for p in query.get("pages", [])}
        for title in chunk:
            final, seen = title, set()
            while final in steps and final not in seen:
                seen.add(final)
                final = steps[final]
            if pages.get(final):
                out[title] = (final, pages[final])
    return out


def yago_records(cache: ResponseCache, endpoints: Endpoints, names: Sequence[str]) -> dict[str, EntityRecord]:
    """MKG-Y: YAGO name -> English Wikipedia title -> Wikidata item -> record.

    First ``wbgetentities`` by ``enwiki`` title (50 a call); titles it does not match (renamed pages:
    redirects) go through the English Wikipedia API (redirects followed, the page's ``wikibase_item``,
    50 a call) and then ``wbgetentities`` by id.
    """
    titles: dict[str, str] = {}
    for name in names:
        titles.setdefault(yago_title(name), name)
    found: dict[str, EntityRecord] = {}
    for url in wikidata_urls(endpoints, list(titles), by_title=True):
        for item in _api_json(cache, url).get("entities", {}).values():
            title = item.get("sitelinks", {}).get("enwiki", {}).get("title")
            if "missing" not in item and title in titles:
                found[title] = _found(item, {"enwiki": title})
    leftover = [t for t in titles if t not in found]
    pages = enwiki_items(cache, endpoints, leftover) if leftover else {}
    items = _items_by_id(cache, endpoints, [qid for _, qid in pages.values()])
    for title, (page, qid) in pages.items():
        if items.get(qid) is not None:
            found[title] = _found(items[qid], {"enwiki": title, "enwiki_page": page})
    out = {}
    for name in names:
        title = yago_title(name)
        out[name] = found.get(title) or EntityRecord(route={"enwiki": title},
                                                     missing="no English Wikipedia page with a Wikidata item")
    return out


# --------------------------------------------------------------------------------------------
# DBpedia (DB15K)

_IRI_UNSAFE = re.compile(r'[\x00-\x20<>"{}|^`\\]')
ABSTRACT = "http://dbpedia.org/ontology/abstract"
THUMBNAIL = "http://dbpedia.org/ontology/thumbnail"
DEPICTION = "http://xmlns.com/foaf/0.1/depiction"
REDIRECT = "http://dbpedia.org/ontology/wikiPageRedirects"


def dbpedia_iri(name: str) -> str:
    """The IRI of a DB15K name (angle brackets dropped, characters SPARQL forbids in IRIs escaped)."""
    iri = name[1:-1] if name.startswith("<") and name.endswith(">") else name
    return _IRI_UNSAFE.sub(lambda m: quote(m.group(0)), iri)


def dbpedia_query(iris: Sequence[str]) -> str:
    values = " ".join(f"<{iri}>" for iri in iris)
    return (
        "SELECT ?s ?kind ?value WHERE { VALUES ?s { " + values + " } "
        f'{{ ?s <{ABSTRACT}> ?value . FILTER(lang(?value) = "en") BIND("abstract" AS ?kind) }} '
        f'UNION {{ ?s <{THUMBNAIL}> ?value . BIND("thumbnail" AS ?kind) }} '
        f'UNION {{ ?s <{DEPICTION}> ?value . BIND("depiction" AS ?kind) }} '
        f'UNION {{ ?s <{REDIRECT}> ?value . BIND("redirect" AS ?kind) }} }}'
    )


def dbpedia_urls(endpoints: Endpoints, iris: Sequence[str]) -> list[str]:
    return [f"{endpoints.dbpedia_sparql}?"
            + urlencode({"query": dbpedia_query(chunk), "format": "application/sparql-results+json"})
            for chunk in batches(iris)]


def _filepath_name(url: str) -> str | None:
    match = re.search(r"/Special:FilePath/([^?#]+)", url)
    return commons_name(match.group(1)) if match else None


def _dbpedia_kinds(cache: ResponseCache, endpoints: Endpoints, iris: Sequence[str]) -> dict[str, dict]:
    """IRI -> {"abstract", "thumbnail", "depiction", "redirect": [values]} for the IRIs DBpedia knows."""
    wanted, found = set(iris), {}
    for url in dbpedia_urls(endpoints, list(iris)):
        for row in _api_json(cache, url).get("results", {}).get("bindings", []):
            subject = row.get("s", {}).get("value")
            if subject not in wanted:
                continue
            kinds = found.setdefault(subject, {"abstract": [], "thumbnail": [], "depiction": [], "redirect": []})
            kind, value = row.get("kind", {}).get("value"), row.get("value", {}).get("value", "")
            if kind in kinds and value:
                kinds[kind].append(value)
    return found


def dbpedia_records(cache: ResponseCache, endpoints: Endpoints, names: Sequence[str]) -> dict[str, EntityRecord]:
    """DB15K: DBpedia resource -> record (English abstract; thumbnail, then depictions). A resource
    that is a redirect (``dbo:wikiPageRedirects``) with nothing of its own takes its target's data."""
    iris = {dbpedia_iri(name): name for name in names}
    found = _dbpedia_kinds(cache, endpoints, list(iris))
    redirects = {iri: kinds["redirect"][0] for iri, kinds in found.items()
                 if kinds["redirect"] and not (kinds["abstract"] or kinds["thumbnail"] or kinds["depiction"])}
    targets = _dbpedia_kinds(cache, endpoints, sorted(set(redirects.values()))) if redirects else {}
    out = {}
    for iri, name in iris.items():
        route = {"dbpedia": iri}
        kinds = found.get(iri)
        if iri in redirects and redirects[iri] in targets:
            route["redirect"] = redirects[iri]
            kinds = targets[redirects[iri]]
        if kinds is None or not (kinds["abstract"] or kinds["thumbnail"] or kinds["depiction"]):
            out[name] = EntityRecord(route=route, missing="no English abstract or image in DBpedia")
            continue
        text = " ".join(kinds["abstract"][0].split()) if kinds["abstract"] else None
        images = []
        for link in kinds["thumbnail"] + sorted(kinds["depiction"]):
            file = _filepath_name(link)
            if file and file not in images:
                images.append(file)
        page = route.get("redirect", iri).replace("/resource/", "/page/", 1)
        out[name] = EntityRecord(text=text, text_url=page, text_licence=DBPEDIA_LICENCE if text else None,
                                 images=images, route=route)
    return out


RESOLVERS = {"wikidata": wikidata_records, "yago": yago_records, "dbpedia": dbpedia_records}


def metadata_urls(source: str, endpoints: Endpoints, names: Sequence[str]) -> list[str]:
    """The metadata calls a source makes for ``names`` (plan mode counts them and checks the cache)."""
    if source == "wikidata":
        return wikidata_urls(endpoints, [m.group(1) for m in map(_QID.match, names) if m], by_title=False)
    if source == "yago":
        return wikidata_urls(endpoints, list(dict.fromkeys(map(yago_title, names))), by_title=True)
    return dbpedia_urls(endpoints, list(dict.fromkeys(map(dbpedia_iri, names))))


# --------------------------------------------------------------------------------------------
# Wikimedia Commons file information (licence, sha1)

_TAG = re.compile(r"<[^>]+>")


def commons_info_urls(endpoints: Endpoints, files: Sequence[str]) -> list[str]:
    return [f"{endpoints.commons_api}?" + urlencode({
        "action": "query", "titles": "|".join(f"File:{f}" for f in chunk), "prop": "imageinfo",
        "iiprop": "sha1|size|extmetadata", "iiextmetadatafilter": "LicenseShortName|Artist",
        "format": "json", "formatversion": "2"}) for chunk in batches(files)]


def commons_info(cache: ResponseCache, endpoints: Endpoints, files: Sequence[str]) -> dict[str, dict]:
    """Commons file name -> ``{"licence", "artist", "sha1", "size"}``; files Commons lacks are left out."""
    out = {}
    for url in commons_info_urls(endpoints, files):
        query = _api_json(cache, url).get("query", {})
        back = {n["to"]: n["from"] for n in query.get("normalized", [])}
        for page in query.get("pages", []):
            title = back.get(page.get("title", ""), page.get("title", ""))
            info = (page.get("imageinfo") or [None])[0]
            if page.get("missing") or info is None:
                continue
            meta = info.get("extmetadata", {})
            plain = lambda key: _TAG.sub("", meta.get(key, {}).get("value", "")).strip()  # noqa: E731
            out[commons_name(title)] = {"licence": plain("LicenseShortName") or "unknown (see the file page)",
                                        "artist": plain("Artist"), "sha1": info.get("sha1", ""),
                                        "size": int(info.get("size", 0))}
    return out
