# Functions shared by the rules: they turn config/config.yaml (validated by
# workflow/schemas/config.schema.yaml) into the list of runs of every experiment and into the run
# config of each run. Every experiment of the paper is a config entry; no rule knows about a
# particular table, model or dataset.
#
# Paths (relative to the working directory):
#   data/raw/{dataset}/                                   momok fetch | momok toy
#   features/{dataset}/{modality}.safetensors             momok features image|text|import
#   features/{dataset}/noise/{ratio}/{modality}.safetensors   momok features noise
#   results/configs/{dataset}/{model}/{variant}/seed{seed}.yaml   the run config (rendered here)
#   results/runs/{dataset}/{model}/{variant}/seed{seed}/metrics.json   momok train
#   results/tables/{table}.{csv,md,tex}, results/figures/{figure}.{png,pdf}
#
# Variants (the {variant} wildcard; the names momok/report parses):
#   full                 the run config of the model on the dataset, nothing changed (Table 2)
#   <name>               an entry of config["variants"] (e.g. the Table 3 ablations wo_exid, ...)
#   <grid><value>        a point of a Figure 4 grid (K3, lambda0.001): figure4.grids.<grid>.key = <value>
#   noise<ratio>         Figure 3: image/text features with Gaussian noise on a share <ratio> of
#                        entities (noise0.2); ratio 0 is the "full" run

import copy
import importlib.util
import os
import re
import shlex

import yaml
from snakemake.exceptions import WorkflowError

MODALITIES = ("image", "text")
TABLES = ("table2", "table3", "table4")
FIGURES = ("figure3", "figure4", "figure5")


# --------------------------------------------------------------------------------------------
# Datasets and their feature sources


def dataset_config(dataset):
    try:
        return config["datasets"][dataset]
    except KeyError:
        raise WorkflowError(
            f"dataset {dataset!r} is not configured; configured: {', '.join(config['datasets'])}"
        ) from None


def raw_dir(dataset):
    return f"data/raw/{dataset}"


def raw_files(dataset):
    """The files every raw dataset has (momok fetch and momok toy both write them)."""
    names = ("entity2id.txt", "relation2id.txt", "train.txt", "valid.txt", "test.txt")
    return [f"{raw_dir(dataset)}/{name}" for name in names]


def datasets_with_raw(kind):
    """Names of the datasets whose raw data comes from ``kind`` (fetch or toy)."""
    return [name for name, entry in config["datasets"].items() if kind in entry["raw"]]


def datasets_with_source(modality, source):
    return [
        name
        for name, entry in config["datasets"].items()
        if entry["features"][modality]["source"] == source
    ]


def one_of(names):
    """A wildcard regex matching exactly ``names`` (none: a regex that matches nothing)."""
    return "|".join(re.escape(n) for n in names) if names else "(?!x)x"


def resolve_resource(spec):
    """A path from config: ``package:<module>/<relative path>`` points into an installed Python
    package (e.g. the offline model weights of the toy run); anything else is returned as is."""
    if not isinstance(spec, str) or not spec.startswith("package:"):
        return spec
    package, _, rest = spec[len("package:") :].partition("/")
    found = importlib.util.find_spec(package)
    if found is None or not found.submodule_search_locations:
        raise WorkflowError(f"{spec}: Python package {package!r} is not installed")
    return os.path.join(list(found.submodule_search_locations)[0], rest)


def images_present(dataset):
    """Whether the raw folder already holds images/ (which `momok fetch` does not download)."""
    return os.path.isdir(f"{raw_dir(dataset)}/images")


def official_bundle_instructions(dataset, modality, spec):
    """What to fetch and where to put it, for an authors' bundle that is not there."""
    path = spec["path"]
    return (
        f"datasets.{dataset}.features.{modality}: the authors' feature bundle {path} is missing. "
        f"Download it from {spec.get('url') or 'the authors (see the MoMoK README)'}, "
        f"unpack it and put the {modality} matrix at {path}; or set "
        f"datasets.{dataset}.features.{modality}.allow_missing: true to run without {modality} features."
    )


def missing_source_message(dataset, modality, spec):
    """Why a configured feature source cannot be had, and what to do about it; None when it can."""
    source = spec["source"]
    if source == "official":
        if os.path.exists(spec["path"]):
            return None
        return official_bundle_instructions(dataset, modality, spec)
    raw = dataset_config(dataset)["raw"]
    if source == "encoder" and modality == "image" and "fetch" in raw and "modalities" not in raw:
        # `momok fetch` downloads splits and id maps only; without raw.modalities (momok
        # fetch-modalities) the images are the user's to provide.
        # (Text needs nothing: without descriptions.tsv `momok features text` encodes names/labels.)
        if os.path.isdir(raw_dir(dataset)) and not images_present(dataset):
            return (
                f"datasets.{dataset}.features.image: source 'encoder' needs the entity images under "
                f"{raw_dir(dataset)}/images/<entity>/*.png|jpg, which `momok fetch` does not download. "
                f"Put them there (layout: docs/ARCHITECTURE.md), set raw.modalities to fetch them, "
                f"use source 'official' with the authors' bundle, or set "
                f"datasets.{dataset}.features.image.allow_missing: true."
            )
    return None


def feature_plan(dataset):
    """modality -> {"source", "path" (None: absent), "reason" (why absent)} for one dataset.

    A source that cannot be had makes the modality absent when its ``allow_missing`` is true.
    Otherwise a missing authors' bundle stays in the plan: the job of rule official_bundle that
    would "make" it stops the workflow with official_bundle_instructions (so a dry run still plans
    the whole paper); any other unobtainable source stops the workflow here.
    """
    plan = {}
    for modality in MODALITIES:
        spec = dataset_config(dataset)["features"][modality]
        if spec["source"] == "absent":
            plan[modality] = {"source": "absent", "path": None, "reason": "configured absent"}
            continue
        problem = missing_source_message(dataset, modality, spec)
        if problem is None or (spec["source"] == "official" and not spec.get("allow_missing", False)):
            path = f"features/{dataset}/{modality}.safetensors"
            plan[modality] = {"source": spec["source"], "path": path, "reason": None}
        elif spec.get("allow_missing", False):
            plan[modality] = {"source": "absent", "path": None, "reason": problem}
        else:
            raise WorkflowError(problem)
    return plan


def official_bundles():
    """(dataset, modality, spec) of every feature source that is an authors' bundle."""
    return [
        (dataset, modality, entry["features"][modality])
        for dataset, entry in config["datasets"].items()
        for modality in MODALITIES
        if entry["features"][modality]["source"] == "official"
    ]


def bundle_instructions(wildcards):
    """Param function of the official_bundle rule: the instructions for the bundle at {bundle}."""
    for dataset, modality, spec in official_bundles():
        if os.path.normpath(spec["path"]) == os.path.normpath(wildcards.bundle):
            return official_bundle_instructions(dataset, modality, spec)
    raise WorkflowError(f"{wildcards.bundle} is not an authors' bundle of the config")


def clean_feature(wildcards):
    plan = feature_plan(wildcards.dataset)[wildcards.modality]
    if plan["path"] is None:
        raise WorkflowError(
            f"no {wildcards.modality} features for {wildcards.dataset} to add noise to ({plan['reason']})"
        )
    return plan["path"]


def feature_spec_of(dataset, modality):
    return dataset_config(dataset)["features"][modality]


def official_bundle_of(modality):
    """Input function: the authors' bundle of ``modality`` (rule official_bundle when missing)."""

    def bundle(wildcards):
        return feature_spec_of(wildcards.dataset, modality)["path"]

    return bundle


def official_extra_of(modality):
    """Param function: extra ``momok features import`` arguments (--key, --encoder, free ``extra``)."""

    def extra(wildcards):
        spec = feature_spec_of(wildcards.dataset, modality)
        args = []
        if spec.get("key"):
            args.append(f"--key {shlex.quote(spec['key'])}")
        if spec.get("encoder"):
            args.append(f"--encoder {shlex.quote(spec['encoder'])}")
        if spec.get("extra"):
            args.append(spec["extra"])
        return " ".join(args)

    return extra


def toy_arguments(wildcards):
    """``momok toy`` options from datasets.<name>.raw.toy (seed and sizes)."""
    spec = dataset_config(wildcards.dataset)["raw"]["toy"]
    args = [f"--seed {int(spec.get('seed', 0))}"]
    for key, value in sorted(spec.get("options", {}).items()):
        args.append(f"--{key.replace('_', '-')} {value}")
    return " ".join(args)


def mirror_argument(wildcards):
    mirror = config.get("data_mirror")
    wanted = dataset_config(wildcards.dataset)["raw"].get("use_mirror", True)
    return f"--mirror {shlex.quote(mirror)}" if mirror and wanted else ""


# --------------------------------------------------------------------------------------------
# Run configs


def deep_merge(base, extra):
    """``extra`` merged into a copy of ``base``: dicts merge key by key, anything else replaces."""
    out = copy.deepcopy(base)
    for key, value in (extra or {}).items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def dotted(key, value):
    """``dotted("model.num_experts", 3)`` -> ``{"model": {"num_experts": 3}}``."""
    for part in reversed(key.split(".")):
        value = {part: value}
    return value


def scalar(text):
    """A grid value as written in a variant name (``3``, ``0.001``, ``1e-05``) back to a number."""
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


FULL = "full"
GRID_POINT = re.compile(r"^([A-Za-z_]+)([-+]?[0-9][0-9.eE+-]*)$")


def variant_overrides(variant):
    """Run-config overrides of a variant (see the header); noise variants only change features."""
    if variant == FULL or noise_ratio(variant) is not None:
        return {}
    if variant in config["variants"]:
        return config["variants"][variant]
    grids = config["figure4"]["grids"]
    point = GRID_POINT.match(variant)
    if point and point.group(1) in grids:
        return dotted(grids[point.group(1)]["key"], scalar(point.group(2)))
    raise WorkflowError(
        f"unknown variant {variant!r}: use {FULL!r}, one of config variants "
        f"({', '.join(config['variants']) or 'none'}), '<grid><value>' with a grid of figure4.grids "
        f"({', '.join(grids) or 'none'}) or 'noise<ratio>'"
    )


def noise_ratio(variant):
    """The ratio of a ``noise<ratio>`` variant (its text, as in the feature path), else None."""
    point = GRID_POINT.match(variant)
    return point.group(2) if point and point.group(1) == "noise" else None


def run_features(dataset, variant):
    """The ``features:`` section of a run: feature file per modality (None: absent)."""
    plan = feature_plan(dataset)
    ratio = noise_ratio(variant)
    noisy = config["figure3"]["modalities"]
    features = {}
    for modality in MODALITIES:
        path = plan[modality]["path"]
        if path is not None and ratio is not None and modality in noisy:
            path = f"features/{dataset}/noise/{ratio}/{modality}.safetensors"
        features[modality] = path
    return features


def run_config(dataset, model, variant, seed):
    """The complete run config of one run, merged in this order (later wins):
    run_defaults < models.<model> < datasets.<dataset>.overrides < datasets.<dataset>.models.<model>
    < the variant's overrides < seed, dataset.path and features (set here). An override that sets
    ``features.<modality>: null`` (e.g. for structure-only models) keeps that modality absent, so
    the run neither waits for nor reruns with that feature file."""
    if model not in config["models"]:
        raise WorkflowError(f"model {model!r} is not configured; configured: {', '.join(config['models'])}")
    entry = dataset_config(dataset)
    cfg = deep_merge(config["run_defaults"], {"model": {"name": model}})
    cfg = deep_merge(cfg, config["models"][model])
    cfg = deep_merge(cfg, entry.get("overrides", {}))
    cfg = deep_merge(cfg, entry.get("models", {}).get(model, {}))
    cfg = deep_merge(cfg, variant_overrides(variant))
    features = run_features(dataset, variant)
    for modality in MODALITIES:  # `features: {<modality>: null}` in an override: the model does without
        if modality in cfg.get("features", {}) and cfg["features"][modality] is None:
            features[modality] = None
    allow_missing = any(path is None for path in features.values())
    cfg = deep_merge(
        cfg,
        {
            "seed": int(seed),
            "dataset": {"path": raw_dir(dataset)},
            "features": dict(features, allow_missing=allow_missing),
        },
    )
    return cfg


def run_config_text(wildcards):
    """The run config as YAML text (a param, so that any change reruns the run)."""
    cfg = run_config(wildcards.dataset, wildcards.model, wildcards.variant, wildcards.seed)
    return yaml.safe_dump(cfg, sort_keys=True)


def train_inputs(wildcards):
    cfg = run_config(wildcards.dataset, wildcards.model, wildcards.variant, wildcards.seed)
    features = [cfg["features"][m] for m in MODALITIES if cfg["features"][m]]
    return {
        "config": f"results/configs/{wildcards.dataset}/{wildcards.model}/{wildcards.variant}/seed{wildcards.seed}.yaml",
        "raw": raw_files(wildcards.dataset),
        "features": features,
    }


# --------------------------------------------------------------------------------------------
# Experiments: which runs each table and figure is made of


def _seeds(section):
    return section.get("seeds") or config["seeds"]


def experiment_metrics(target):
    """The metrics.json of every run a table or figure is made of, in order (seeds innermost)."""
    section = config[target]
    runs = []

    def add(dataset, model, variant):
        for seed in _seeds(section):
            runs.append(f"results/runs/{dataset}/{model}/{variant}/seed{seed}/metrics.json")

    if target == "table2":
        for dataset in section["datasets"]:
            for model in section["models"]:
                add(dataset, model, FULL)
    elif target == "table3":  # the full model's run gives rows (1.1)-(1.4) and the reference row
        for dataset in section["datasets"]:
            for variant in [FULL, *section["variants"]]:
                add(dataset, section["model"], variant)
    elif target in ("table4", "figure5"):
        for dataset in section["datasets"]:
            add(dataset, section["model"], FULL)
    elif target == "figure3":
        for dataset in section["datasets"]:
            for model in section["models"]:
                for ratio in section["ratios"]:
                    add(dataset, model, FULL if float(ratio) == 0 else f"noise{ratio}")
    elif target == "figure4":
        for dataset in section["datasets"]:
            for grid, spec in section["grids"].items():
                for value in spec["values"]:
                    add(dataset, section["model"], f"{grid}{value}")
    else:
        raise WorkflowError(f"unknown target {target!r}")
    return runs


def all_targets():
    tables = [f"results/tables/{t}.{ext}" for t in TABLES for ext in ("csv", "md", "tex")]
    figures = [f"results/figures/{f}.{ext}" for f in FIGURES for ext in ("png", "pdf")]
    return tables + figures


wildcard_constraints:
    dataset=one_of(config["datasets"]),
    model=one_of(config["models"]),
    variant=r"[A-Za-z0-9_.+-]+",
    seed=r"\d+",
    modality="image|text",
    ratio=r"[0-9.eE+-]+",
