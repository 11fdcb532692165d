"""``momok features image|text|import|noise``: write feature files (format: :mod:`momok.features.store`)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from momok.features import store


def _positive(value: str) -> int:
    number = int(value)
    if number < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {value}")
    return number


def _add_common(p: argparse.ArgumentParser, *, batch_size: int, chunk_size: int) -> None:
    p.add_argument("--dataset", type=Path, required=True, help="dataset folder (entity2id.txt, images/, descriptions.tsv)")
    p.add_argument("--out", type=Path, required=True, help="feature file to write, e.g. features/MKG-Y/text.safetensors")
    p.add_argument("--batch-size", type=_positive, default=batch_size, help=f"items per forward pass (default {batch_size})")
    p.add_argument("--missing", choices=store.MISSING_RULES, default="mean",
                   help="row of an entity without this modality: mean of present rows (default) or zeros; "
                        "the mask marks such entities either way")
    p.add_argument("--device", default="auto", help="auto (CUDA when available, else CPU), cpu, cuda, cuda:1, ...")
    p.add_argument("--chunk-size", type=_positive, default=chunk_size,
                   help=f"entities per resumable chunk kept in <out>.partial/ (default {chunk_size})")
    p.add_argument("--force", action="store_true", help="recompute even if --out is up to date")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def configure_parser(parser: argparse.ArgumentParser) -> None:
    """Add the subcommands image, text, import and noise to ``parser``."""
    from momok.features.image import LAYERS

    sub = parser.add_subparsers(dest="features_command", metavar="SUBCOMMAND", required=True)

    p = sub.add_parser("image", help="encode entity images with a frozen torchvision model",
                       description="One vector per entity: the mean of its images' features at --layer.")
    _add_common(p, batch_size=32, chunk_size=256)
    p.add_argument("--encoder", choices=sorted(LAYERS), default="vgg16", help="torchvision architecture (default vgg16)")
    p.add_argument("--layer", default=None,
                   help="vgg: fc7 (default, 4096-d), fc6, pool5, logits; resnet50/mobilenet_v2: pool (default; "
                        "2048-d / 1280-d), logits")
    p.add_argument("--weights", default="default",
                   help="default (torchvision's default ImageNet weights, via its cache $TORCH_HOME/hub/checkpoints), "
                        "a weights entry name such as IMAGENET1K_V1, a state-dict file PATH, or random (shape tests only)")
    p.add_argument("--bad-images", choices=("error", "skip"), default="error",
                   help="an unreadable image stops the run (default) or is skipped")

    p = sub.add_parser("text", help="encode entity texts with a frozen transformers model",
                       description="One vector per entity from descriptions.tsv, or from names/labels when absent.")
    _add_common(p, batch_size=64, chunk_size=1024)
    p.add_argument("--model", default="bert-base-uncased", help="Hugging Face model name or local folder")
    p.add_argument("--pooling", choices=("mean", "cls"), default="mean",
                   help="mean of token states over the attention mask (default) or the first ([CLS]) token")
    p.add_argument("--max-length", type=_positive, default=128, help="tokens kept per text (default 128)")
    p.add_argument("--side-file", type=Path, default=None,
                   help="labels TSV (qid, label, description, source) for Wikidata ids; default: "
                        "entity_labels*.tsv in the dataset folder")
    p.add_argument("--fallback", choices=("auto", "names", "none"), default="auto",
                   help="text for entities without a description: auto = from names/labels only when the "
                        "dataset has no descriptions.tsv (default); names = always; none = never")

    p = sub.add_parser("import", help="convert the authors' feature bundle (img_features.pth, ...)",
                       description="Rows of the bundle must follow the dataset's entity2id order.")
    p.add_argument("--from", dest="bundle", type=Path, required=True, help=".pth/.pt (torch), .npy or .npz file")
    p.add_argument("--modality", choices=("image", "text"), required=True)
    p.add_argument("--dataset", type=Path, required=True, help="dataset folder (entity2id.txt)")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--key", default=None, help="dict entry holding the matrix, when the bundle is a dict of several")
    p.add_argument("--zero-rows", choices=("present", "missing"), default="present",
                   help="all-zero rows count as present (default: the bundles carry no mask) or as missing")
    p.add_argument("--encoder", default="unknown (authors' bundle)", help="text recorded as the encoder")
    p.add_argument("--trust-pickle", action="store_true",
                   help="allow arbitrary pickled objects in a .pth (only for files from a trusted source)")

    p = sub.add_parser("noise", help="add Gaussian noise to a ratio of the entities (paper, Figure 3)",
                       description="See momok.features.noise for which entities and how much noise.")
    p.add_argument("--in", dest="src", type=Path, required=True, help="feature file to perturb")
    p.add_argument("--out", type=Path, required=True, help="noisy copy to write; never the --in file itself")
    p.add_argument("--ratio", type=float, required=True, help="share rho of entities that get noise, in [0, 1]")
    p.add_argument("--seed", type=int, required=True, help="seed of the entity choice and of the noise, in [0, 2**64)")
    p.add_argument("--scale", type=float, default=1.0,
                   help="noise std = scale x the feature's per-dimension std over present entities; finite, >= 0 "
                        "(default 1.0)")


def run(args: argparse.Namespace) -> int:
    """Run the chosen subcommand; prints a one-line summary of the written file."""
    command = args.features_command
    if command == "image":
        from momok.features.image import extract_image_features

        table = extract_image_features(args.dataset, args.out, encoder=args.encoder, layer=args.layer,
                                       weights=args.weights, batch_size=args.batch_size, missing=args.missing,
                                       device=args.device, chunk_size=args.chunk_size, bad_images=args.bad_images,
                                       force=args.force, progress=not args.no_progress)
    elif command == "text":
        from momok.features.text import extract_text_features

        table = extract_text_features(args.dataset, args.out, model=args.model, pooling=args.pooling,
                                      max_length=args.max_length, batch_size=args.batch_size, missing=args.missing,
                                      side_file=args.side_file, fallback=args.fallback, device=args.device,
                                      chunk_size=args.chunk_size, force=args.force, progress=not args.no_progress)
    elif command == "import":
        from momok.features.official import import_bundle

        table = import_bundle(args.bundle, args.modality, args.dataset, args.out, key=args.key,
                              zero_rows=args.zero_rows, encoder=args.encoder, trust_pickle=args.trust_pickle)
    elif command == "noise":
        from momok.features.noise import noise_file

        table = noise_file(args.src, args.out, ratio=args.ratio, seed=args.seed, scale=args.scale)
    else:  # argparse guarantees one of the above
        raise AssertionError(command)
    if table is not None:
        summary = {k: table.metadata[k] for k in ("modality", "source", "text_source", "noise_count")
                   if k in table.metadata}
        print(f"wrote {args.out}: {table.num_entities} x {table.dim}, {int(table.mask.sum())} present, "
              f"{json.dumps(summary)}", file=sys.stderr)
    return 0
