"""The toy dataset: layout, determinism, modalities and the planted attribute signal."""

from __future__ import annotations

import csv
import hashlib
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from momok.data.toy import ATTRIBUTES, COLOURS, ToyOptions, make_toy
from momok.errors import ConfigError

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def toy(tmp_path_factory) -> Path:
    """The default toy dataset, seed 0."""
    return make_toy(tmp_path_factory.mktemp("toy") / "seed0", seed=0)


def read_tsv(path: Path) -> list[dict[str, str]]:
    with path.open(encoding="utf-8", newline="") as f:
        return list(csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE))


def read_split(root: Path, name: str) -> list[tuple[str, str, str]]:
    rows = []
    for line in (root / f"{name}.txt").read_text(encoding="utf-8").splitlines():
        h, r, t, dot = line.split(" ")
        assert dot == "."
        rows.append((h, r, t))
    return rows


def file_digests(root: Path) -> dict[str, str]:
    return {p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def test_layout_and_formats(toy):
    opts = ToyOptions()
    entities = [line.split(" ") for line in (toy / "entity2id.txt").read_text().splitlines()]
    relations = [line.split(" ") for line in (toy / "relation2id.txt").read_text().splitlines()]
    assert [int(i) for _, i in entities] == list(range(opts.entities))
    assert [int(i) for _, i in relations] == list(range(opts.relations))
    names = {name for name, _ in entities}
    relation_names = {name for name, _ in relations}
    assert len(names) == opts.entities and len(relation_names) == opts.relations

    splits = {name: read_split(toy, name) for name in ("train", "valid", "test")}
    for rows in splits.values():
        assert all(h in names and t in names and r in relation_names for h, r, t in rows)
    all_triples = [t for rows in splits.values() for t in rows]
    assert len(all_triples) == len(set(all_triples)) == opts.triples  # unique across and within splits
    assert all(h != t for h, _, t in all_triples)
    for name in ("valid", "test"):
        assert abs(len(splits[name]) - 0.1 * opts.triples) <= 0.02 * opts.triples
    # Every entity takes part in a triple; every valid/test entity and relation occurs in train.
    train_entities = {e for h, _, t in splits["train"] for e in (h, t)}
    assert train_entities == names
    assert {r for _, r, _ in splits["train"]} == relation_names
    # Long tail: a good share of entities has few training triples, and there are hubs.
    degree = Counter(e for h, _, t in splits["train"] for e in (h, t))
    assert 0.15 <= sum(d <= 3 for d in degree.values()) / opts.entities <= 0.5
    assert max(degree.values()) >= 50
    # ... and long-tail entities are also evaluated: some test triples involve one.
    assert sum(min(degree[h], degree[t]) <= 3 for h, _, t in splits["test"]) >= 0.15 * len(splits["test"])

    attributes = read_tsv(toy / "attributes.tsv")
    assert [row["entity"] for row in attributes] == [name for name, _ in entities]
    for row in attributes:
        assert all(row[kind] in values for kind, values in ATTRIBUTES.items())
    assert "seed 0" in (toy / "README.md").read_text()


def test_descriptions(toy):
    header = (toy / "descriptions.tsv").read_text(encoding="utf-8").splitlines()[0]
    assert header == "entity\tdescription"
    rows = read_tsv(toy / "descriptions.tsv")
    n = ToyOptions().entities
    assert len({row["entity"] for row in rows}) == len(rows)
    assert 0.05 <= 1 - len(rows) / n <= 0.3  # some missing (~15%)
    texts = [row["description"] for row in rows]
    assert all(text and "\t" not in text and "\n" not in text for text in texts)
    assert len(set(texts)) == len(texts)  # no two alike
    # The taste is only ever said in words: the words for the entity's taste appear in most texts.
    from momok.data.toy import SYNONYMS

    taste = {row["entity"]: row["taste"] for row in read_tsv(toy / "attributes.tsv")}
    said = [any(w in row["description"] for w in SYNONYMS[taste[row["entity"]]]) for row in rows]
    assert np.mean(said) > 0.8


def test_images(toy):
    size = ToyOptions().image_size
    entity_names = {line.split(" ")[0] for line in (toy / "entity2id.txt").read_text().splitlines()}
    folders = sorted((toy / "images").iterdir())
    assert {f.name for f in folders} <= entity_names
    counts = [len(list(f.iterdir())) for f in folders]
    assert all(1 <= c <= 3 for c in counts)  # folders exist only for entities with images
    assert 0.05 <= 1 - len(folders) / len(entity_names) <= 0.3  # some entities have none
    assert set(counts) == {1, 2, 3}
    for folder in folders[:60]:
        files = sorted(p.name for p in folder.iterdir())
        assert files == [f"{k}.png" for k in range(len(files))]
        for path in folder.iterdir():
            assert path.read_bytes()[:8] == PNG_SIGNATURE
            with Image.open(path) as image:
                image.verify()
            with Image.open(path) as image:
                assert image.format == "PNG" and image.mode == "RGB" and image.size == (size, size)


def test_same_seed_is_byte_identical_and_seeds_differ(toy, tmp_path):
    again = make_toy(tmp_path / "again", seed=0)
    first, second = file_digests(toy), file_digests(again)
    assert len(first) > 1000
    assert first == second
    other = file_digests(make_toy(tmp_path / "other", seed=1))
    for name in ("train.txt", "attributes.tsv", "descriptions.tsv"):
        assert other[name] != first[name]
    shared_images = set(first) & set(other) - {"entity2id.txt"}
    assert sum(first[k] == other[k] for k in shared_images if k.endswith(".png")) == 0


def test_relation_rules_hold_and_are_recoverable(toy):
    """Each rule maps three attribute kinds of the head onto the tail's: the triples obey it, and the
    mapping can be read off the training triples; the kind a rule leaves out is unrelated."""
    attributes = {row["entity"]: row for row in read_tsv(toy / "attributes.tsv")}
    mapping: dict[str, dict[tuple[str, str], tuple[str, str]]] = {}
    for row in read_tsv(toy / "relation_rules.tsv"):
        mapping.setdefault(row["relation"], {})[(row["head_attribute"], row["head_value"])] = \
            (row["tail_attribute"], row["tail_value"])
    train = read_split(toy, "train")
    relations = {r for _, r, _ in train}
    assert set(mapping) == relations
    for relation, rule in mapping.items():
        kinds = {kind for kind, _ in rule}
        assert len(kinds) == 3 and {kind for kind, _ in rule.values()} == kinds
        assert all(len([v for k, v in rule if k == kind]) == len(ATTRIBUTES[kind]) for kind in kinds)
        rows = [(attributes[h], attributes[t]) for h, r, t in train if r == relation]
        obeyed = np.mean([all(tail[tk] == tv for (hk, hv), (tk, tv) in rule.items() if head[hk] == hv)
                          for head, tail in rows])
        assert obeyed >= 0.8, (relation, obeyed)  # 85% rule triples, plus random ones that happen to obey
        for kind in ATTRIBUTES:
            # Best map "head value -> most frequent tail value", read off train, and its accuracy.
            pairs = Counter((head[kind], tail[kind]) for head, tail in rows)
            best = {v: max(ATTRIBUTES[kind], key=lambda w: pairs[(v, w)]) for v in ATTRIBUTES[kind]}
            accuracy = sum(pairs[(v, w)] for v, w in best.items()) / len(rows)
            if kind in kinds:  # it is the rule's map, and it holds for most triples
                assert all(best[v] == rule[(kind, v)][1] for v in ATTRIBUTES[kind])
                assert accuracy >= 0.8, (relation, kind, accuracy)
            else:  # the left-out kind: no map explains the tails
                assert accuracy <= 0.7, (relation, kind, accuracy)


def test_attributes_pin_the_answers_down(toy):
    """Knowing the attributes narrows a query to a few candidates: ranking the test answers by "obeys
    the rule" (ties averaged) gives a far higher MRR than ranking by training degree (popularity)."""
    attributes = {row["entity"]: row for row in read_tsv(toy / "attributes.tsv")}
    rules: dict[str, list[tuple[str, str, str, str]]] = {}
    for row in read_tsv(toy / "relation_rules.tsv"):
        rules.setdefault(row["relation"], []).append(
            (row["head_attribute"], row["head_value"], row["tail_attribute"], row["tail_value"]))
    train, test = read_split(toy, "train"), read_split(toy, "test")
    entities = sorted(attributes)
    degree = Counter(e for h, _, t in train for e in (h, t))

    def obeys(h, r, t):
        return all(attributes[t][tk] == tv for hk, hv, tk, tv in rules[r] if attributes[h][hk] == hv)

    def reciprocal_rank(scores: dict[str, float], target: str) -> float:
        better = sum(s > scores[target] for s in scores.values())
        ties = sum(s == scores[target] for s in scores.values()) - 1
        return 1 / (1 + better + ties / 2)

    by_rule, by_degree = [], []
    for h, r, t in test[:200]:
        by_rule += [reciprocal_rank({e: obeys(h, r, e) for e in entities}, t),
                    reciprocal_rank({e: obeys(e, r, t) for e in entities}, h)]
        popularity = {e: degree[e] for e in entities}
        by_degree += [reciprocal_rank(popularity, t), reciprocal_rank(popularity, h)]
    assert np.mean(by_rule) > 3 * np.mean(by_degree), (np.mean(by_rule), np.mean(by_degree))


def test_image_mean_colour_recovers_colour(toy):
    """Nearest-centroid on each image's mean RGB: fit on even entities, test on odd ones."""
    colour = {row["entity"]: row["colour"] for row in read_tsv(toy / "attributes.tsv")}
    samples = {0: [], 1: []}
    for folder in sorted((toy / "images").iterdir()):
        for path in sorted(folder.iterdir()):
            with Image.open(path) as image:
                pixels = np.asarray(image, dtype=np.float64).reshape(-1, 3)
            mean = pixels.mean(0)
            samples[int(folder.name[1:]) % 2].append((mean - mean.mean(), colour[folder.name]))
    names = list(COLOURS)
    centroids = np.stack([np.mean([x for x, c in samples[0] if c == name], axis=0) for name in names])
    predicted = [names[int(np.argmin(((centroids - x) ** 2).sum(1)))] for x, _ in samples[1]]
    accuracy = np.mean([p == c for p, (_, c) in zip(predicted, samples[1])])
    assert accuracy >= 0.7, accuracy  # chance is 1/5


def test_cli_and_options(tmp_path, capsys):
    from momok.cli import main

    out = tmp_path / "small"
    assert main(["toy", "--out", str(out), "--seed", "3", "--entities", "60", "--relations", "5",
                 "--triples", "300", "--max-images", "1", "--image-size", "32"]) == 0
    assert "entities: 60" in capsys.readouterr().out
    assert len(read_split(out, "train")) + len(read_split(out, "valid")) + len(read_split(out, "test")) == 300
    assert len((out / "relation2id.txt").read_text().splitlines()) == 5
    for path in (out / "images").rglob("*.png"):
        assert path.name == "0.png"
        with Image.open(path) as image:
            assert image.size == (32, 32)
    # Re-running over a toy folder replaces it; another folder is never overwritten.
    make_toy(out, seed=4, entities=60, triples=300)
    other = tmp_path / "precious"
    other.mkdir()
    (other / "notes.txt").write_text("keep me")
    with pytest.raises(ConfigError, match="not a toy dataset"):
        make_toy(other, seed=0)
    with pytest.raises(ConfigError, match="unknown toy option"):
        make_toy(tmp_path / "x", seed=0, entitys=10)
    with pytest.raises(ConfigError, match="relations"):
        make_toy(tmp_path / "x", seed=0, relations=0)
    assert main(["toy", "--out", str(other), "--seed", "0"]) == 2


def test_loads_with_standard_reader(toy):
    datasets = pytest.importorskip("momok.data.datasets")
    ds = datasets.load_dataset(toy)
    opts = ToyOptions()
    assert ds.num_entities == opts.entities and ds.num_relations == opts.relations
    assert len(ds.train) + len(ds.valid) + len(ds.test) == opts.triples
    assert ds.train.dtype.is_floating_point is False and ds.train.shape[1] == 3
    assert len(datasets.read_descriptions(toy)) == len(read_tsv(toy / "descriptions.tsv"))
    assert all(datasets.entity_dirname(name) == name for name in ds.entities)
