# Helpers of the modality sources (included right after common.smk, before the rules): which
# feature sources the runs use, and the inputs and options of rule fetch_modalities (modalities.smk).
#
# `features: raw` (default) takes datasets.<d>.features; `--config features=official` takes
# datasets.<d>.official_features (the authors' bundles) where a dataset has them. Applied here, before
# the rules that read the sources are defined.


def select_feature_sources():
    """Replace each dataset's features by its official_features when config["features"] is official."""
    if config.get("features", "raw") != "official":
        return
    for entry in config["datasets"].values():
        if "official_features" in entry:
            entry["features"] = entry["official_features"]


select_feature_sources()


def datasets_with_modalities():
    """Names of the datasets whose images and descriptions come from momok fetch-modalities."""
    return [name for name, entry in config["datasets"].items() if "modalities" in entry["raw"]]


def modality_files(wildcards):
    """Input function of the encoder rules: the fetch's outputs, when the dataset fetches modalities."""
    if wildcards.dataset not in datasets_with_modalities():
        return []
    folder = raw_dir(wildcards.dataset)
    return [f"{folder}/descriptions.tsv", f"{folder}/modalities/manifest.tsv"]


def modalities_arguments(wildcards):
    """momok fetch-modalities options from datasets.<name>.raw.modalities."""
    spec = dataset_config(wildcards.dataset)["raw"]["modalities"]
    return " ".join(f"--{key.replace('_', '-')} {shlex.quote(str(value))}" for key, value in sorted(spec.items()))
