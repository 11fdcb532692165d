"""``momok features text``: one vector per entity from a frozen transformers text encoder.

The paper encodes entity descriptions with BERT (DB15K: 768-d); MKG-W/MKG-Y use 384-d, MiniLM-sized
vectors. Texts come from ``<dataset>/descriptions.tsv``. Where the raw data have no descriptions, the
best text they allow is built from the entity names (see :func:`name_text`) and, for Wikidata ids, from
a labels side file; the source of every entity's text is recorded in the metadata (``text_source``: a
JSON count summary; ``text_source_per_entity``: a JSON list in entity-id order; ``name_scheme``).
Entities without any text get ``mask = 0`` and a filler row (``--missing``).
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
import re
import unicodedata
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from urllib.parse import unquote

import torch

from momok.data.datasets import quote_excerpt
from momok.errors import InputError, MomokError, first_line
from momok.features import store
from momok.features.image import resolve_device

POOLINGS = ("mean", "cls")
"""``mean``: average of the last hidden states over the real (non-padding) tokens, the
sentence-transformers convention (right for MiniLM); ``cls``: the last hidden state of the first token."""

FALLBACKS = ("auto", "names", "none")
"""Where an entity has no row in descriptions.tsv: ``auto`` builds text from names/labels only when the
dataset has no descriptions.tsv at all (a dataset that ships descriptions decides which entities have
text); ``names`` builds it for every entity without a description; ``none`` never (such entities are
missing)."""

_DBPEDIA = re.compile(r"^<?https?://dbpedia\.org/resource/(.+?)>?$")
_WIKIDATA = re.compile(r"^<?https?://www\.wikidata\.org/entity/(Q\d+)>?$")
_CJK = re.compile(r"[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af]")


def detect_name_scheme(entities: Sequence[str]) -> str:
    """``dbpedia`` | ``wikidata`` | ``cjk`` | ``plain``, from the entity names.

    A scheme is chosen when at least 90% of the names follow it (``cjk``: at least half contain CJK
    characters, as KVC16K's Chinese words); anything else is ``plain`` (YAGO-style names with underscores).
    """
    n = max(len(entities), 1)
    if sum(bool(_DBPEDIA.match(e)) for e in entities) >= 0.9 * n:
        return "dbpedia"
    if sum(bool(_WIKIDATA.match(e)) for e in entities) >= 0.9 * n:
        return "wikidata"
    if sum(bool(_CJK.search(e)) for e in entities) >= 0.5 * n:
        return "cjk"
    return "plain"


def name_text(name: str, scheme: str) -> str | None:
    """Readable text from an entity name, or ``None`` when the name carries none (a Wikidata id).

    ``dbpedia``: the resource part of the URI, percent-decoded, underscores as spaces
    (``<http://dbpedia.org/resource/The_Longest_Yard_(2005_film)>`` -> ``The Longest Yard (2005 film)``);
    ``plain`` (YAGO): percent-decoded, underscores as spaces; ``cjk``: the name as it is.
    """
    if scheme == "wikidata" or _WIKIDATA.match(name):
        return None
    if scheme == "cjk":
        return name.strip() or None
    match = _DBPEDIA.match(name)
    core = match.group(1) if match else name
    text = " ".join(unquote(core).replace("_", " ").split())
    return unicodedata.normalize("NFC", text) or None


def find_side_file(root: Path, side_file: str | Path | None) -> Path | None:
    """``side_file`` when given, else the first ``entity_labels*.tsv`` in the dataset folder (sorted), else None."""
    if side_file is not None:
        path = Path(side_file)
        if not path.is_file():
            raise InputError(path, "side file not found")
        return path
    found = sorted(root.glob("entity_labels*.tsv"))
    return found[0] if found else None


def read_side_file(path: Path) -> dict[str, tuple[str, str]]:
    """id -> (label, description) from a TSV with the header ``qid label description source``.

    Blank rows are skipped. ``InputError`` (one line, the line number where known) on a wrong header,
    a row with fewer than 3 columns, invalid UTF-8 or a row the csv module cannot read (a field over
    its size limit).
    """
    reader = None
    try:
        with open(path, encoding="utf-8", newline="") as f:
            reader = csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE)
            rows = (row for row in reader if "".join(row).strip())
            header = next(rows, None)
            if not header or header[:3] != ["qid", "label", "description"]:
                got = quote_excerpt("\t".join(header or []))
                raise InputError(path, f"expected the header 'qid<TAB>label<TAB>description[<TAB>source]', got {got}",
                                 line=reader.line_num or 1)
            out: dict[str, tuple[str, str]] = {}
            for row in rows:
                if len(row) < 3:
                    raise InputError(path, f"expected at least 3 tab-separated columns, got {len(row)}",
                                     line=reader.line_num)
                out[row[0].strip()] = (row[1].strip(), row[2].strip())
    except UnicodeDecodeError as err:
        raise InputError(path, f"not valid UTF-8 ({err.reason})") from None
    except csv.Error as err:
        raise InputError(path, f"unreadable TSV row ({err})", line=reader.line_num if reader else None) from None
    return out


def build_texts(root: str | Path, entities: Sequence[str], *, fallback: str = "auto",
                side_file: str | Path | None = None) -> tuple[list[str | None], list[str], str, Path | None]:
    """Per entity (id order): its text (or None) and the text's source; the name scheme; the side file used.

    Sources: ``description`` (descriptions.tsv), ``label+description`` / ``label`` (side file, as
    ``"label: description"`` or the label alone), ``name`` (decoded entity name), ``missing``.
    """
    from momok.data.datasets import read_descriptions

    if fallback not in FALLBACKS:
        raise MomokError(f"--fallback must be one of {FALLBACKS}")
    root = Path(root)
    descriptions = read_descriptions(root, entities=entities)
    use_names = fallback == "names" or (fallback == "auto" and not (root / "descriptions.tsv").exists())
    scheme = detect_name_scheme(entities)
    side_path = find_side_file(root, side_file) if use_names else None
    side = read_side_file(side_path) if side_path else {}
    texts: list[str | None] = []
    sources: list[str] = []
    for name in entities:
        text, source = descriptions.get(name, "").strip() or None, "description"
        if text is None and use_names:
            wikidata = _WIKIDATA.match(name)
            key = wikidata.group(1) if wikidata else name
            if key in side and side[key][0]:
                label, description = side[key]
                text, source = (f"{label}: {description}", "label+description") if description else (label, "label")
            else:
                text, source = name_text(name, scheme), "name"
        if text is None:
            source = "missing"
        texts.append(text)
        sources.append(source)
    return texts, sources, scheme, side_path


def load_text_model(model: str, device: torch.device):
    from transformers import AutoModel, AutoTokenizer

    local = Path(model).exists()
    offline = local or os.environ.get("HF_HUB_OFFLINE", "").strip().lower() not in ("", "0", "false", "no")
    try:
        tokenizer = AutoTokenizer.from_pretrained(model, local_files_only=offline)
        encoder = AutoModel.from_pretrained(model, local_files_only=offline)
    except Exception as err:
        where = "the local folder" if local else ("the Hugging Face cache (HF_HUB_OFFLINE is set)" if offline
                                                  else "the Hugging Face hub or its cache")
        raise MomokError(f"cannot load text model {model!r} from {where}: {type(err).__name__}: "
                         f"{first_line(err)}") from err
    return tokenizer, encoder.eval().to(device)


def _model_identity(model: str, encoder) -> str:
    """Name plus a digest of the local weight files (so a changed model folder is noticed)."""
    path = Path(model)
    if path.is_dir():
        digest = hashlib.sha256()
        for p in sorted(path.rglob("*")):
            if p.is_file() and p.suffix in (".safetensors", ".bin", ".json", ".txt"):
                digest.update(f"{p.relative_to(path)}\t{p.stat().st_size}\n".encode("utf-8"))
        resolved = path.resolve()
        return f"{resolved.parent.name}/{resolved.name} (local folder, files {digest.hexdigest()[:16]})"
    commit = getattr(encoder.config, "_commit_hash", None)
    return f"{model}" + (f"@{commit}" if commit else "")


def make_encode_chunk(tokenizer, model, texts: list[str | None], *, pooling: str, max_length: int,
                      batch_size: int, device: torch.device):
    """``encode_chunk(indices)`` for :func:`store.run_chunked`: pooled last hidden states of each text.

    Within a chunk, texts are sorted by length (then index) before batching, which keeps padding small;
    the order depends only on the chunk, so results are reproducible and resumable.
    """
    if pooling not in POOLINGS:
        raise MomokError(f"--pooling must be one of {POOLINGS}")
    dim = int(model.config.hidden_size)

    def encode_chunk(indices: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
        out = torch.zeros(len(indices), dim)
        present = torch.tensor([texts[i] is not None for i in indices], dtype=torch.bool)
        rows = sorted((r for r in range(len(indices)) if present[r]), key=lambda r: (len(texts[indices[r]]), r))
        for start in range(0, len(rows), batch_size):
            batch_rows = rows[start:start + batch_size]
            enc = tokenizer([texts[indices[r]] for r in batch_rows], padding=True, truncation=True,
                            max_length=max_length, return_tensors="pt").to(device)
            with torch.inference_mode():
                hidden = model(**enc).last_hidden_state
            if pooling == "cls":
                pooled = hidden[:, 0]
            else:
                weights = enc["attention_mask"].unsqueeze(-1).to(hidden.dtype)
                pooled = (hidden * weights).sum(1) / weights.sum(1).clamp(min=1.0)
            out[torch.tensor(batch_rows)] = pooled.to("cpu", torch.float32)
        return out, present

    return encode_chunk


def extract_text_features(dataset: str | Path, out: str | Path, *, model: str = "bert-base-uncased",
                          pooling: str = "mean", max_length: int = 128, batch_size: int = 64,
                          missing: str = "mean", side_file: str | Path | None = None, fallback: str = "auto",
                          device: str = "auto", chunk_size: int = 1024, force: bool = False,
                          progress: bool = True) -> store.FeatureTable | None:
    """Write ``out`` with one text vector per entity of ``dataset``; returns the table (``None`` if up to date).

    ``model``: a Hugging Face hub name or a local folder. ``max_length``: tokens kept per text (longer
    texts are truncated). ``batch_size``: texts per forward pass. ``missing``: filler of entities without
    text (``mean`` | ``zeros``). ``side_file``: Wikidata labels TSV (default: ``entity_labels*.tsv`` in the
    dataset folder). ``fallback``: see :data:`FALLBACKS`. ``chunk_size``: entities per resumable chunk.
    """
    from momok.data.datasets import read_id_map

    root = Path(dataset)
    entities = read_id_map(root / "entity2id.txt")
    if missing not in store.MISSING_RULES:  # checked before the model is loaded
        raise MomokError(f"--missing must be one of {store.MISSING_RULES}")
    texts, sources, scheme, side_path = build_texts(root, entities, fallback=fallback, side_file=side_file)
    if all(t is None for t in texts):
        raise InputError(root, "no entity has any text (no descriptions.tsv, and names/labels give none)")
    dev = resolve_device(device)
    tokenizer, encoder = load_text_model(model, dev)
    identity = _model_identity(model, encoder)
    texts_digest = hashlib.sha256(json.dumps(texts, ensure_ascii=False).encode("utf-8")).hexdigest()
    settings = {"modality": "text", "encoder": identity, "pooling": pooling, "max_length": max_length,
                "batch_size": batch_size, "device": dev.type, "inputs": texts_digest,
                "entities_sha256": store.entity_list_digest(entities)}
    encode = make_encode_chunk(tokenizer, encoder, texts, pooling=pooling, max_length=max_length,
                               batch_size=batch_size, device=dev)
    metadata = store.base_metadata("text", "encoder", f"transformers:{identity}/{pooling}", identity, entities)
    metadata.update({
        "text_source": json.dumps(dict(sorted(Counter(sources).items())), sort_keys=True),
        "text_source_per_entity": json.dumps(sources),
        "name_scheme": scheme,
        "side_file": side_path.name if side_path else "",
        "pooling": pooling,
        "max_length": str(max_length),
        "device": dev.type,
    })
    return store.extract_to_file(out, entities, encode, settings=settings, missing=missing, metadata=metadata,
                                 chunk_size=chunk_size, force=force, progress=progress)
