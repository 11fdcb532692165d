"""The feature file format (momok.features.store), the shared resumable runner, and bundle import."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from momok import cli
from momok.errors import InputError
from momok.features import store
from momok.features.official import import_bundle
from momok.features.store import FeatureTable, entity_list_digest, load_features, save_features

ENTITIES = ["alpha", "beta", "<http://dbpedia.org/resource/Gamma_(letter)>", "delta"]


def make_table(n: int = 4, dim: int = 3) -> FeatureTable:
    features = torch.arange(n * dim, dtype=torch.float32).reshape(n, dim) / 7
    mask = torch.tensor([True, False, True, True][:n])
    metadata = store.base_metadata("image", "encoder", "test-encoder", "none", ENTITIES[:n])
    return FeatureTable(features, mask, metadata)


def write_raw(path: Path, features: torch.Tensor, mask: torch.Tensor, **metadata: str) -> Path:
    meta = {"modality": "image", "entities_sha256": entity_list_digest(ENTITIES), **metadata}
    save_file({"features": features, "mask": mask}, str(path), metadata=meta)
    return path


def test_digest_is_sha256_of_names_joined_by_newlines():
    assert entity_list_digest(["a", "b"]) == hashlib.sha256(b"a\nb").hexdigest()
    assert entity_list_digest(["a", "b"]) != entity_list_digest(["b", "a"])


def test_round_trip_keeps_tensors_and_metadata(tmp_path):
    table = make_table()
    path = tmp_path / "sub" / "image.safetensors"
    save_features(path, table)
    loaded = load_features(path, entities=ENTITIES)
    assert torch.equal(loaded.features, table.features)
    assert loaded.features.dtype == torch.float32
    assert torch.equal(loaded.mask, table.mask) and loaded.mask.dtype == torch.bool
    for key in ("modality", "source", "encoder", "weights", "num_entities", "entities_sha256", "created",
                "momok_version", "torch_version"):
        assert key in loaded.metadata, key
    assert loaded.metadata["num_entities"] == "4"
    assert loaded.metadata["entities_sha256"] == entity_list_digest(ENTITIES)
    assert [p.name for p in path.parent.iterdir()] == ["image.safetensors"]  # no temporary file left
    umask = os.umask(0)
    os.umask(umask)
    assert path.stat().st_mode & 0o777 == 0o666 & ~umask


def test_text_files_need_a_text_source(tmp_path):
    table = make_table()
    table.metadata["modality"] = "text"
    with pytest.raises(ValueError, match="text_source"):
        save_features(tmp_path / "t.safetensors", table)
    table.metadata["text_source"] = "{}"
    save_features(tmp_path / "t.safetensors", table)


@pytest.mark.parametrize("change, message", [
    (lambda t: setattr(t, "features", t.features.flatten()), "2-D"),
    (lambda t: setattr(t, "mask", t.mask[:2]), "mask shape"),
    (lambda t: t.features.__setitem__((0, 0), float("nan")), "NaN"),
    (lambda t: t.metadata.pop("weights"), "weights"),
    (lambda t: t.metadata.__setitem__("dim", 3), "strings"),
])
def test_save_refuses_malformed_tables(tmp_path, change, message):
    table = make_table()
    change(table)
    with pytest.raises(ValueError, match=message):
        save_features(tmp_path / "x.safetensors", table)
    assert not list(tmp_path.iterdir())


def test_a_failed_write_leaves_the_old_file_intact(tmp_path, monkeypatch):
    path = tmp_path / "image.safetensors"
    save_features(path, make_table())
    before = path.read_bytes()

    def broken(fd):  # the new bytes are in the temporary file, but they never reach the disk
        raise OSError("disk full")

    monkeypatch.setattr("os.fsync", broken)
    with pytest.raises(InputError, match="cannot write it \\(disk full\\)"):
        save_features(path, make_table())
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["image.safetensors"]


def test_load_errors_name_the_file(tmp_path):
    good = torch.ones(4, 3)
    cases = {
        "missing.safetensors": None,
        "garbage.safetensors": b"this is not safetensors",
    }
    for name, content in cases.items():
        path = tmp_path / name
        if content is not None:
            path.write_bytes(content)
        with pytest.raises(InputError) as err:
            load_features(path)
        assert str(path) in str(err.value)

    no_mask = tmp_path / "no_mask.safetensors"
    save_file({"features": good}, str(no_mask))
    with pytest.raises(InputError, match="no tensor mask"):
        load_features(no_mask)

    checks = [
        (torch.ones(4), torch.ones(4, dtype=torch.uint8), {}, "2-D float"),
        (good, torch.ones(3, dtype=torch.uint8), {}, r"mask has shape \(3,\), expected \(4,\)"),
        (good, torch.full((4,), 2, dtype=torch.uint8), {}, "0 or 1"),
        (good, torch.ones(4, dtype=torch.uint8), {"num_entities": "5"}, "num_entities=5"),
        (torch.tensor([[1.0, 2, 3], [1, float("inf"), 3], [0, 0, 0], [0, 0, 0]]), torch.ones(4, dtype=torch.uint8),
         {}, "NaN or inf in 1 rows .first: row 1"),
    ]
    for i, (features, mask, meta, message) in enumerate(checks):
        path = write_raw(tmp_path / f"case{i}.safetensors", features, mask, **meta)
        with pytest.raises(InputError, match=message) as err:
            load_features(path)
        assert err.value.path == path


def test_load_checks_the_entity_list(tmp_path):
    path = tmp_path / "image.safetensors"
    save_features(path, make_table())
    with pytest.raises(InputError, match="has 4 rows but the dataset has 3 entities"):
        load_features(path, entities=ENTITIES[:3])
    with pytest.raises(InputError, match="digest .* does not match"):
        load_features(path, entities=list(reversed(ENTITIES)))
    assert load_features(path).num_entities == 4  # no entities given: no entity check


def test_fill_missing_against_a_loop():
    features = torch.tensor([[1.0, 2.0], [9.0, 9.0], [3.0, 6.0]])
    present = torch.tensor([True, False, True])
    filled = store.fill_missing(features, present, "mean")
    assert filled[1].tolist() == [2.0, 4.0] and torch.equal(filled[[0, 2]], features[[0, 2]])
    assert store.fill_missing(features, present, "zeros")[1].tolist() == [0.0, 0.0]
    assert store.fill_missing(features, torch.zeros(3, dtype=torch.bool), "mean").abs().sum() == 0


# ----------------------------------------------------------------------------------- run_chunked
class FakeEncoder:
    """Row i = [i, 2i]; entity 2 is absent; optionally fails at a given call."""

    def __init__(self, fail_at: int | None = None):
        self.calls: list[list[int]] = []
        self.fail_at = fail_at

    def __call__(self, indices):
        if self.fail_at is not None and len(self.calls) == self.fail_at:
            raise KeyboardInterrupt
        self.calls.append(list(indices))
        x = torch.tensor([[i, 2 * i] for i in indices], dtype=torch.float32)
        return x, torch.tensor([i != 2 for i in indices])


def test_run_chunked_resumes_where_it_stopped(tmp_path):
    out = tmp_path / "f.safetensors"
    settings = {"encoder": "fake"}
    first = FakeEncoder(fail_at=2)
    with pytest.raises(KeyboardInterrupt):
        store.run_chunked(out, 7, first, settings=settings, chunk_size=3, progress=False)
    assert first.calls == [[0, 1, 2], [3, 4, 5]]
    assert sorted(p.name for p in store.partial_dir(out).iterdir()) == [
        "chunk-000000.safetensors", "chunk-000001.safetensors", "settings.json"]

    second = FakeEncoder()
    vectors, present = store.run_chunked(out, 7, second, settings=settings, chunk_size=3, progress=False)
    assert second.calls == [[6]]  # finished chunks are never recomputed
    assert vectors[:, 0].tolist() == [0, 1, 0, 3, 4, 5, 6]  # absent row zeroed
    assert present.tolist() == [True, True, False, True, True, True, True]

    with pytest.raises(InputError, match=r"different settings \(encoder\)"):
        store.run_chunked(out, 7, FakeEncoder(), settings={"encoder": "other"}, chunk_size=3, progress=False)
    store.finish_chunked(out)
    assert not store.partial_dir(out).exists()


def test_up_to_date_needs_same_settings_and_entities(tmp_path):
    out = tmp_path / "f.safetensors"
    table = make_table()
    table.metadata["settings_sha256"] = store.settings_digest({"a": 1, "b": 2})
    save_features(out, table)
    assert store.is_up_to_date(out, ENTITIES, {"b": 2, "a": 1})
    assert not store.is_up_to_date(out, ENTITIES, {"a": 1})
    assert not store.is_up_to_date(out, ENTITIES[:3], {"a": 1, "b": 2})
    assert not store.is_up_to_date(tmp_path / "none.safetensors", ENTITIES, {"a": 1, "b": 2})


# ----------------------------------------------------------------------------------- import
@pytest.fixture
def dataset(tmp_path) -> Path:
    root = tmp_path / "DS"
    root.mkdir()
    (root / "entity2id.txt").write_text("".join(f"{e} {i}\n" for i, e in enumerate(ENTITIES)), encoding="utf-8")
    return root


MATRIX = np.array([[1, 2], [0, 0], [3, 4], [5, 6]], dtype=np.float32)


@pytest.mark.parametrize("name, write", [
    ("img_features.pth", lambda p: torch.save(torch.from_numpy(MATRIX), p)),
    ("dict.pth", lambda p: torch.save({"img": torch.from_numpy(MATRIX), "n": 4}, p)),
    ("numpy_in_torch.pth", lambda p: torch.save(MATRIX.astype(np.float64), p)),
    ("list.pth", lambda p: torch.save([torch.from_numpy(r) for r in MATRIX], p)),
    ("plain.npy", lambda p: np.save(p, MATRIX)),
    ("archive.npz", lambda p: np.savez(p, features=MATRIX)),
])
def test_import_reads_every_bundle_shape(tmp_path, dataset, name, write):
    bundle = tmp_path / name
    write(bundle)
    out = tmp_path / "out" / "image.safetensors"
    table = import_bundle(bundle, "image", dataset, out)
    loaded = load_features(out, entities=ENTITIES)
    assert torch.equal(loaded.features, torch.from_numpy(MATRIX))
    assert loaded.mask.all()  # bundles carry no mask: default all present
    assert loaded.metadata["source"] == "official-bundle"
    assert loaded.metadata["zero_rows"] == "1"
    assert table.metadata["weights"].startswith(f"bundle:{name} sha256:")


def test_import_zero_rows_missing_and_text(tmp_path, dataset):
    bundle = tmp_path / "text_features.npy"
    np.save(bundle, MATRIX)
    out = tmp_path / "text.safetensors"
    assert cli.main(["features", "import", "--from", str(bundle), "--modality", "text", "--dataset", str(dataset),
                     "--out", str(out), "--zero-rows", "missing"]) == 0
    loaded = load_features(out, entities=ENTITIES)
    assert loaded.mask.tolist() == [True, False, True, True]
    assert loaded.metadata["text_source"] == "official-bundle"


def test_import_errors(tmp_path, dataset):
    def bundle(name, obj):
        path = tmp_path / name
        torch.save(obj, path)
        return path

    cases = [
        (bundle("rows.pth", torch.ones(3, 2)), {}, "has 3 rows but .* lists 4 entities"),
        (bundle("nan.pth", torch.tensor([[1.0], [float("nan")], [1], [1]])), {}, "1 rows contain NaN"),
        (bundle("two.pth", {"a": torch.ones(4, 2), "b": torch.ones(4, 3)}), {}, "found 2 .a, b.; pass --key"),
        (bundle("key.pth", {"a": torch.ones(4, 2)}), {"key": "b"}, "no key 'b'"),
        (bundle("cube.pth", torch.ones(4, 2, 2)), {}, "2-D"),
        (bundle("obj.pth", {"x": Path("a")}), {}, "Python objects beyond tensors .* --trust-pickle"),
    ]
    for path, kwargs, message in cases:
        with pytest.raises(InputError, match=message) as err:
            import_bundle(path, "image", dataset, tmp_path / "o.safetensors", **kwargs)
        assert err.value.path == path
    assert not (tmp_path / "o.safetensors").exists()
    # a dict key picks one of several matrices
    table = import_bundle(tmp_path / "two.pth", "image", dataset, tmp_path / "o.safetensors", key="b")
    assert table.dim == 3 and json.loads(json.dumps(table.metadata))["bundle_key"] == "b"
