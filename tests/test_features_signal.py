"""Honest signal check: pretrained features of the toy images and texts reveal the planted attributes.

The toy generator (momok.data.toy) draws latent attributes and shows colour/shape/size in images and
mostly taste/shape/size in descriptions. A nearest-centroid classifier, fitted on half of the entities
that have the modality and scored on the other half (2-fold, both ways), must beat chance clearly on
pretrained MobileNetV2 and MiniLM features; after noise on every entity (rho = 1) it must fall to near
chance. Scale: with scale 3 the colour accuracy of the 1280-d image features only dropped from 0.49 to
about 0.36-0.40 (chance 0.2) when this test was written, so the destruction check uses scale 10
(measured 0.21-0.25); the averaging of many noisy dimensions makes nearest-centroid robust to noise.
"""

from __future__ import annotations

import csv

import pytest
import torch
from conftest import offline_weights

from momok.data.toy import make_toy
from momok.features.image import extract_image_features
from momok.features.noise import add_noise
from momok.features.text import extract_text_features

NOISE_SCALE = 10.0


@pytest.fixture(scope="module")
def toy_features(tmp_path_factory):
    weights, minilm = offline_weights()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        base = tmp_path_factory.mktemp("signal")
        root = make_toy(base / "toy", 1, entities=120, triples=360, image_size=32, max_images=1)
        image = extract_image_features(root, base / "image.safetensors", encoder="mobilenet_v2", weights=str(weights),
                                       device="cpu", progress=False)
        text = extract_text_features(root, base / "text.safetensors", model=str(minilm), device="cpu", progress=False)
    finally:
        torch.set_num_threads(threads)
    with open(root / "attributes.tsv", encoding="utf-8", newline="") as f:
        attributes = list(csv.DictReader(f, delimiter="\t"))
    return image, text, attributes


def centroid_accuracy(table, attributes, attribute: str) -> tuple[float, float]:
    """2-fold nearest-centroid accuracy over the entities that have the modality, and the chance level."""
    labels = [row[attribute] for row in attributes]
    classes = sorted(set(labels))
    y = torch.tensor([classes.index(label) for label in labels])
    ids = table.mask.nonzero().flatten()
    x = table.features.double()
    correct = 0
    for fold in (0, 1):
        train, test = ids[ids % 2 == fold], ids[ids % 2 != fold]
        centroids = torch.stack([x[train][y[train] == c].mean(0) for c in range(len(classes))])
        correct += int((torch.cdist(x[test], centroids).argmin(1) == y[test]).sum())
    return correct / len(ids), 1 / len(classes)


@pytest.mark.slow
def test_features_reveal_the_planted_attributes(toy_features):
    image, text, attributes = toy_features
    assert image.mask.sum() > 80 and text.mask.sum() > 80
    for table, attribute, margin in ((image, "colour", 0.15), (image, "size", 0.2), (text, "taste", 0.12)):
        accuracy, chance = centroid_accuracy(table, attributes, attribute)
        assert accuracy > chance + margin, (table.metadata["modality"], attribute, accuracy)


@pytest.mark.slow
def test_noise_on_every_entity_destroys_the_signal(toy_features):
    image, text, attributes = toy_features
    for table, attribute in ((image, "colour"), (text, "taste")):
        noisy = add_noise(table, 1.0, seed=0, scale=NOISE_SCALE)
        accuracy, chance = centroid_accuracy(noisy, attributes, attribute)
        assert accuracy < chance + 0.1, (table.metadata["modality"], attribute, accuracy)
