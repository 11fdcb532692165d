"""Readers of the benchmark layout: id maps, triple splits, descriptions, inverse relations, quirks.

The four benchmarks (MKG-W, MKG-Y, DB15K, KVC16K) are read exactly as published::

    <root>/entity2id.txt, relation2id.txt   "name id" a line (space-separated; KVC16K entity2id: tab)
    <root>/train.txt, valid.txt, test.txt   "head relation tail ." a line, names, single spaces
    <root>/descriptions.tsv                 optional; header "entity<TAB>description"
    <root>/images/<entity_dirname(name)>/   optional; image files of that entity

Line ends may be ``\n``, ``\r\n`` or a lone ``\r`` (old Mac files are read, not rejected); blank
lines (empty or whitespace only, a trailing one included) carry nothing and are skipped, and
``load_dataset`` counts them in its ``QuirkReport``. Anything else malformed is an
``InputError(path, problem, line=N)`` naming the first offending line, on one line, quoting at most
``QUOTE_LIMIT`` characters of the offending text; nothing else is silently dropped or repaired. The
upstream files have known quirks (repeated lines, valid/test triples that are also in train, entities
that occur only in valid/test); ``load_dataset`` counts them in a ``QuirkReport`` and keeps them unless
asked otherwise (the paper's protocol uses the files as published).
"""

from __future__ import annotations

import urllib.parse
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import torch

from momok.errors import InputError

SPLITS = ("train", "valid", "test")


# ---------------------------------------------------------------------------------------------
# Low-level readers


#: At most this many characters of an offending line or name are quoted in an error message.
QUOTE_LIMIT = 80


def quote_excerpt(text: str) -> str:
    """``repr(text)``, cut to :data:`QUOTE_LIMIT` characters (with the full length) when longer."""
    if len(text) <= QUOTE_LIMIT:
        return repr(text)
    return f"{text[:QUOTE_LIMIT]!r}... ({len(text):,} characters)"


def _split_lines(text: str) -> list[str]:
    """``text`` cut at ``\r\n``, ``\n`` and lone ``\r``; one final line end does not start a line."""
    if "\r" in text:
        text = text.replace("\r\n", "\n").replace("\r", "\n")
    lines = text.split("\n")
    if lines[-1] == "":
        lines.pop()
    return lines


def _read_lines(path: Path) -> tuple[list[tuple[int, str]], int]:
    """The non-blank lines of a UTF-8 text file with their line numbers (from 1), and the number of
    blank lines (empty or whitespace only) skipped.

    Lines end at ``\n``, ``\r\n`` or a lone ``\r`` (the line ends of Python's universal newlines;
    other Unicode line separators are kept as characters). A leading byte-order mark is removed: it is
    an encoding artefact; every other character is kept as is.
    """
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise InputError(path, "file not found") from None
    except IsADirectoryError:
        raise InputError(path, "is a folder, expected a file") from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as err:
        line = len(_split_lines(data[:err.start].decode("utf-8", errors="replace") + "\n"))  # lines so far
        raise InputError(path, f"not valid UTF-8 ({err.reason}) at byte offset {err.start:,}", line=line) from None
    if text.startswith("\ufeff"):  # a byte-order mark is an encoding artefact, not part of a name
        text = text[1:]
    numbered = [(number, line) for number, line in enumerate(_split_lines(text), start=1)]
    kept = [(number, line) for number, line in numbered if line.strip()]
    return kept, len(numbered) - len(kept)


def read_id_map(path: str | Path) -> list[str]:
    """Read an ``entity2id.txt`` / ``relation2id.txt`` file: names in id order.

    Each line is ``name<sep>id``. The separator is detected per line: a line that contains a tab is
    split on its last tab (KVC16K's entity2id), any other line on its last space (so names may
    contain spaces, never a tab). Ids must be non-negative integers forming exactly ``0..N-1`` in any
    line order. Blank lines are skipped. ``InputError`` (with the line number) on: a line without
    separator, an empty name, a non-integer id, a repeated id or name, an id missing from ``0..N-1``,
    a file without entries.
    """
    return _read_id_map(Path(path))[0]


def _read_id_map(path: Path) -> tuple[list[str], int]:
    """:func:`read_id_map` and the number of blank lines skipped."""
    lines, blank = _read_lines(path)
    by_id: dict[int, tuple[str, int]] = {}  # id -> (name, line number)
    line_of_name: dict[str, int] = {}
    for number, line in lines:
        sep = "\t" if "\t" in line else " "
        name, found, raw_id = line.rpartition(sep)
        if not found:
            raise InputError(path, f"expected 'name id' separated by a space or a tab, got {quote_excerpt(line)}",
                             line=number)
        if not name:
            raise InputError(path, f"empty name in {quote_excerpt(line)}", line=number)
        if not (raw_id.isascii() and raw_id.isdigit()):
            raise InputError(path, f"id {quote_excerpt(raw_id)} is not a non-negative integer", line=number)
        index = int(raw_id)
        if index in by_id:
            raise InputError(path, f"id {index} of {quote_excerpt(name)} is already used by "
                                   f"{quote_excerpt(by_id[index][0])} on line {by_id[index][1]}", line=number)
        if name in line_of_name:
            raise InputError(path, f"name {quote_excerpt(name)} is repeated (first on line {line_of_name[name]})",
                             line=number)
        by_id[index] = (name, number)
        line_of_name[name] = number
    if not by_id:
        raise InputError(path, "no entries")
    n = len(by_id)
    if max(by_id) != n - 1:
        missing = min(set(range(n)) - by_id.keys())
        largest = max(by_id)
        raise InputError(path, f"ids are not contiguous: {n} entries but id {largest} on line "
                               f"{by_id[largest][1]}; id {missing} is missing", line=by_id[largest][1])
    return [by_id[i][0] for i in range(n)], blank


def _long_line_readings(fields: list[str], entity_ids: dict[str, int],
                        relation_ids: dict[str, int]) -> list[tuple[int, int, int]]:
    """Every way to read ``fields`` as ``head relation tail`` names that contain spaces."""
    found = []
    n = len(fields)
    for i in range(1, n - 1):
        head = " ".join(fields[:i])
        if head not in entity_ids:
            continue
        for j in range(i + 1, n):
            relation, tail = " ".join(fields[i:j]), " ".join(fields[j:])
            if relation in relation_ids and tail in entity_ids:
                found.append((entity_ids[head], relation_ids[relation], entity_ids[tail]))
    return found


def read_triples(path: str | Path, entity_ids: dict[str, int], relation_ids: dict[str, int]) -> torch.Tensor:
    """Read a split file into a ``LongTensor[n, 3]`` of ``(head, relation, tail)`` ids, in file order.

    Each line is ``head relation tail .`` separated by single spaces; the final `` .`` may be left
    out. Every line is kept (repeated lines included); blank lines are skipped. A line with more
    fields is accepted only when exactly one reading of it as known names that contain spaces exists.
    ``InputError`` (with the line number) on: a wrong number of fields, an unknown entity or relation,
    a file without triples.
    """
    return _read_triples(Path(path), entity_ids, relation_ids)[0]


def _read_triples(path: Path, entity_ids: dict[str, int],
                  relation_ids: dict[str, int]) -> tuple[torch.Tensor, int]:
    """:func:`read_triples` and the number of blank lines skipped."""
    lines, blank = _read_lines(path)
    rows: list[tuple[int, int, int]] = []
    append = rows.append
    for number, line in lines:
        fields = line.split(" ")
        if fields[-1] == "." and len(fields) > 1:
            fields.pop()
        if len(fields) == 3:
            h, r, t = fields
            try:
                append((entity_ids[h], relation_ids[r], entity_ids[t]))
                continue
            except KeyError:
                pass
            if h not in entity_ids:
                raise InputError(path, f"unknown entity {quote_excerpt(h)} (head; not in entity2id)", line=number)
            if r not in relation_ids:
                raise InputError(path, f"unknown relation {quote_excerpt(r)} (not in relation2id)", line=number)
            raise InputError(path, f"unknown entity {quote_excerpt(t)} (tail; not in entity2id)", line=number)
        readings = _long_line_readings(fields, entity_ids, relation_ids) if len(fields) > 3 else []
        if len(readings) > 1:
            raise InputError(path, f"ambiguous: {quote_excerpt(line)} reads as 'head relation tail' in {len(readings)} "
                                   f"ways with names that contain spaces", line=number)
        if not readings:
            raise InputError(path, f"expected 'head relation tail .' separated by single spaces, "
                                   f"got {len(fields):,} field(s): {quote_excerpt(line)}", line=number)
        append(readings[0])
    if not rows:
        raise InputError(path, "no triples (empty split)")
    return torch.tensor(rows, dtype=torch.long), blank


def entity_dirname(name: str) -> str:
    """The folder name of an entity under ``images/``: ``urllib.parse.quote(name, safe="")``.

    URIs become safe folder names (``/`` -> ``%2F``); plain names (``Gilles_Mbang_Ondo``) stay as they are.
    """
    return urllib.parse.quote(name, safe="")


def add_inverses(triples: torch.Tensor, num_relations: int) -> torch.Tensor:
    """``[n, 3]`` triples -> ``[2n, 3]``: the rows ``(h, r, t)`` followed by ``(t, r + R, h)``."""
    if triples.ndim != 2 or triples.shape[1] != 3:
        raise ValueError(f"expected triples of shape [n, 3], got {tuple(triples.shape)}")
    inverse = torch.stack([triples[:, 2], triples[:, 1] + num_relations, triples[:, 0]], dim=1)
    return torch.cat([triples, inverse], dim=0)


def read_descriptions(root: str | Path, *, entities: Iterable[str] | None = None) -> dict[str, str]:
    """Entity name -> description from ``<root>/descriptions.tsv`` (``{}`` when the file is absent).

    The file has the header ``entity<TAB>description`` and one row per entity with text: the name,
    a tab, then the description (the rest of the line, no quoting or escapes; a description holds
    no newline). Blank lines are skipped (a row ``name<TAB>`` with an empty description is a row).
    ``entities``: when given, a row naming an entity not in it is an ``InputError``. ``InputError``
    also on a wrong header, a row without tab, an empty name, a repeated entity.
    """
    path = Path(root) / "descriptions.tsv"
    if not path.exists():
        return {}
    lines, _ = _read_lines(path)
    if not lines or lines[0][1] != "entity\tdescription":
        number, got = lines[0] if lines else (1, "")
        raise InputError(path, f"expected the header 'entity<TAB>description', got {quote_excerpt(got)}", line=number)
    known = None if entities is None else set(entities)
    out: dict[str, str] = {}
    first_line: dict[str, int] = {}
    for number, line in lines[1:]:
        name, found, text = line.partition("\t")
        if not found:
            raise InputError(path, f"expected 'entity<TAB>description', got {quote_excerpt(line)}", line=number)
        if not name:
            raise InputError(path, "empty entity name", line=number)
        if name in out:
            raise InputError(path, f"entity {quote_excerpt(name)} is repeated (first on line {first_line[name]})",
                             line=number)
        if known is not None and name not in known:
            raise InputError(path, f"unknown entity {quote_excerpt(name)} (not in entity2id)", line=number)
        out[name] = text
        first_line[name] = number
    return out


# ---------------------------------------------------------------------------------------------
# Quirks


def _keys(triples: torch.Tensor, num_entities: int, num_relations: int) -> torch.Tensor:
    """One int64 per triple, equal iff the triples are equal."""
    return (triples[:, 0] * num_relations + triples[:, 1]) * num_entities + triples[:, 2]


def _first_occurrences(keys: torch.Tensor) -> torch.Tensor:
    """Sorted indices of the first occurrence of every distinct key."""
    _, inverse = torch.unique(keys, return_inverse=True)
    first = torch.full((int(inverse.max()) + 1,), len(keys), dtype=torch.long)
    first = first.scatter_reduce(0, inverse, torch.arange(len(keys)), reduce="amin")
    return torch.sort(first).values


@dataclass
class QuirkReport:
    """Counts of the upstream files' quirks, computed on the splits as published (before any drop).

    num_lines: split -> number of triple lines. unique: split -> distinct triples.
    duplicate_lines: split -> lines that repeat an earlier line of the same split (num_lines - unique).
    in_train: "valid"/"test" -> distinct triples of that split that are also in train.
    in_train_lines: "valid"/"test" -> lines of that split whose triple is also in train.
    valid_test_overlap: distinct triples in both valid and test.
    unseen_entities: "valid"/"test" -> entities of that split that occur in no train triple.
    unseen_total: entities of valid or test that occur in no train triple.
    unseen_lines: "valid"/"test" -> lines with at least one such entity.
    isolated_entities: entities of entity2id that occur in no split at all.
    blank_lines: file name -> blank lines (empty or whitespace only) skipped in it; files without any
        are not listed (filled by ``load_dataset``).
    actions: what ``load_dataset``'s options removed (empty with the defaults).
    """

    num_lines: dict[str, int]
    unique: dict[str, int]
    duplicate_lines: dict[str, int]
    in_train: dict[str, int]
    in_train_lines: dict[str, int]
    valid_test_overlap: int
    unseen_entities: dict[str, int]
    unseen_total: int
    unseen_lines: dict[str, int]
    isolated_entities: int
    blank_lines: dict[str, int] = field(default_factory=dict)
    actions: list[str] = field(default_factory=list)

    @classmethod
    def compute(cls, splits: dict[str, torch.Tensor], num_entities: int, num_relations: int) -> "QuirkReport":
        """Count the quirks of ``{"train", "valid", "test"} -> LongTensor[n, 3]``."""
        keys = {s: _keys(splits[s], num_entities, num_relations) for s in SPLITS}
        distinct = {s: torch.unique(keys[s]) for s in SPLITS}
        seen = torch.zeros(num_entities, dtype=torch.bool)
        seen[splits["train"][:, [0, 2]].reshape(-1)] = True
        used = seen.clone()
        unseen_entities, unseen_lines, in_train, in_train_lines = {}, {}, {}, {}
        unseen_any = torch.zeros(num_entities, dtype=torch.bool)
        for s in ("valid", "test"):
            ends = splits[s][:, [0, 2]]
            used[ends.reshape(-1)] = True
            mask = torch.zeros(num_entities, dtype=torch.bool)
            mask[ends.reshape(-1)] = True
            mask &= ~seen
            unseen_any |= mask
            unseen_entities[s] = int(mask.sum())
            unseen_lines[s] = int(mask[ends].any(dim=1).sum())
            in_train[s] = int(torch.isin(distinct[s], distinct["train"]).sum())
            in_train_lines[s] = int(torch.isin(keys[s], distinct["train"]).sum())
        return cls(
            num_lines={s: len(keys[s]) for s in SPLITS},
            unique={s: len(distinct[s]) for s in SPLITS},
            duplicate_lines={s: len(keys[s]) - len(distinct[s]) for s in SPLITS},
            in_train=in_train,
            in_train_lines=in_train_lines,
            valid_test_overlap=int(torch.isin(distinct["valid"], distinct["test"]).sum()),
            unseen_entities=unseen_entities,
            unseen_total=int(unseen_any.sum()),
            unseen_lines=unseen_lines,
            isolated_entities=int((~used).sum()),
        )

    @property
    def clean(self) -> bool:
        """True when the splits have none of the counted quirks."""
        return not (any(self.duplicate_lines.values()) or any(self.in_train.values()) or self.valid_test_overlap
                    or self.unseen_total or self.isolated_entities or any(self.blank_lines.values()))

    def lines(self) -> list[str]:
        """A readable summary, one finding a line."""
        out = []
        for s in SPLITS:
            if self.duplicate_lines[s]:
                out.append(f"{s}: {self.unique[s]} distinct triples in {self.num_lines[s]} lines "
                           f"({self.duplicate_lines[s]} repeated lines)")
        for s in ("valid", "test"):
            if self.in_train[s]:
                out.append(f"{s}: {self.in_train[s]} distinct triples ({self.in_train_lines[s]} lines) also in train")
        if self.valid_test_overlap:
            out.append(f"valid and test share {self.valid_test_overlap} distinct triples")
        if self.unseen_total:
            out.append(f"{self.unseen_total} entities of valid/test never occur in train "
                       f"(valid {self.unseen_entities['valid']} in {self.unseen_lines['valid']} lines, "
                       f"test {self.unseen_entities['test']} in {self.unseen_lines['test']} lines)")
        if self.isolated_entities:
            out.append(f"{self.isolated_entities} entities of entity2id occur in no split")
        for file, count in self.blank_lines.items():
            if count:
                out.append(f"{file}: {count} blank lines skipped")
        if not out:
            out.append("no quirks: no repeated lines, no overlap between splits, no unseen entities")
        out.extend(self.actions)
        return out

    def __str__(self) -> str:
        return "\n".join(self.lines())


# ---------------------------------------------------------------------------------------------
# The dataset


@dataclass
class KGDataset:
    """A benchmark folder in memory. Relation ids run over ``0..R-1``; the inverse of ``r`` is ``r + R``.

    train, valid, test: ``LongTensor[n, 3]`` of ``(head, relation, tail)`` ids (int64), file order.
    quirks: the upstream quirks of the files as published, and what the load options removed.
    """

    name: str
    root: Path
    entities: list[str]
    relations: list[str]
    train: torch.Tensor
    valid: torch.Tensor
    test: torch.Tensor
    quirks: QuirkReport

    @property
    def num_entities(self) -> int:
        return len(self.entities)

    @property
    def num_relations(self) -> int:
        """Relations without inverses (R)."""
        return len(self.relations)

    def split(self, name: str) -> torch.Tensor:
        """The ``"train"``, ``"valid"`` or ``"test"`` triples."""
        if name not in SPLITS:
            raise ValueError(f"unknown split {name!r}; expected one of {SPLITS}")
        return getattr(self, name)


def load_dataset(root: str | Path, *, duplicates: str = "keep", unseen: str = "keep") -> KGDataset:
    """Load a benchmark folder (``entity2id.txt``, ``relation2id.txt``, ``train/valid/test.txt``).

    duplicates: ``"keep"`` (default) keeps every line as published, so a triple repeated in a split
        counts once per line in training and evaluation (the paper's protocol); ``"drop"`` keeps only
        the first occurrence of each triple within each split. Triples shared between splits are never
        removed (they are counted in ``quirks``).
    unseen: ``"keep"`` (default) keeps valid/test triples whose head or tail never occurs in train (the
        paper's protocol); ``"drop"`` removes them from valid and test. The entity list and ids never
        change, so feature files stay aligned.
    ``quirks`` is computed on the files as published (blank lines, which carry nothing, are skipped and
    counted); its ``actions`` say what was removed.
    """
    if duplicates not in ("keep", "drop"):
        raise ValueError(f"duplicates must be 'keep' or 'drop', got {duplicates!r}")
    if unseen not in ("keep", "drop"):
        raise ValueError(f"unseen must be 'keep' or 'drop', got {unseen!r}")
    root = Path(root)
    if not root.is_dir():
        raise InputError(root, "dataset folder not found")
    blank: dict[str, int] = {}
    entities, blank["entity2id.txt"] = _read_id_map(root / "entity2id.txt")
    relations, blank["relation2id.txt"] = _read_id_map(root / "relation2id.txt")
    entity_ids = {name: i for i, name in enumerate(entities)}
    relation_ids = {name: i for i, name in enumerate(relations)}
    splits = {}
    for s in SPLITS:
        splits[s], blank[f"{s}.txt"] = _read_triples(root / f"{s}.txt", entity_ids, relation_ids)
    quirks = QuirkReport.compute(splits, len(entities), len(relations))
    quirks.blank_lines = {file: count for file, count in blank.items() if count}

    if duplicates == "drop":
        for s in SPLITS:
            before = len(splits[s])
            splits[s] = splits[s][_first_occurrences(_keys(splits[s], len(entities), len(relations)))]
            if len(splits[s]) < before:
                quirks.actions.append(f"duplicates=drop: removed {before - len(splits[s])} repeated lines from {s}")
    if unseen == "drop":
        seen = torch.zeros(len(entities), dtype=torch.bool)
        seen[splits["train"][:, [0, 2]].reshape(-1)] = True
        for s in ("valid", "test"):
            keep = seen[splits[s][:, 0]] & seen[splits[s][:, 2]]
            if not bool(keep.all()):
                quirks.actions.append(f"unseen=drop: removed {int((~keep).sum())} lines with entities unseen "
                                      f"in train from {s}")
            splits[s] = splits[s][keep]
            if len(splits[s]) == 0:
                raise InputError(root / f"{s}.txt", "no triples left after unseen=drop")
    return KGDataset(root.name, root, entities, relations, splits["train"], splits["valid"], splits["test"], quirks)
