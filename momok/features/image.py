"""``momok features image``: one vector per entity from a frozen torchvision image encoder.

The paper encodes entity images with VGG and uses the 4096-d penultimate layer (fc7); several images of
an entity are averaged. Images are read from ``<dataset>/images/<entity_dirname(name)>/*``, preprocessed
with the chosen weights' own transforms (resize, centre crop, ImageNet normalisation), encoded in
batches, and averaged per entity (the mean of the chosen layer's outputs). Entities with no image get
``mask = 0`` and a filler row (``--missing``: the mean of the present rows, or zeros).

Weights (``--weights``) come through torchvision's normal loading and cache
(``$TORCH_HOME/hub/checkpoints/<file>``), from an explicit local file, or are random (only when asked,
for shape tests). When weights are neither cached nor downloadable the command fails and says which
file to put where; it never falls back to random weights.
"""

from __future__ import annotations

import hashlib
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

import torch

from momok.checksums import file_sha256
from momok.errors import InputError, MomokError, first_line
from momok.features import store

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".gif", ".bmp", ".webp")
"""Files under an entity's image folder that count as images (case-insensitive)."""

RANDOM_SEED = 0
"""Seed of the initialisation used by ``--weights random`` (so random features are reproducible)."""


def _vgg_layer(layer: str):
    def cut(model):
        # classifier = [fc6, ReLU, Dropout, fc7, ReLU, Dropout, fc8]
        if layer == "fc7":
            model.classifier = model.classifier[:-1]
        elif layer == "fc6":
            model.classifier = model.classifier[:3]
        elif layer == "pool5":
            model.classifier = torch.nn.Identity()
        return model

    return cut


def _head_layer(attribute: str, layer: str):
    def cut(model):
        if layer == "pool":
            setattr(model, attribute, torch.nn.Identity())
        return model

    return cut


# encoder -> layer -> (output width, function cutting the torchvision model down to that layer)
LAYERS: dict[str, dict[str, tuple[int, object]]] = {
    "vgg16": {"fc7": (4096, _vgg_layer("fc7")), "fc6": (4096, _vgg_layer("fc6")),
              "pool5": (25088, _vgg_layer("pool5")), "logits": (1000, _vgg_layer("logits"))},
    "vgg19": {"fc7": (4096, _vgg_layer("fc7")), "fc6": (4096, _vgg_layer("fc6")),
              "pool5": (25088, _vgg_layer("pool5")), "logits": (1000, _vgg_layer("logits"))},
    "resnet50": {"pool": (2048, _head_layer("fc", "pool")), "logits": (1000, _head_layer("fc", "logits"))},
    "mobilenet_v2": {"pool": (1280, _head_layer("classifier", "pool")),
                     "logits": (1000, _head_layer("classifier", "logits"))},
}
"""Layers per encoder. ``fc7`` (VGG, default) is the output of ``classifier[:-1]`` (after ReLU; dropout is
off in eval mode); ``fc6`` the first fully connected layer after its ReLU; ``pool5`` the flattened
7x7x512 pooled convolution map; ``pool`` (ResNet-50, MobileNetV2, default) the globally pooled features
before the classifier; ``logits`` the 1000 ImageNet class scores."""

DEFAULT_LAYER = {"vgg16": "fc7", "vgg19": "fc7", "resnet50": "pool", "mobilenet_v2": "pool"}


@dataclass
class ImageEncoder:
    """A frozen encoder cut to one layer, with its preprocessing and a description of its weights."""

    model: torch.nn.Module
    transform: object
    dim: int
    name: str  # e.g. "torchvision:vgg16/fc7"
    weights: str  # e.g. "torchvision:VGG16_Weights.IMAGENET1K_V1 (vgg16-397923af.pth)"
    device: torch.device


def resolve_device(device: str) -> torch.device:
    """``auto`` -> CUDA when available, else CPU; anything else is passed to ``torch.device``."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        return torch.device(device)
    except RuntimeError as err:
        raise MomokError(f"unknown device {device!r} ({err})") from err


def _url_filename(url: str) -> str:
    return os.path.basename(urlparse(url).path)


def checkpoint_dir() -> Path:
    """Where torchvision caches downloaded weights: ``$TORCH_HOME/hub/checkpoints`` (``torch.hub.get_dir``)."""
    return Path(torch.hub.get_dir()) / "checkpoints"


def load_image_encoder(encoder: str = "vgg16", layer: str | None = None, weights: str = "default",
                       device: str = "auto") -> ImageEncoder:
    """Build a frozen torchvision encoder cut to ``layer``.

    ``weights``: ``default`` (torchvision's default ImageNet weights of that architecture), the name of
    one of its weight entries (e.g. ``IMAGENET1K_V1``), a path to a state-dict file, or ``random``
    (seeded initialisation, for shape tests only).
    """
    from torchvision.models import get_model, get_model_weights

    if encoder not in LAYERS:
        raise MomokError(f"unknown image encoder {encoder!r}; choose one of {', '.join(LAYERS)}")
    layer = layer or DEFAULT_LAYER[encoder]
    if layer not in LAYERS[encoder]:
        raise MomokError(f"{encoder} has no layer {layer!r}; choose one of {', '.join(LAYERS[encoder])}")
    dim, cut = LAYERS[encoder][layer]
    entries = get_model_weights(encoder)
    by_name = {e.name: e for e in entries}

    if weights == "random":
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(RANDOM_SEED)
            model = get_model(encoder, weights=None)
        entry, described = entries.DEFAULT, f"random(seed={RANDOM_SEED})"
    elif weights == "default" or weights in by_name:
        entry = entries.DEFAULT if weights == "default" else by_name[weights]
        model = _load_torchvision(encoder, entry, entries)
        described = f"torchvision:{entry} ({_url_filename(entry.url)})"
    else:
        path = Path(weights)
        if not path.is_file():
            raise InputError(path, f"weights file not found (use default, random, one of "
                                   f"{', '.join(by_name)}, or the path of a state-dict file)")
        # Preprocess like the torchvision entry this file is a copy of (matched by file name).
        entry = next((e for e in entries if _url_filename(e.url) == path.name), entries.DEFAULT)
        model = get_model(encoder, weights=None)
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
            if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
                state = state["state_dict"]
            model.load_state_dict(state)
        except Exception as err:
            raise InputError(path, f"not a {encoder} state dict ({first_line(err)})") from err
        described = f"file:{path.name} sha256:{file_sha256(path)[:16]}"

    model = cut(model).eval()
    for p in model.parameters():
        p.requires_grad_(False)
    dev = resolve_device(device)
    return ImageEncoder(model=model.to(dev), transform=entry.transforms(), dim=dim,
                        name=f"torchvision:{encoder}/{layer}", weights=described, device=dev)


def _load_torchvision(encoder: str, entry, entries):
    """torchvision's own loading (cache, else download); a clear error when neither works."""
    from torchvision.models import get_model

    cached = checkpoint_dir() / _url_filename(entry.url)
    was_cached = cached.is_file()
    try:
        return get_model(encoder, weights=entry)
    except Exception as err:
        if was_cached:
            raise InputError(cached, f"cached {entry} weights cannot be loaded ({err}); delete the file "
                                     f"to download it again") from err
        others = [f"{e.name} ({_url_filename(e.url)})" for e in entries
                  if e is not entry and (checkpoint_dir() / _url_filename(e.url)).is_file()]
        hint = f"; cached here instead: {', '.join(others)} (pass --weights NAME)" if others else ""
        raise MomokError(
            f"{encoder} weights {entry} are neither cached nor downloadable ({type(err).__name__}: {err}). "
            f"Put the file {_url_filename(entry.url)} at {cached} (download it from {entry.url}), "
            f"or pass --weights PATH to a local copy{hint}"
        ) from err


def list_images(root: str | Path, entities: Sequence[str]) -> list[list[Path]]:
    """Per entity (id order), its image files under ``images/<entity_dirname(name)>/``, sorted by name."""
    from momok.data.datasets import entity_dirname

    base = Path(root) / "images"
    out: list[list[Path]] = []
    for name in entities:
        folder = base / entity_dirname(name)
        if folder.is_dir():
            out.append(sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file()))
        else:
            out.append([])
    return out


def _listing_digest(root: Path, images: list[list[Path]]) -> str:
    digest = hashlib.sha256()
    for paths in images:
        for p in paths:
            digest.update(f"{p.relative_to(root)}\t{p.stat().st_size}\n".encode("utf-8"))
        digest.update(b"|")
    return digest.hexdigest()


def _read_image(path: Path, transform, bad_images: str):
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as img:
            return transform(img.convert("RGB"))
    except (OSError, UnidentifiedImageError, ValueError) as err:
        if bad_images == "skip":
            print(f"momok features image: skipping unreadable image {path} ({err})", file=sys.stderr)
            return None
        raise InputError(path, f"cannot read image ({err}); pass --bad-images skip to ignore such files") from err


def make_encode_chunk(encoder: ImageEncoder, images: list[list[Path]], batch_size: int, bad_images: str = "error"):
    """``encode_chunk(indices)`` for :func:`store.run_chunked`: mean feature of each entity's images."""

    def encode_chunk(indices: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
        sums = torch.zeros(len(indices), encoder.dim, dtype=torch.float64)
        counts = torch.zeros(len(indices), dtype=torch.long)
        jobs = [(row, p) for row, i in enumerate(indices) for p in images[i]]
        for start in range(0, len(jobs), batch_size):
            batch = [(row, _read_image(p, encoder.transform, bad_images)) for row, p in jobs[start:start + batch_size]]
            batch = [(row, x) for row, x in batch if x is not None]
            if not batch:
                continue
            x = torch.stack([x for _, x in batch]).to(encoder.device)
            with torch.inference_mode():
                y = encoder.model(x).flatten(1).to("cpu", torch.float64)
            rows = torch.tensor([row for row, _ in batch])
            sums.index_add_(0, rows, y)
            counts.index_add_(0, rows, torch.ones_like(rows))
        present = counts > 0
        vectors = sums / counts.clamp(min=1)[:, None]
        return vectors.to(torch.float32), present

    return encode_chunk


def extract_image_features(dataset: str | Path, out: str | Path, *, encoder: str = "vgg16", layer: str | None = None,
                           weights: str = "default", batch_size: int = 32, missing: str = "mean",
                           device: str = "auto", chunk_size: int = 256, bad_images: str = "error",
                           force: bool = False, progress: bool = True) -> store.FeatureTable | None:
    """Write ``out`` with one image vector per entity of ``dataset``; returns the table (``None`` if up to date).

    ``batch_size``: images per forward pass. ``missing``: filler of entities without images (``mean`` of
    present rows | ``zeros``). ``chunk_size``: entities per resumable chunk. ``bad_images``: ``error``
    stops at an unreadable image, ``skip`` ignores it. ``force``: recompute even when ``out`` is up to date.
    """
    from momok.data.datasets import read_id_map

    root = Path(dataset)
    entities = read_id_map(root / "entity2id.txt")
    images = list_images(root, entities)
    num_images = sum(len(p) for p in images)
    if num_images == 0:
        raise InputError(root / "images", "no entity has any image (expected images/<entity>/*.png|jpg)")
    enc = load_image_encoder(encoder, layer, weights, device)
    settings = {"modality": "image", "encoder": enc.name, "weights": enc.weights, "batch_size": batch_size,
                "device": enc.device.type, "bad_images": bad_images, "inputs": _listing_digest(root, images),
                "entities_sha256": store.entity_list_digest(entities)}
    metadata = store.base_metadata("image", "encoder", enc.name, enc.weights, entities)
    metadata.update({"num_images": str(num_images), "device": enc.device.type})
    return store.extract_to_file(out, entities, make_encode_chunk(enc, images, batch_size, bad_images),
                                 settings=settings, missing=missing, metadata=metadata, chunk_size=chunk_size,
                                 force=force, progress=progress)
