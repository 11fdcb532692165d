"""``momok features noise`` / ``add_noise``: which entities, how much noise, reproducibility."""

from __future__ import annotations

import os

import pytest
import torch

from momok import cli
from momok.errors import MomokError
from momok.features import store
from momok.features.noise import add_noise, choose_noisy_entities
from momok.features.store import FeatureTable, load_features, save_features


def make_table(n: int, dim: int, seed: int = 0, missing: tuple[int, ...] = ()) -> FeatureTable:
    g = torch.Generator().manual_seed(seed)
    features = torch.randn(n, dim, generator=g) * torch.linspace(0.5, 3.0, dim) + 10
    mask = torch.ones(n, dtype=torch.bool)
    mask[list(missing)] = False
    names = [f"e{i}" for i in range(n)]
    return FeatureTable(features, mask, store.base_metadata("image", "encoder", "x", "y", names))


def test_same_seed_same_entities_and_noise_across_modalities():
    image, text = make_table(50, 8, missing=(3, 4)), make_table(50, 5, seed=1, missing=(7,))
    a, b = add_noise(image, 0.3, seed=7), add_noise(image, 0.3, seed=7)
    assert torch.equal(a.features, b.features)
    changed_image = (add_noise(image, 0.3, 7).features != image.features).any(1)
    changed_text = (add_noise(text, 0.3, 7).features != text.features).any(1)
    chosen = choose_noisy_entities(50, 0.3, 7)
    assert len(chosen) == 15
    # every chosen entity that has the modality is noisy; missing ones keep their filler row
    assert changed_image.nonzero().flatten().tolist() == [i for i in chosen.tolist() if i not in (3, 4)]
    assert changed_text.nonzero().flatten().tolist() == [i for i in chosen.tolist() if i != 7]
    assert not torch.equal(add_noise(image, 0.3, 8).features, a.features)


def test_choices_are_nested_and_counted():
    small, large = choose_noisy_entities(200, 0.1, 3), choose_noisy_entities(200, 0.4, 3)
    assert set(small.tolist()) <= set(large.tolist()) and len(small) == 20 and len(large) == 80
    assert len(choose_noisy_entities(7, 0.5, 0)) == 4  # round(3.5) in Python rounds half to even -> 4
    assert len(choose_noisy_entities(9, 1.0, 0)) == 9
    table = make_table(20, 4)
    assert torch.equal(add_noise(table, 0.0, 1).features, table.features)


def test_noise_std_is_scale_times_feature_std():
    table = make_table(4000, 6)
    noisy = add_noise(table, 1.0, seed=5, scale=2.5)
    delta = (noisy.features - table.features).double()
    reference = [table.features[:, d].double().std(unbiased=False) for d in range(6)]  # per dimension, by hand
    for d in range(6):
        assert abs(delta[:, d].std().item() / (2.5 * reference[d].item()) - 1) < 0.05
        assert abs(delta[:, d].mean().item()) < 0.1 * reference[d].item() * 2.5
    # the spread is measured over present entities only
    table.features[0] = 1e6
    table.mask[0] = False
    delta = add_noise(table, 1.0, seed=5, scale=1.0).features - table.features
    assert delta[0].abs().sum() == 0 and delta[1:].abs().max() < 50


def test_constant_dimensions_stay_constant_and_metadata():
    table = make_table(30, 3)
    table.features[:, 1] = 4.0
    noisy = add_noise(table, 0.5, seed=0, scale=1.0)
    assert (noisy.features[:, 1] == 4.0).all()
    meta = noisy.metadata
    assert meta["source"] == "noise" and meta["noise_base_source"] == "encoder"
    assert (meta["noise_ratio"], meta["noise_seed"], meta["noise_scale"], meta["noise_count"],
            meta["noise_applied"]) == ("0.5", "0", "1.0", "15", "15")
    assert torch.equal(noisy.mask, table.mask)


def test_bad_arguments():
    table = make_table(10, 2)
    with pytest.raises(MomokError, match=r"--ratio: the noise ratio must be in \[0, 1\]"):
        add_noise(table, 1.5, 0)
    with pytest.raises(MomokError, match="scale"):
        add_noise(table, 0.5, 0, scale=-1)
    table.mask[:] = False
    with pytest.raises(MomokError, match="no entity has this modality"):
        add_noise(table, 0.5, 0)


def test_noise_command(tmp_path):
    src, dst = tmp_path / "image.safetensors", tmp_path / "noise" / "0.2" / "image.safetensors"
    save_features(src, make_table(40, 4, missing=(0,)))
    assert cli.main(["features", "noise", "--in", str(src), "--out", str(dst), "--ratio", "0.2", "--seed", "3",
                     "--scale", "2"]) == 0
    written = load_features(dst, entities=[f"e{i}" for i in range(40)])
    expected = add_noise(load_features(src), 0.2, 3, 2.0)
    assert torch.equal(written.features, expected.features)
    assert written.metadata["noise_count"] == "8" and written.metadata["noise_input"] == str(src)


def _noise_cli(src, dst, *options: str) -> int:
    return cli.main(["features", "noise", "--in", str(src), "--out", str(dst), "--ratio", "0.5", "--seed", "1",
                     *options])


@pytest.mark.parametrize("same", ["path", "symlink", "dotdot", "hardlink"])
def test_noise_refuses_to_overwrite_its_input(tmp_path, capsys, same):
    src = tmp_path / "image.safetensors"
    save_features(src, make_table(10, 3))
    before = src.read_bytes()
    (tmp_path / "sub").mkdir()
    dst = {"path": src, "dotdot": tmp_path / "sub" / ".." / src.name}.get(same, tmp_path / "other.safetensors")
    if same == "symlink":
        dst.symlink_to(src)
    elif same == "hardlink":
        os.link(src, dst)
    names = sorted(p.name for p in tmp_path.iterdir())
    assert _noise_cli(src, dst) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert f"--out {dst} is the input file {src}" in err
    assert src.read_bytes() == before and sorted(p.name for p in tmp_path.iterdir()) == names


@pytest.mark.parametrize("option, value", [("--scale", "inf"), ("--scale", "nan"), ("--scale", "-1"),
                                           ("--scale", "1e300"), ("--ratio", "nan"), ("--ratio", "1.5"),
                                           ("--ratio", "-0.1"), ("--seed", "-1")])
def test_noise_rejects_bad_options_naming_them(tmp_path, capsys, option, value):
    src, dst = tmp_path / "image.safetensors", tmp_path / "noisy.safetensors"
    save_features(src, make_table(10, 3))
    assert _noise_cli(src, dst, option, value) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"momok features: error: {option}: ") and err.count("\n") == 1, err
    assert "Traceback" not in err and not dst.exists()


def test_noise_out_folder_is_a_one_line_error(tmp_path, capsys):
    src = tmp_path / "image.safetensors"
    save_features(src, make_table(10, 3))
    (tmp_path / "out").mkdir()
    assert _noise_cli(src, tmp_path / "out") == 2
    err = capsys.readouterr().err
    assert err == f"momok features: error: {tmp_path / 'out'}: cannot write it (Is a directory)\n"
