"""``momok stats``: Table 1 rows of dataset folders."""

from __future__ import annotations

import csv
import io
import re
import sys

import pytest
import torch

from conftest import TINY_ENTITIES
from momok.cli import main
from momok.data.stats import COLUMNS, dataset_stats, format_table
from momok.errors import InputError


def write_features(folder, modality, dim, present, entities=TINY_ENTITIES):
    from momok.features.store import FeatureTable, base_metadata, save_features

    g = torch.Generator().manual_seed(dim)
    mask = torch.zeros(len(entities), dtype=torch.bool)
    mask[present] = True
    metadata = base_metadata(modality, "test", "none", "none", entities)
    if modality == "text":
        metadata["text_source"] = "test"
    save_features(folder / f"{modality}.safetensors",
                  FeatureTable(torch.randn(len(entities), dim, generator=g), mask, metadata))


def test_tiny_row(tiny_dataset_dir):
    s = dataset_stats(tiny_dataset_dir)
    assert s.row() == ["TINY", "6", "2", "6", "4", "3", "2", "3", "-", "-", "-", "-"]
    assert "1 folders of images/ match no entity" in s.notes
    assert "1 entities of entity2id occur in no split" in s.notes  # the quirk summary follows


def test_without_modality_data(tiny_dataset_dir):
    import shutil

    shutil.rmtree(tiny_dataset_dir / "images")
    (tiny_dataset_dir / "descriptions.tsv").unlink()
    assert dataset_stats(tiny_dataset_dir).row()[6:8] == ["-", "-"]


def test_feature_columns(tiny_dataset_dir, tmp_path, monkeypatch):
    feats = tmp_path / "features"
    write_features(feats, "image", 7, [0, 1, 4, 5])
    write_features(feats, "text", 5, [0, 2, 4])
    assert dataset_stats(tiny_dataset_dir, feats).row()[8:] == ["4", "7", "3", "5"]
    (feats / "text.safetensors").unlink()
    assert dataset_stats(tiny_dataset_dir, feats).row()[8:] == ["4", "7", "-", "-"]
    # without momok.features.store the file is read with safetensors directly, same numbers
    monkeypatch.setitem(sys.modules, "momok.features.store", None)
    assert dataset_stats(tiny_dataset_dir, feats).row()[8:] == ["4", "7", "-", "-"]
    with pytest.raises(InputError, match="feature folder not found"):
        dataset_stats(tiny_dataset_dir, tmp_path / "nope")


def test_features_for_another_entity_list_are_refused(tiny_dataset_dir, tmp_path):
    feats = tmp_path / "features"
    write_features(feats, "image", 3, [0], entities=TINY_ENTITIES[:5])
    with pytest.raises(InputError, match="image.safetensors"):
        dataset_stats(tiny_dataset_dir, feats)


def test_formats():
    rows = [["A", "1", "2", "3", "4", "5", "-", "-", "-", "-", "-", "-"],
            ["Bee", "10", "20", "30", "40", "50", "6", "7", "8", "9", "10", "11"]]
    parsed = list(csv.reader(io.StringIO(format_table(rows, "csv"))))
    assert parsed == [COLUMNS] + rows
    md = format_table(rows, "markdown").splitlines()
    assert md[0] == "| " + " | ".join(COLUMNS) + " |" and md[1].count("---") == len(COLUMNS)
    assert md[3] == "| " + " | ".join(rows[1]) + " |"
    text = format_table(rows, "text").splitlines()
    assert [line.split() for line in text[1:]] == rows
    assert len({len(line) for line in text}) == 1  # aligned columns


def test_cli(tiny_dataset_dir, capsys):
    assert main(["stats", str(tiny_dataset_dir), "--format", "csv"]) == 0
    out, err = capsys.readouterr()
    assert out.splitlines() == [",".join(COLUMNS), "TINY,6,2,6,4,3,2,3,-,-,-,-"]
    assert "valid and test share 1 distinct triples" in err  # quirks go to stderr with csv
    assert main(["stats", str(tiny_dataset_dir), "--format", "markdown"]) == 0
    out = capsys.readouterr().out
    assert "| TINY | 6 | 2 | 6 | 4 | 3 | 2 | 3 | - | - | - | - |" in out and "- valid and test share" in out
    assert main(["stats", str(tiny_dataset_dir), "--features", "a", "--features", "b"]) == 2
    assert "--features given 2 times for 1 dataset folders" in capsys.readouterr().err


def test_real_benchmarks_reproduce_readme(shared_datasets, capsys):
    names = ["MKG-W", "MKG-Y", "DB15K"]
    readme = (shared_datasets / "README.md").read_text(encoding="utf-8")
    assert main(["stats", *(str(shared_datasets / n) for n in names), "--format", "csv"]) == 0
    rows = {r[0]: r for r in csv.reader(io.StringIO(capsys.readouterr().out))}
    for name in names:
        published = re.search(rf"^\| {re.escape(name)} \|((?: \d+ \|){{5}})", readme, re.M)[1]
        assert rows[name][1:6] == published.replace("|", " ").split()
