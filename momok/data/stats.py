"""``momok stats DIR... [--features FEATDIR]... [--format text|csv|markdown]``: the paper's Table 1.

One row per dataset folder: #Entity, #Relation, #Train/#Valid/#Test (lines of the split files, as the
benchmarks' README counts them, repeated lines included), then the modality data that exist:

* ``Image ents``: entities whose ``images/<entity_dirname(name)>/`` folder holds at least one file;
* ``Text ents``: rows of ``descriptions.tsv``;
* with ``--features FEATDIR`` (holding ``image.safetensors`` / ``text.safetensors``): the number of
  entities whose ``mask`` is 1 (Table 1's "Num") and the feature width (Table 1's "Dim").

``-`` marks what does not exist. The quirk summary of each dataset (``QuirkReport``) follows the table
(in ``csv`` format it goes to stderr so that stdout stays a CSV file).
"""

from __future__ import annotations

import argparse
import csv
import io
import sys
from dataclasses import dataclass, field
from pathlib import Path

from momok.data.datasets import KGDataset, entity_dirname, load_dataset, read_descriptions
from momok.errors import InputError

COLUMNS = ["Dataset", "#Entity", "#Relation", "#Train", "#Valid", "#Test", "Image ents", "Text ents",
           "Image num", "Image dim", "Text num", "Text dim"]


@dataclass
class DatasetStats:
    """One Table 1 row (``None`` = the data do not exist) and the notes printed under the table."""

    name: str
    entities: int
    relations: int
    train: int
    valid: int
    test: int
    image_entities: int | None = None
    text_entities: int | None = None
    image_num: int | None = None
    image_dim: int | None = None
    text_num: int | None = None
    text_dim: int | None = None
    notes: list[str] = field(default_factory=list)

    def row(self) -> list[str]:
        values = [self.entities, self.relations, self.train, self.valid, self.test, self.image_entities,
                  self.text_entities, self.image_num, self.image_dim, self.text_num, self.text_dim]
        return [self.name] + ["-" if v is None else str(v) for v in values]


def count_image_entities(dataset: KGDataset) -> tuple[int | None, int]:
    """(entities with a non-empty ``images/<entity_dirname>/`` folder or None without ``images/``,
    folders of ``images/`` that match no entity)."""
    images = dataset.root / "images"
    if not images.is_dir():
        return None, 0
    folders = {p.name for p in images.iterdir() if p.is_dir()}
    names = {entity_dirname(e) for e in dataset.entities}
    with_files = sum(1 for d in folders & names if any(p.is_file() for p in (images / d).iterdir()))
    return with_files, len(folders - names)


def feature_summary(path: Path, entities: list[str]) -> tuple[int, int]:
    """(entities with the modality = mask sum, feature width) of a feature file.

    Uses ``momok.features.store.load_features`` (full checks against the entity list) when it is
    importable, otherwise reads the safetensors file directly.
    """
    try:
        from momok.features.store import load_features
    except ImportError:
        load_features = None
    if load_features is not None:
        table = load_features(path, entities=entities)
        return int(table.mask.sum()), int(table.features.shape[1])
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            shape = f.get_slice("features").get_shape()
            mask = f.get_tensor("mask")
    except Exception as err:  # safetensors has its own error types
        raise InputError(path, f"cannot read the feature file ({err})") from err
    if len(shape) != 2 or shape[0] != len(entities):
        raise InputError(path, f"features have shape {shape}, expected [{len(entities)}, dim]")
    return int(mask.sum()), int(shape[1])


def dataset_stats(root: str | Path, features: str | Path | None = None) -> DatasetStats:
    """Table 1 row of the dataset folder ``root``; ``features``: a folder with ``<modality>.safetensors``."""
    dataset = load_dataset(root)
    q = dataset.quirks
    stats = DatasetStats(dataset.name, dataset.num_entities, dataset.num_relations,
                         q.num_lines["train"], q.num_lines["valid"], q.num_lines["test"])
    stats.image_entities, stray = count_image_entities(dataset)
    if stray:
        stats.notes.append(f"{stray} folders of images/ match no entity")
    if (dataset.root / "descriptions.tsv").exists():
        stats.text_entities = len(read_descriptions(dataset.root, entities=dataset.entities))
    if features is not None:
        folder = Path(features)
        if not folder.is_dir():
            raise InputError(folder, "feature folder not found")
        for modality in ("image", "text"):
            path = folder / f"{modality}.safetensors"
            if path.is_file():
                num, dim = feature_summary(path, dataset.entities)
                setattr(stats, f"{modality}_num", num)
                setattr(stats, f"{modality}_dim", dim)
    stats.notes.extend(q.lines())
    return stats


def format_table(rows: list[list[str]], fmt: str) -> str:
    """``rows`` (without header) as an aligned text table, CSV or a Markdown table."""
    if fmt == "csv":
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(COLUMNS)
        writer.writerows(rows)
        return buffer.getvalue().rstrip("\n")
    if fmt == "markdown":
        lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
        lines += ["| " + " | ".join(r) + " |" for r in rows]
        return "\n".join(lines)
    widths = [max(len(c), *(len(r[i]) for r in rows)) for i, c in enumerate(COLUMNS)]
    line = lambda cells: "  ".join(c.ljust(w) if i == 0 else c.rjust(w)  # noqa: E731
                                   for i, (c, w) in enumerate(zip(cells, widths)))
    return "\n".join([line(COLUMNS)] + [line(r) for r in rows])


def configure_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("dirs", nargs="+", type=Path, metavar="DIR", help="dataset folder(s), one row each")
    parser.add_argument("--features", action="append", type=Path, default=None, metavar="FEATDIR",
                        help="folder with image.safetensors/text.safetensors; give it once per DIR, in the "
                             "same order (default: no feature columns)")
    parser.add_argument("--format", choices=["text", "csv", "markdown"], default="text",
                        help="table format (default: text)")


def run(args: argparse.Namespace) -> int:
    features = args.features or [None] * len(args.dirs)
    if len(features) != len(args.dirs):
        raise InputError(None, f"--features given {len(features)} times for {len(args.dirs)} dataset folders; "
                               f"give it once per DIR or not at all")
    all_stats = [dataset_stats(d, f) for d, f in zip(args.dirs, features)]
    print(format_table([s.row() for s in all_stats], args.format))
    notes = sys.stderr if args.format == "csv" else sys.stdout
    for s in all_stats:
        print(f"\n{s.name}:", file=notes)
        for note in s.notes:
            print(f"{'- ' if args.format == 'markdown' else '  '}{note}", file=notes)
    return 0
