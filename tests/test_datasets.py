"""Readers of the benchmark layout, their errors, inverse relations and the quirk report."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch

from conftest import EPSILON, TINY_DESCRIPTIONS, TINY_ENTITIES, TINY_RELATIONS, TINY_SPLITS
from momok.data.datasets import (QuirkReport, add_inverses, entity_dirname, load_dataset, read_descriptions,
                                 read_id_map, read_triples)
from momok.errors import InputError


def write(path: Path, text: str | bytes) -> Path:
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text, encoding="utf-8")
    return path


def assert_error(err: pytest.ExceptionInfo, path: Path, line: int | None, *words: str) -> None:
    """The message is ``path:line: problem`` and the problem says ``words``."""
    message = str(err.value)
    prefix = f"{path}:{line}: " if line is not None else f"{path}: "
    assert message.startswith(prefix), message
    assert err.value.line == line
    for word in words:
        assert word in message, (word, message)


# --- id maps ----------------------------------------------------------------------------------


def test_read_id_map_space_tab_and_order(tmp_path):
    path = write(tmp_path / "e.txt", "b 1\n<http://dbpedia.org/resource/A_(b)> 0\n欧式家具\t2\nNew York 3\r\n")
    assert read_id_map(path) == ["<http://dbpedia.org/resource/A_(b)>", "b", "欧式家具", "New York"]


def test_read_id_map_tab_line_keeps_spaces_in_name(tmp_path):
    path = write(tmp_path / "e.txt", "约瑟夫 斯大林\t0\nx 1\n")
    assert read_id_map(path) == ["约瑟夫 斯大林", "x"]


@pytest.mark.parametrize("text, line, words", [
    ("a 0\nb 0\n", 2, ["id 0", "'a'", "line 1"]),
    ("a 0\na 1\n", 2, ["name 'a' is repeated", "line 1"]),
    ("a 0\nb 2\n", 2, ["not contiguous", "id 1 is missing"]),
    ("a 0\nb x\n", 2, ["'x' is not a non-negative integer"]),
    ("a 0\nb -1\n", 2, ["'-1' is not a non-negative integer"]),
    ("a 0\nb 1.0\n", 2, ["'1.0'"]),
    ("a 0\nnoseparator\n", 2, ["expected 'name id'"]),
    ("a 0\n 1\n", 2, ["empty name"]),
    ("a 0\nb 1 \n", 2, ["'' is not a non-negative integer"]),
])
def test_read_id_map_errors(tmp_path, text, line, words):
    path = write(tmp_path / "entity2id.txt", text)
    with pytest.raises(InputError) as err:
        read_id_map(path)
    assert_error(err, path, line, *words)


def test_read_id_map_empty_missing_and_bad_encoding(tmp_path):
    empty = write(tmp_path / "empty.txt", "")
    with pytest.raises(InputError) as err:
        read_id_map(empty)
    assert_error(err, empty, None, "no entries")
    with pytest.raises(InputError) as err:
        read_id_map(tmp_path / "missing.txt")
    assert_error(err, tmp_path / "missing.txt", None, "file not found")
    latin = write(tmp_path / "latin.txt", "a 0\nb 1\nFranciaorsz\xe1g 2\n".encode("latin-1"))
    with pytest.raises(InputError) as err:
        read_id_map(latin)
    assert_error(err, latin, 3, "not valid UTF-8")


# --- triples ----------------------------------------------------------------------------------

E = {"a": 0, "b": 1, "New York": 2, "欧式家具": 3}
R = {"r": 0, "s": 1, "2": 2}


def test_read_triples_with_and_without_dot(tmp_path):
    path = write(tmp_path / "t.txt", "a r b .\nb s a\na r b .\n欧式家具 2 a .\r\n")
    assert read_triples(path, E, R).tolist() == [[0, 0, 1], [1, 1, 0], [0, 0, 1], [3, 2, 0]]
    assert read_triples(path, E, R).dtype == torch.long


def test_read_triples_names_with_spaces_need_one_reading(tmp_path):
    path = write(tmp_path / "t.txt", "New York r a .\na s New York\n")
    assert read_triples(path, E, R).tolist() == [[2, 0, 0], [0, 1, 2]]
    ents, rels = {"a": 0, "a b": 1, "c": 2}, {"r": 0, "b r": 1}
    path = write(tmp_path / "amb.txt", "a b r c .\n")  # (a, b r, c) and (a b, r, c)
    with pytest.raises(InputError) as err:
        read_triples(path, ents, rels)
    assert_error(err, path, 1, "ambiguous", "2 ways")
    path = write(tmp_path / "none.txt", "a b q c .\n")
    with pytest.raises(InputError) as err:
        read_triples(path, ents, rels)
    assert_error(err, path, 1, "4 field(s)")


@pytest.mark.parametrize("text, line, words", [
    ("a r b .\nc r b .\n", 2, ["unknown entity 'c'", "head"]),
    ("a r b .\na r c .\n", 2, ["unknown entity 'c'", "tail"]),
    ("a r b .\na t b .\n", 2, ["unknown relation 't'"]),
    ("a r b .\na r .\n", 2, ["expected 'head relation tail .'", "2 field(s)"]),
    ("a r b .\na r b . .\n", 2, ["4 field(s)"]),
    ("a r b c\n", 1, ["4 field(s)"]),
    ("a  r b .\n", 1, ["single spaces"]),
    ("a\tr\tb .\n", 1, ["1 field(s)"]),
])
def test_read_triples_errors(tmp_path, text, line, words):
    path = write(tmp_path / "valid.txt", text)
    with pytest.raises(InputError) as err:
        read_triples(path, E, R)
    assert_error(err, path, line, *words)


def test_read_triples_empty_split(tmp_path):
    path = write(tmp_path / "test.txt", "")
    with pytest.raises(InputError) as err:
        read_triples(path, E, R)
    assert_error(err, path, None, "empty split")


def test_kvc16k_style_dataset(tmp_path):
    """Tab-separated entity2id with Chinese names, integer relation names in the splits."""
    write(tmp_path / "entity2id.txt", "欧式家具\t0\n厦门大学\t1\n约瑟夫·维萨里奥诺维奇·斯大林\t2\n")
    write(tmp_path / "relation2id.txt", "0 0\n1 1\n2 2\n3 3\n")
    write(tmp_path / "train.txt", "欧式家具 2 厦门大学 .\n厦门大学 3 约瑟夫·维萨里奥诺维奇·斯大林 .\n")
    write(tmp_path / "valid.txt", "厦门大学 0 欧式家具 .\n")
    write(tmp_path / "test.txt", "欧式家具 1 约瑟夫·维萨里奥诺维奇·斯大林 .\n")
    ds = load_dataset(tmp_path)
    assert ds.relations == ["0", "1", "2", "3"] and ds.entities[2] == "约瑟夫·维萨里奥诺维奇·斯大林"
    assert ds.train.tolist() == [[0, 2, 1], [1, 3, 2]] and ds.test.tolist() == [[0, 1, 2]]
    assert ds.quirks.clean


# --- small helpers ------------------------------------------------------------------------------


def test_entity_dirname():
    assert entity_dirname("Gilles_Mbang_Ondo") == "Gilles_Mbang_Ondo"
    assert entity_dirname("http://www.wikidata.org/entity/Q1") == "http%3A%2F%2Fwww.wikidata.org%2Fentity%2FQ1"
    assert entity_dirname("<http://dbpedia.org/resource/A>") == "%3Chttp%3A%2F%2Fdbpedia.org%2Fresource%2FA%3E"
    assert "/" not in entity_dirname("a/b") and entity_dirname("..") == ".."


def test_add_inverses_matches_loop():
    g = torch.Generator().manual_seed(0)
    triples = torch.stack([torch.randint(0, 9, (20,), generator=g), torch.randint(0, 4, (20,), generator=g),
                           torch.randint(0, 9, (20,), generator=g)], dim=1)
    expected = [list(t) for t in triples.tolist()] + [[t, r + 4, h] for h, r, t in triples.tolist()]
    assert add_inverses(triples, 4).tolist() == expected
    with pytest.raises(ValueError):
        add_inverses(triples[:, :2], 4)


def test_read_descriptions(tiny_dataset_dir, tmp_path):
    assert read_descriptions(tiny_dataset_dir) == TINY_DESCRIPTIONS
    assert read_descriptions(tmp_path) == {}
    cases = [("entity description\na\tx\n", 1, "header"), ("entity\tdescription\na\tx\nb\n", 3, "expected"),
             ("entity\tdescription\na\tx\na\ty\n", 3, "repeated (first on line 2)"),
             ("entity\tdescription\n\tx\n", 2, "empty entity name")]
    for text, line, word in cases:
        path = write(tmp_path / "descriptions.tsv", text)
        with pytest.raises(InputError) as err:
            read_descriptions(tmp_path)
        assert_error(err, path, line, word)
    write(tmp_path / "descriptions.tsv", "entity\tdescription\na\tx\nzz\ty\n")
    with pytest.raises(InputError) as err:
        read_descriptions(tmp_path, entities=["a"])
    assert_error(err, tmp_path / "descriptions.tsv", 3, "unknown entity 'zz'")


# --- blank lines, line ends and long lines ------------------------------------------------------


def test_blank_lines_are_skipped_and_counted(tiny_dataset_dir):
    clean = load_dataset(tiny_dataset_dir)
    assert clean.quirks.blank_lines == {}
    for name, before, after in (("train.txt", "\n \n", "\n\n"), ("test.txt", "", "\t\n"), ("entity2id.txt", "\n", "")):
        path = tiny_dataset_dir / name
        lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
        path.write_text(before + "".join(lines[:2]) + "   \n" + "".join(lines[2:]) + after, encoding="utf-8")
    ds = load_dataset(tiny_dataset_dir)
    for split in ("train", "valid", "test"):
        assert torch.equal(ds.split(split), clean.split(split))
    assert ds.entities == clean.entities
    assert ds.quirks.blank_lines == {"entity2id.txt": 2, "train.txt": 5, "test.txt": 2}
    assert "train.txt: 5 blank lines skipped" in ds.quirks.lines() and not ds.quirks.clean
    write(tiny_dataset_dir / "descriptions.tsv", "\nentity\tdescription\n\nalpha\tx\n \n")
    assert read_descriptions(tiny_dataset_dir) == {"alpha": "x"}


def test_line_numbers_count_blank_lines(tmp_path):
    path = write(tmp_path / "valid.txt", "a r b .\n\n \nc r b .\n")
    with pytest.raises(InputError) as err:
        read_triples(path, E, R)
    assert_error(err, path, 4, "unknown entity 'c'")
    path = write(tmp_path / "blank.txt", "\n  \n\n")
    with pytest.raises(InputError) as err:
        read_triples(path, E, R)
    assert_error(err, path, None, "no triples")


def test_cr_only_line_ends_are_read(tmp_path):
    """Old Mac files (lone CR) read as their LF twins; an error names the line, not the whole file."""
    assert read_triples(write(tmp_path / "t.txt", "a r b .\rb s a\r\r欧式家具 2 a .\r"), E, R).tolist() == \
        [[0, 0, 1], [1, 1, 0], [3, 2, 0]]
    assert read_id_map(write(tmp_path / "e.txt", "b 1\ra 0\r\n")) == ["a", "b"]
    write(tmp_path / "descriptions.tsv", "entity\tdescription\ra\tx y\r")
    assert read_descriptions(tmp_path) == {"a": "x y"}
    path = write(tmp_path / "valid.txt", "a r b .\r" * 10_000 + "a r zz .\r" + "a r b .\r" * 10_000)
    with pytest.raises(InputError) as err:
        read_triples(path, E, R)
    assert_error(err, path, 10_001, "unknown entity 'zz'")
    assert len(str(err.value)) < len(str(path)) + 100


def test_invalid_utf8_line_number_with_cr_line_ends(tmp_path):
    path = write(tmp_path / "e.txt", b"a 0\rb 1\r\nc\xff 2\r")
    with pytest.raises(InputError) as err:
        read_id_map(path)
    assert_error(err, path, 3, "not valid UTF-8", "at byte offset 10")


def test_long_offending_text_is_quoted_short(tmp_path):
    long_name = "x" * 5000
    cases = [
        (write(tmp_path / "train.txt", "a r b .\n" + " ".join(["a"] * 4000) + "\n"), 2, "4,000 field(s): 'a a a"),
        (write(tmp_path / "test.txt", f"a r {long_name} .\n"), 1, "unknown entity 'xxxxx"),
        (write(tmp_path / "valid.txt", f"a {long_name} b\n"), 1, "unknown relation 'xxxxx"),
    ]
    for path, line, words in cases:
        with pytest.raises(InputError) as err:
            read_triples(path, E, R)
        assert_error(err, path, line, words, "characters)")
        assert len(err.value.problem) < 200 and "\n" not in str(err.value)
    path = write(tmp_path / "entity2id.txt", long_name + "\n")
    with pytest.raises(InputError) as err:
        read_id_map(path)
    assert_error(err, path, 1, "expected 'name id'", "... (5,000 characters)")
    assert len(err.value.problem) < 200
    write(tmp_path / "descriptions.tsv", "entity\tdescription\n" + long_name + "\n")
    with pytest.raises(InputError) as err:
        read_descriptions(tmp_path)
    assert len(err.value.problem) < 200 and err.value.line == 2


# --- the dataset and its quirks -----------------------------------------------------------------


def reference_quirks(splits: dict[str, list[tuple[int, int, int]]], num_entities: int) -> dict:
    """The quirk counts with plain Python sets and loops."""
    train_set = set(splits["train"])
    train_entities = {x for h, _, t in splits["train"] for x in (h, t)}
    used = {x for s in splits.values() for h, _, t in s for x in (h, t)}
    unseen = {s: {x for h, _, t in splits[s] for x in (h, t)} - train_entities for s in ("valid", "test")}
    return dict(
        num_lines={s: len(v) for s, v in splits.items()},
        unique={s: len(set(v)) for s, v in splits.items()},
        duplicate_lines={s: len(v) - len(set(v)) for s, v in splits.items()},
        in_train={s: len(set(splits[s]) & train_set) for s in ("valid", "test")},
        in_train_lines={s: sum(t in train_set for t in splits[s]) for s in ("valid", "test")},
        valid_test_overlap=len(set(splits["valid"]) & set(splits["test"])),
        unseen_entities={s: len(unseen[s]) for s in unseen},
        unseen_total=len(unseen["valid"] | unseen["test"]),
        unseen_lines={s: sum(h in unseen[s] or t in unseen[s] for h, _, t in splits[s]) for s in unseen},
        isolated_entities=num_entities - len(used),
    )


def test_tiny_dataset_loads_as_published(tiny_dataset_dir):
    ds = load_dataset(tiny_dataset_dir)
    assert ds.name == "TINY" and ds.root == tiny_dataset_dir
    assert ds.entities == TINY_ENTITIES and ds.relations == TINY_RELATIONS
    assert (ds.num_entities, ds.num_relations) == (6, 2)
    e = {n: i for i, n in enumerate(TINY_ENTITIES)}
    r = {n: i for i, n in enumerate(TINY_RELATIONS)}
    for split, lines in TINY_SPLITS.items():
        expected = [[e[h], r[rel], e[t]] for h, rel, t, *_ in (ln.split(" ") for ln in lines)]
        assert ds.split(split).tolist() == expected
        assert getattr(ds, split).dtype == torch.long


def test_tiny_quirks_counted_by_hand(tiny_dataset_dir):
    q = load_dataset(tiny_dataset_dir).quirks
    assert q.num_lines == {"train": 6, "valid": 4, "test": 3}
    assert q.unique == {"train": 5, "valid": 3, "test": 3}
    assert q.duplicate_lines == {"train": 1, "valid": 1, "test": 0}
    assert q.in_train == {"valid": 1, "test": 0} and q.in_train_lines == {"valid": 1, "test": 0}
    assert q.valid_test_overlap == 1
    assert q.unseen_entities == {"valid": 1, "test": 1} and q.unseen_total == 1
    assert q.unseen_lines == {"valid": 1, "test": 1}
    assert q.isolated_entities == 1
    assert not q.clean and q.actions == []
    text = str(q)
    assert text.splitlines() == q.lines()
    assert "valid: 3 distinct triples in 4 lines (1 repeated lines)" in text
    assert "valid and test share 1 distinct triples" in text
    assert "1 entities of valid/test never occur in train" in text
    assert "1 entities of entity2id occur in no split" in text


def test_quirks_match_reference_on_random_splits():
    g = torch.Generator().manual_seed(3)
    E_, R_ = 30, 3
    splits = {s: torch.stack([torch.randint(0, E_, (n,), generator=g), torch.randint(0, R_, (n,), generator=g),
                              torch.randint(0, E_, (n,), generator=g)], dim=1)
              for s, n in (("train", 60), ("valid", 40), ("test", 40))}
    splits["valid"] = torch.cat([splits["valid"], splits["train"][:7], splits["valid"][:5]])
    splits["test"] = torch.cat([splits["test"], splits["valid"][:4], splits["train"][10:12]])
    q = QuirkReport.compute(splits, E_, R_)
    ref = reference_quirks({s: [tuple(t) for t in v.tolist()] for s, v in splits.items()}, E_)
    assert {k: getattr(q, k) for k in ref} == ref
    assert ref["in_train"]["valid"] >= 7 and ref["valid_test_overlap"] >= 4  # the test covers overlaps


def test_clean_dataset_says_so(tiny_dataset_dir):
    for split, lines in (("train", ["alpha likes beta .", "gamma knows delta .", "zeta likes <http://dbpedia.org/resource/Epsilon> ."]),
                         ("valid", ["beta likes gamma ."]), ("test", ["delta knows alpha ."])):
        (tiny_dataset_dir / f"{split}.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    q = load_dataset(tiny_dataset_dir).quirks
    assert q.clean and q.lines() == ["no quirks: no repeated lines, no overlap between splits, no unseen entities"]


def test_drop_options(tiny_dataset_dir):
    keep = load_dataset(tiny_dataset_dir)
    dedup = load_dataset(tiny_dataset_dir, duplicates="drop")
    for split in ("train", "valid", "test"):
        rows, seen = [], set()
        for t in keep.split(split).tolist():  # first occurrences, file order
            if tuple(t) not in seen:
                seen.add(tuple(t))
                rows.append(t)
        assert dedup.split(split).tolist() == rows
    assert dedup.quirks.num_lines == keep.quirks.num_lines  # quirks describe the files as published
    assert dedup.quirks.actions == ["duplicates=drop: removed 1 repeated lines from train",
                                    "duplicates=drop: removed 1 repeated lines from valid"]

    both = load_dataset(tiny_dataset_dir, duplicates="drop", unseen="drop")
    eps = TINY_ENTITIES.index(EPSILON)
    for split in ("valid", "test"):
        assert eps not in both.split(split)[:, [0, 2]].flatten().tolist()
    assert len(both.valid) == 2 and len(both.test) == 2
    assert both.entities == keep.entities  # ids never change
    assert "unseen=drop: removed 1 lines with entities unseen in train from test" in both.quirks.lines()
    with pytest.raises(ValueError):
        load_dataset(tiny_dataset_dir, duplicates="remove")
    with pytest.raises(ValueError):
        load_dataset(tiny_dataset_dir, unseen="yes")


def test_load_dataset_errors_name_the_file(tiny_dataset_dir, tmp_path):
    with pytest.raises(InputError) as err:
        load_dataset(tmp_path / "nothing")
    assert "dataset folder not found" in str(err.value)
    (tiny_dataset_dir / "test.txt").write_text("alpha likes beta .\nalpha hates beta .\n", encoding="utf-8")
    with pytest.raises(InputError) as err:
        load_dataset(tiny_dataset_dir)
    assert_error(err, tiny_dataset_dir / "test.txt", 2, "unknown relation 'hates'")
    (tiny_dataset_dir / "valid.txt").unlink()
    with pytest.raises(InputError) as err:
        load_dataset(tiny_dataset_dir)
    assert_error(err, tiny_dataset_dir / "valid.txt", None, "file not found")


# --- the real benchmarks --------------------------------------------------------------------------


def readme_table(shared: Path) -> dict[str, dict[str, int]]:
    """The counts table of the offline copies' README."""
    rows = {}
    for line in (shared / "README.md").read_text(encoding="utf-8").splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) >= 6 and all(re.fullmatch(r"\d+", c) for c in cells[1:6]):
            rows[cells[0]] = dict(zip(["entities", "relations", "train", "valid", "test"], map(int, cells[1:6])))
    return rows


@pytest.mark.parametrize("name", ["MKG-W", "MKG-Y", "DB15K"])
def test_real_benchmark_counts(shared_datasets, name):
    expected = readme_table(shared_datasets)[name]
    ds = load_dataset(shared_datasets / name)
    got = dict(entities=ds.num_entities, relations=ds.num_relations, train=len(ds.train),
               valid=len(ds.valid), test=len(ds.test))
    assert got == expected
    for split in ("train", "valid", "test"):  # as many rows as lines in the file
        assert len(ds.split(split)) == (shared_datasets / name / f"{split}.txt").read_bytes().count(b"\n")


@pytest.mark.parametrize("name, unseen", [("DB15K", 57), ("MKG-W", 491), ("MKG-Y", 612)])
def test_real_benchmark_quirks_match_readme(shared_datasets, name, unseen):
    q = load_dataset(shared_datasets / name).quirks
    assert q.unseen_total == unseen  # README: "occur in valid/test but never in train"
    assert q.isolated_entities == 0
    if name == "DB15K":
        # README: "DB15K valid has 7481 unique triples out of 9904 lines; 6584 of its lines also appear
        # in train, 824 in test" -- the 6584 and 824 are distinct triples (8719 lines are in train).
        assert (q.num_lines["valid"], q.unique["valid"]) == (9904, 7481)
        assert q.in_train["valid"] == 6584 and q.in_train_lines["valid"] == 8719
        assert q.valid_test_overlap == 824
        assert q.duplicate_lines["train"] == q.duplicate_lines["test"] == 0 and q.in_train["test"] == 0
    else:
        assert not any(q.duplicate_lines.values()) and not any(q.in_train.values()) and q.valid_test_overlap == 0
