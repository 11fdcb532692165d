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
# Variants (the {variant} wildcard), named by momok/report/variants.py, which the report reads back:
#   full                 the run config of the model on the dataset, nothing changed (Table 2)
#   <name>               an entry of config["variants"] (e.g. the Table 3 ablations wo_exid, ...)
#   <grid><value>        a point of a Figure 4 grid (K3, lambda0.001): figure4.grids.<grid>.key = <value>
#   noise<ratio>         Figure 3: image/text features with Gaussian noise on a share <ratio> of
#                        entities (noise0.2); ratio 0 is the "full" run

import importlib.util
import os
import re
import shlex

import yaml
from snakemake.exceptions import WorkflowError

from momok.config import deep_merge
from momok.modalities import FILE_MODALITIES as MODALITIES  # the modalities with feature files
from momok.report.variants import FULL, noise_ratio, noise_variant, sweep_point, sweep_variant
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


#: The files every raw dataset has (momok fetch and momok toy both write them).
RAW_FILES = ("entity2id.txt", "relation2id.txt", "train.txt", "valid.txt", "test.txt")


def raw_files(dataset):
    return [f"{raw_dir(dataset)}/{name}" for name in RAW_FILES]


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
            args.append(extra_arguments(wildcards.dataset, modality))
        return " ".join(args)

    return extra


def extra_arguments(dataset, modality):
    """Param: datasets.<dataset>.features.<modality>.extra, split as a shell would split it and quoted
    word by word, so that it reaches the command as arguments only (never as shell syntax: ``; rm``
    becomes the two arguments ``';'`` and ``rm``)."""
    text = feature_spec_of(dataset, modality).get("extra", "")
    try:
        return shlex.join(shlex.split(text))
    except ValueError as err:
        raise WorkflowError(f"datasets.{dataset}.features.{modality}.extra: {err} in {text!r}") from None


def toy_arguments(wildcards):
    """``momok toy`` options from datasets.<name>.raw.toy (seed and sizes), each value quoted."""
    spec = dataset_config(wildcards.dataset)["raw"]["toy"]
    args = [f"--seed {int(spec.get('seed', 0))}"]
    for key, value in sorted(spec.get("options", {}).items()):
        args.append(f"--{key.replace('_', '-')} {shlex.quote(str(value))}")
    return " ".join(args)


def mirror_argument(wildcards):
    mirror = config.get("data_mirror")
    wanted = dataset_config(wildcards.dataset)["raw"].get("use_mirror", True)
    return f"--mirror {shlex.quote(mirror)}" if mirror and wanted else ""


# --------------------------------------------------------------------------------------------
# Run configs


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


def variant_overrides(variant):
    """Run-config overrides of a variant (see the header); noise variants only change features."""
    if variant == FULL or noise_ratio(variant) is not None:
        return {}
    if variant in config["variants"]:
        return config["variants"][variant]
    grids = config["figure4"]["grids"]
    point = sweep_point(variant)
    if point and point[0] in grids:
        return dotted(grids[point[0]]["key"], scalar(point[1]))
    raise WorkflowError(
        f"unknown variant {variant!r}: use {FULL!r}, one of config variants "
        f"({', '.join(config['variants']) or 'none'}), '<grid><value>' with a grid of figure4.grids "
        f"({', '.join(grids) or 'none'}) or 'noise<ratio>'"
    )


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


def variant_label(variant):
    """The config key a variant's overrides come from (named in error messages)."""
    point = sweep_point(variant)
    if variant not in config["variants"] and point and point[0] in config["figure4"]["grids"]:
        return f"figure4.grids.{point[0]}"
    return f"variants.{variant}"


def run_layers(dataset, model, variant):
    """(config key, run-config overrides) of one run in merge order, later wins: run_defaults <
    models.<model> < datasets.<dataset>.overrides < datasets.<dataset>.models.<model> < the variant's
    overrides. ``model`` is a key of config["models"]: the run's model.name is that key unless the
    entry sets model.name itself (``mans: {model: {name: ikrl, sampler: {name: mans}}}`` runs IKRL with
    MANS's sampler under the name mans, in its run folder and in the tables)."""
    if model not in config["models"]:
        raise WorkflowError(f"model {model!r} is not configured; configured: {', '.join(config['models'])}")
    entry = dataset_config(dataset)
    return [
        ("run_defaults", config["run_defaults"]),
        (f"models.{model}", deep_merge({"model": {"name": model}}, config["models"][model])),
        (f"datasets.{dataset}.overrides", entry.get("overrides", {})),
        (f"datasets.{dataset}.models.{model}", entry.get("models", {}).get(model, {})),
        (variant_label(variant), variant_overrides(variant)),
    ]


def run_config(dataset, model, variant, seed):
    """The complete run config of one run: its run_layers merged, then seed, dataset.path and features
    (set here). An override that sets ``features.<modality>: null`` (e.g. for structure-only models)
    keeps that modality absent, so the run neither waits for nor reruns with that feature file."""
    cfg = {}
    for _, layer in run_layers(dataset, model, variant):
        cfg = deep_merge(cfg, layer)
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


#: The run variants each table and figure is made of, from its config section; its runs are every
#: dataset x model (``models``, or the one ``model``) x variant x seed of the section.
EXPERIMENT_VARIANTS = {
    "table2": lambda section: [FULL],
    # the full model's run gives rows (1.1)-(1.4) and the reference row
    "table3": lambda section: [FULL, *section["variants"]],
    "table4": lambda section: [FULL],
    "figure3": lambda section: [noise_variant(ratio) for ratio in section["ratios"]],
    "figure4": lambda section: [
        sweep_variant(grid, value) for grid, spec in section["grids"].items() for value in spec["values"]
    ],
    "figure5": lambda section: [FULL],
}


def experiment_metrics(target):
    """The metrics.json of every run a table or figure is made of, in order (seeds innermost)."""
    if target not in EXPERIMENT_VARIANTS:
        raise WorkflowError(f"unknown target {target!r}")
    section = config[target]
    models = section["models"] if "models" in section else [section["model"]]
    skip = section.get("skip", {})  # table2: dataset -> models not run on it
    return [
        f"results/runs/{dataset}/{model}/{variant}/seed{seed}/metrics.json"
        for dataset in section["datasets"]
        for model in models
        if model not in skip.get(dataset, [])
        for variant in EXPERIMENT_VARIANTS[target](section)
        for seed in _seeds(section)
    ]


def all_targets():
    tables = [f"results/tables/{t}.{ext}" for t in TABLES for ext in ("csv", "md", "tex")]
    figures = [f"results/figures/{f}.{ext}" for f in FIGURES for ext in ("png", "pdf")]
    return tables + figures


wildcard_constraints:
    dataset=one_of(config["datasets"]),
    model=one_of(config["models"]),
    variant=r"[A-Za-z0-9_.+-]+",
    seed=r"\d+",
    modality=one_of(MODALITIES),
    ratio=r"[0-9.eE+-]+",
