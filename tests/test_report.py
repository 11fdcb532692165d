"""Tests of momok.report: tables and figures from SYNTHETIC run folders (clearly fake numbers, built here),
and spot checks of paper.yaml against the paper's text when the shared copy is present."""

from __future__ import annotations

import importlib.util
import json
import math
import re
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

from momok.errors import InputError
from momok.report import figures, tables
from momok.report.runs import (Stat, describe_feature_sources, discover_runs, group_runs, load_run, load_runs,
                               parse_run_path, short_relation)

REPO = Path(__file__).resolve().parents[1]
PAPER_TEXT = REPO.parent / "shared" / "paper" / "000_e0e79e29dcbb2ba4.txt"
METRICS = ("mrr", "hits@1", "hits@3", "hits@10")
DB = "<http://dbpedia.org/ontology/{}>"
# Synthetic per-relation MRRs (fractions) of each MoMoK score key; "rare" has too few queries to count.
RELATIONS = {
    "routeJunction": ({"s": 0.9, "v": 0.5, "t": 0.4, "j": 0.6, "joint": 0.7}, 40),
    "sisterStation": ({"s": 0.2, "v": 0.8, "t": 0.6, "j": 0.5, "joint": 0.8}, 30),
    "isPartOf": ({"s": 0.3, "v": 0.3, "t": 0.7, "j": 0.4, "joint": 0.5}, 25),
    "genre": ({"s": 0.1, "v": 0.1, "t": 0.1, "j": 0.6, "joint": 0.3}, 20),
    "rare": ({"s": 1.0, "v": 0.0, "t": 0.0, "j": 0.0, "joint": 0.0}, 3),
}
FEATURES = {"image": {"source": "encoder", "encoder": "mobilenet_v2", "modality": "image"},
            "text": {"source": "encoder", "encoder": "all-MiniLM-L6-v2", "modality": "text"}}


def synthetic_value(model: str, variant: str, key: str, metric: str, seed: int) -> float:
    """Fake metric: a fixed base per metric, offsets per key/variant, and +0.01 per seed."""
    base = {"mrr": 0.40, "hits@1": 0.30, "hits@3": 0.45, "hits@10": 0.55}[metric]
    offset = {"joint": 0.0, "score": -0.05, "s": -0.03, "v": -0.025, "t": -0.02, "j": -0.01}[key]
    if model != "momok":
        offset -= 0.02
    if variant.startswith("noise"):
        offset -= 0.1 * float(variant[5:])
    if variant.startswith("K"):
        offset -= 0.005 * abs(int(variant[1:]) - 3)
    if variant.startswith("lambda"):
        offset -= 0.01 * abs(math.log10(float(variant[6:])) + 3)
    return base + offset + 0.01 * seed


def summary(model, variant, key, seed):
    block = {m: synthetic_value(model, variant, key, m, seed) for m in METRICS}
    block.update(mr=10.0, count=100)
    both = {"realistic": block, "optimistic": block, "pessimistic": block}
    per_relation = {DB.format(name): {"realistic": {"mrr": mrrs[key] if key in mrrs else 0.1, "count": n}, "count": n}
                    for name, (mrrs, n) in RELATIONS.items()}
    return {"both": both, "head": both, "tail": both, "per_relation": per_relation}


def make_run(root: Path, dataset: str, model: str, variant: str, seed: int, *, weights: bool = False,
             features: dict | None = FEATURES) -> Path:
    run = root / "runs" / dataset / model / variant / f"seed{seed}"
    run.mkdir(parents=True)
    keys = ["s", "v", "t", "j", "joint"] if model == "momok" else ["score"]
    metrics = {"best_epoch": 3,
               "valid": {k: summary(model, variant, k, seed) for k in keys},
               "test": {k: summary(model, variant, k, seed) for k in keys},
               "feature_sources": features}
    (run / "metrics.json").write_text(json.dumps(metrics))
    (run / "config.yaml").write_text(yaml.safe_dump({"seed": seed, "dataset": {"path": f"data/raw/{dataset}"},
                                                     "model": {"name": model}}))
    if weights:
        rows = []
        for r in range(15):
            for direction in ("tail", "head"):
                row = {"relation": r, "relation_name": DB.format(f"synthRelation{r:02d}"), "direction": direction,
                       "count": 100 - 5 * r + (1 if direction == "tail" else 0)}
                alpha = [0.2 + 0.02 * r, 0.3, 0.5 - 0.02 * r]
                row.update({f"alpha_{m}": a for m, a in zip("svt", alpha)})
                for m in "svt":
                    gates = [0.6 if (r % 3) == k else 0.2 for k in range(3)]
                    row.update({f"gate_{m}_{k}": g for k, g in enumerate(gates)})
                rows.append(row)
        pd.DataFrame(rows).to_csv(run / "weights.csv", index=False)
    return run


@pytest.fixture(scope="module")
def run_tree(tmp_path_factory) -> list[Path]:
    root = tmp_path_factory.mktemp("report")
    runs = []
    for seed in (0, 1, 2):
        runs.append(make_run(root, "DB15K", "momok", "full", seed, weights=True))
    for variant in ("wo_relational", "wo_noise", "wo_adaptive_fusion", "wo_joint_training", "wo_exid"):
        runs.append(make_run(root, "DB15K", "momok", variant, 0))
    for seed in (0, 1):
        runs.append(make_run(root, "DB15K", "transe", "full", seed, features=None))
        for model in ("momok", "tbkgc"):
            for ratio in ("0.2", "0.5"):
                runs.append(make_run(root, "DB15K", model, f"noise{ratio}", seed))
    runs.append(make_run(root, "DB15K", "tbkgc", "full", 0))
    for k in (2, 3, 5):
        runs.append(make_run(root, "DB15K", "momok", f"K{k}", 0))
    for lam in ("0.0001", "0.001", "0.01"):
        runs.append(make_run(root, "DB15K", "momok", f"lambda{lam}", 0))
    runs.append(make_run(root, "toy", "momok", "full", 0, weights=True))
    return runs


def read_csv(prefix: Path) -> pd.DataFrame:
    return pd.read_csv(prefix.with_name(prefix.name + ".csv"))


# ------------------------------------------------------------------ runs

def test_parse_run_path_accepts_folder_and_metrics_file(tmp_path):
    folder = tmp_path / "results" / "runs" / "MKG-W" / "momok" / "noise0.2" / "seed3"
    for path in (folder, folder / "metrics.json"):
        run_dir, key = parse_run_path(path)
        assert run_dir == folder
        assert (key.dataset, key.model, key.variant, key.seed) == ("MKG-W", "momok", "noise0.2", 3)
    with pytest.raises(InputError, match="not a run folder"):
        parse_run_path(tmp_path / "runs" / "momok" / "full")


def test_stat_matches_hand_computed_mean_and_sample_std():
    stat = Stat.of([0.40, 0.41, 0.42]).scaled(100)
    assert stat.mean == pytest.approx(41.0)
    assert stat.std == pytest.approx(1.0)  # sqrt(((-1)^2 + 0 + 1^2) / 2)
    assert Stat.of([0.5]).std is None


def test_missing_and_broken_runs_name_the_file(tmp_path, run_tree):
    missing = tmp_path / "runs" / "DB15K" / "momok" / "full" / "seed9"
    with pytest.raises(InputError, match="seed9: run folder does not exist"):
        load_run(missing)
    unfinished = tmp_path / "runs" / "DB15K" / "momok" / "full" / "seed4"
    unfinished.mkdir(parents=True)
    with pytest.raises(InputError, match=r"seed4/metrics.json: missing"):
        load_run(unfinished)
    (unfinished / "metrics.json").write_text('{"test": {\n  "joint": ,\n}}')
    with pytest.raises(InputError, match=r"seed4/metrics.json:2: not valid JSON"):
        load_run(unfinished)
    with pytest.raises(InputError, match="given twice"):
        load_runs([run_tree[0], run_tree[0] / "metrics.json"])


def test_discover_and_group_runs(run_tree):
    root = run_tree[0].parents[4]
    found = discover_runs(root)
    assert sorted(found) == sorted(run_tree)
    groups = group_runs(load_runs(found))
    assert groups[("DB15K", "momok", "full")].seeds == [0, 1, 2]
    assert describe_feature_sources(FEATURES) == "image: encoder mobilenet_v2; text: encoder all-MiniLM-L6-v2"
    assert groups[("DB15K", "transe", "full")].feature_label == "structure only (no feature files)"
    assert short_relation(DB.format("isPartOf")) == "isPartOf"


# ------------------------------------------------------------------ tables

def test_table2_numbers_flags_and_files(run_tree, tmp_path):
    table = tables.table2(load_runs(run_tree))
    prefix = tmp_path / "out" / "table2"
    paths = tables.write_table(table, prefix)
    assert [p.suffix for p in paths] == [".csv", ".md", ".tex"] and all(p.stat().st_size > 0 for p in paths)
    csv = read_csv(prefix)
    paper = tables.load_paper()
    # DB15K: 19 baselines + MoMoK (4 metrics); toy (not in the paper): only the model we ran.
    assert len(csv) == 20 * 4 + 1 * 4 and set(csv[csv.dataset == "toy"].row) == {"MoMoK"}
    cell = csv[(csv.dataset == "DB15K") & (csv.row == "MoMoK") & (csv.metric == "mrr")].iloc[0]
    assert cell.ours_mean == pytest.approx(41.0) and cell.ours_std == pytest.approx(1.0) and cell.n_seeds == 3
    assert cell.paper == pytest.approx(39.57) and cell["diff"] == pytest.approx(41.0 - 39.57)
    assert cell.reproduced == "yes" and "mobilenet_v2" in cell.feature_source
    transe = csv[(csv.dataset == "DB15K") & (csv.row == "TransE") & (csv.metric == "hits@10")].iloc[0]
    assert transe.ours_mean == pytest.approx(100 * (0.55 - 0.05 - 0.02 + 0.005)) and transe.n_seeds == 2
    assert transe.paper == pytest.approx(47.07)
    # Baselines that were not rerun keep the paper's number, flagged, with no "ours".
    vista = csv[(csv.dataset == "DB15K") & (csv.row == "VISTA")]
    assert set(vista.reproduced) == {"no"} and vista.ours_mean.isna().all() and vista["diff"].isna().all()
    assert vista[vista.metric == "mrr"].paper.iloc[0] == pytest.approx(30.42)
    # Rows keep the paper's order.
    order = list(dict.fromkeys(csv[csv.dataset == "DB15K"].row))
    assert order == [m.get("label", m["name"]) for m in paper["table2"]["models"]]
    # toy has no paper numbers.
    assert csv[csv.dataset == "toy"].paper.isna().all()
    md = prefix.with_suffix(".md").read_text()
    assert "VISTA (reported only)" in md and "41.00 ± 1.00" in md and "+1.43" in md
    assert "mobilenet_v2" in md
    tex = prefix.with_suffix(".tex").read_text()
    assert "\\toprule" in tex and "\\cmidrule(lr){3-5}" in tex and "41.00 $\\pm$ 1.00" in tex
    assert "VISTA (reported only)" in tex and "\\bottomrule" in tex


def test_table2_extra_model_is_appended_without_paper_numbers(tmp_path):
    runs = [make_run(tmp_path, "MKG-Y", "momok", "full", 0), make_run(tmp_path, "MKG-Y", "conve", "full", 0)]
    csv = tables.table2(load_runs(runs)).records
    extra = csv[csv.model == "conve"]
    assert list(extra.metric) == ["mrr", "hits@1"] and extra.paper.isna().all() and set(extra.reproduced) == {"yes"}
    assert csv.row.iloc[-1] == "conve"


def test_table3_rows_map_to_variants_and_score_keys(run_tree, tmp_path):
    table = tables.table3(load_runs(run_tree))
    tables.write_table(table, tmp_path / "table3")
    csv = read_csv(tmp_path / "table3")
    db = csv[csv.dataset == "DB15K"]
    assert len(db) == 10 * 4
    image = db[(db.row == "(1.2) Image Modality") & (db.metric == "hits@1")].iloc[0]
    assert image.score_key == "v" and image.variant == "full"
    assert image.ours_mean == pytest.approx(100 * (0.30 - 0.025 + 0.01)) and image.paper == pytest.approx(29.80)
    assert image["diff"] == pytest.approx(image.ours_mean - 29.80)
    exid = db[(db.row == "(2.5) w/o ExID") & (db.metric == "mrr")].iloc[0]
    assert exid.variant == "wo_exid" and exid.n_seeds == 1 and pd.isna(exid.ours_std)
    assert exid.paper == pytest.approx(38.42)
    toy = csv[csv.dataset == "toy"]
    assert set(toy[toy.variant == "wo_exid"].reproduced) == {"no"}
    md = (tmp_path / "table3.md").read_text()
    assert "(2.5) w/o ExID (not run)" in md  # toy: neither run nor in the paper
    assert "DB15K/momok/K" not in md  # only the runs the table uses are listed with their features


def test_table4_relation_winners(run_tree, tmp_path):
    table = tables.table4(load_runs(run_tree), min_count=10, top=8)
    tables.write_table(table, tmp_path / "table4")
    csv = read_csv(tmp_path / "table4")
    ours = csv[(csv.source == "ours") & (csv.dataset == "DB15K")]
    wins = {key: list(group.relation_short) for key, group in ours.groupby("score_key")}
    # By hand from RELATIONS (rare has 3 < 10 queries): s wins routeJunction by 0.9-0.7; v ties the
    # joint score on sisterStation; t wins isPartOf; j wins genre.
    assert wins == {"s": ["routeJunction"], "v": ["sisterStation"], "t": ["isPartOf"], "j": ["genre"],
                    "joint": ["sisterStation"]}
    s_row = ours[ours.score_key == "s"].iloc[0]
    assert s_row.margin == pytest.approx(20.0) and s_row.mrr == pytest.approx(90.0) and s_row.runner_up == "joint"
    assert bool(s_row.in_paper_list)  # RouteJunction is in the paper's Structure list
    assert bool(ours[ours.score_key == "t"].iloc[0].in_paper_list) is False  # PartOf is listed for s/j/full, not t
    paper_rows = csv[csv.source == "paper"]
    assert len(paper_rows) == sum(len(r["relations"]) for r in tables.load_paper()["table4"]["rows"])
    md = (tmp_path / "table4.md").read_text()
    assert "routeJunction* (90.0, +20.0)" in md and "paper (DB15K)" in md


def test_table_on_no_matching_runs_is_a_clear_error(tmp_path):
    runs = load_runs([make_run(tmp_path, "DB15K", "transe", "noise0.2", 0)])
    with pytest.raises(InputError, match="table2: none of the 1 runs has variant 'full'"):
        tables.table2(runs)
    with pytest.raises(InputError, match="table3: none of the 1 runs is a 'momok' run of variant"):
        tables.table3(runs)
    with pytest.raises(InputError, match="figure5"):
        figures.figure5(runs)


# ------------------------------------------------------------------ figures

@pytest.mark.parametrize("name", ["figure3", "figure4", "figure5"])
def test_figures_are_written(run_tree, tmp_path, name):
    fig = figures.FIGURES[name](load_runs(run_tree))
    texts = [t.get_text() for t in fig.texts]
    assert any("seeds:" in t and "mobilenet_v2" in t for t in texts)
    paths = figures.save_figure(fig, tmp_path / name)
    assert [p.suffix for p in paths] == [".png", ".pdf"]
    assert paths[0].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and paths[1].read_bytes()[:5] == b"%PDF-"


def test_relation_weights_top_relations_and_weighting(run_tree):
    group = group_runs(load_runs(run_tree[:3]))[("DB15K", "momok", "full")]
    table = figures.relation_weights(group, max_relations=12)
    assert len(table) == 12 and short_relation(table.index[0]) == "synthRelation00"
    assert table["alpha_s"].iloc[1] == pytest.approx(0.22)  # relation 1, same in both directions
    assert table["count"].iloc[0] == pytest.approx(201)


def test_figure5_missing_weights_is_named(tmp_path):
    runs = load_runs([make_run(tmp_path, "DB15K", "momok", "full", 0)])
    with pytest.raises(InputError, match="weights.csv: missing"):
        figures.figure5(runs)


# ------------------------------------------------------------------ CLI scripts

def _script(name: str):
    spec = importlib.util.spec_from_file_location(name, REPO / "workflow" / "scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_cli_scripts(run_tree, tmp_path):
    out = tmp_path / "cli"
    assert _script("make_table").main(["--table", "table3", "--runs", *map(str, run_tree[:8]),
                                       "--out-prefix", str(out / "table3")]) == 0
    assert (out / "table3.csv").exists() and (out / "table3.tex").exists()
    assert _script("make_figure").main(["--figure", "figure5", "--runs", str(run_tree[0] / "metrics.json"),
                                        "--out-prefix", str(out / "figure5"), "--max-relations", "5"]) == 0
    assert (out / "figure5.png").exists() and (out / "figure5.pdf").exists()
    # A separate process: the exit status and the one-line error of a missing run.
    bad = subprocess.run([sys.executable, str(REPO / "workflow/scripts/make_table.py"), "--table", "table2",
                          "--runs", str(tmp_path / "runs/X/momok/full/seed0"), "--out-prefix", str(out / "t")],
                         capture_output=True, text=True)
    assert bad.returncode == 2 and "seed0: run folder does not exist" in bad.stderr
    assert not (out / "t.csv").exists()


# ------------------------------------------------------------------ paper.yaml against the paper's text

def _paper_lines() -> list[str]:
    if not PAPER_TEXT.exists():
        pytest.skip(f"paper text not present at {PAPER_TEXT}")
    return PAPER_TEXT.read_text(encoding="utf-8").splitlines()


def _cells(line: str) -> list[str]:
    return [c.strip() for c in line.split("|")]


def test_paper_yaml_table2_matches_paper_text():
    lines = _paper_lines()
    paper = tables.load_paper()
    spec = paper["table2"]
    assert len(spec["models"]) == 20  # 19 baselines + MoMoK
    for model in spec["models"]:
        label = model.get("label", model["name"])
        line = next(l for l in lines if re.match(re.escape(label) + r" (\[\d+\] )?\|", l))
        printed = [None if c == "-" else float(c) for c in _cells(line)[1:13]]
        ours = [model["results"][d][m] for d in tables.PAPER_DATASETS for m in spec["metrics"][d]]
        assert printed == ours, label


def test_paper_yaml_tables_1_3_4_match_paper_text():
    lines = _paper_lines()
    paper = tables.load_paper()
    for dataset, stats in paper["table1"]["datasets"].items():
        line = next(l for l in lines if l.startswith(dataset + " ["))
        assert [int(c) for c in _cells(line)[1:] if c] == list(stats.values()), dataset
    for row in paper["table3"]["rows"]:
        name = row["setting"].split(" ", 1)[1] if row["setting"].startswith("(") else row["setting"]
        line = next(l for l in lines if name in l and "|" in l)
        printed = [float(c) for c in _cells(line) if re.fullmatch(r"\d+\.\d+", c)]
        ours = [row["results"]["MKG-W"][m] for m in ("mrr", "hits@1")] + [row["results"]["DB15K"][m] for m in METRICS]
        assert printed == ours, row["setting"]
    start = next(i for i, l in enumerate(lines) if l.startswith("Modality | Outperforming Predictions"))
    for row in paper["table4"]["rows"]:
        line = next(l for l in lines[start:] if l.startswith(row["modality"] + " |"))
        assert [r.strip() for r in _cells(line)[1].split(",")] == row["relations"], row["modality"]


def test_table4_criterion_mrr_lists_each_scores_own_best(run_tree):
    runs = [r for r in load_runs(run_tree) if r.key.variant == "full" and r.key.dataset == "DB15K"]
    group = group_runs(runs)[("DB15K", "momok", "full")]
    lists = tables.relation_winners(group, ["s", "v", "t", "j", "joint"], min_count=10, top=3, criterion="mrr")
    assert [short_relation(w["relation"]) for w in lists["s"]] == ["routeJunction", "isPartOf", "sisterStation"]
    assert lists["s"][2]["margin"] == pytest.approx(20.0 - 80.0)  # sisterStation: v and joint have 80
    with pytest.raises(ValueError, match="criterion"):
        tables.relation_winners(group, ["s"], criterion="best")


def test_feature_source_label_of_noisy_and_missing_modalities():
    sources = {"image": {"source": "noise", "noise_base_source": "encoder", "encoder": "torchvision:vgg16",
                         "noise_ratio": "0.2", "noise_seed": "1", "path": "features/x/noise/0.2/image.safetensors"},
               "text": {"source": "encoder", "encoder": "bert", "text_source": '{"description": 131, "missing": 19}'},
               "audio": None}
    assert describe_feature_sources(sources) == (
        "audio: none; image: noise (on encoder) torchvision:vgg16 noise_ratio=0.2; "
        "text: encoder bert text_source=description:131,missing:19")


def test_weights_columns_from_a_flattened_alpha_tensor():
    # alpha_0.. follow the model's modality order, which is also the order of its gate columns.
    assert figures._alpha_labels(["alpha_0", "alpha_1", "alpha_2"], ["s", "v", "t"]) == ["structure", "image", "text"]
    assert figures._alpha_labels(["alpha_s", "alpha_t"], ["s", "t"]) == ["structure", "text"]
    assert figures._GATE_RE.match("gates_v_1").groups() == ("v", "1")
    assert figures._GATE_RE.match("gate_t_0").groups() == ("t", "0")


def test_figure3_caption_names_base_features_once_and_the_noise_ratios(tmp_path):
    noisy = {m: {**meta, "source": "noise", "noise_base_source": "encoder", "noise_ratio": "0.3"}
             for m, meta in FEATURES.items()}
    runs = load_runs([make_run(tmp_path, "MKG-Y", "momok", "full", 0),
                      make_run(tmp_path, "MKG-Y", "momok", "noise0.3", 0, features=noisy)])
    caption = figures._caption(list(group_runs(runs).values()))
    assert caption == ("Dataset: MKG-Y; seeds: 0; features: image: encoder mobilenet_v2; text: encoder "
                       "all-MiniLM-L6-v2; noise ratios 0.3 (share of entities with Gaussian feature noise)")


def test_latex_escape_needs_no_extra_packages():
    assert tables.latex_escape("a_b & <x> 5% ± Δ – {y}") == (
        "a\\_b \\& \\textless{}x\\textgreater{} 5\\% $\\pm$ $\\Delta$ -- \\{y\\}")
