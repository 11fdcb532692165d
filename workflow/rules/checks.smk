# Plan-time checks of the workflow config beyond its JSON schema (workflow/schemas/config.schema.yaml),
# so that a mistake fails `snakemake -n` with the config key named instead of a job hours in:
#   check_config_files      each config file read strictly (momok/yamlio.py): a key written twice
#                           in a mapping is an error (Snakemake's own reader keeps the last one)
#   check_workflow_config   tables and figures name configured datasets, models and variants; toy
#                           options are in range; the run config of every run is built with
#                           momok/config.py, which checks every key, type and range of run_defaults,
#                           models.*, datasets.*.overrides, datasets.*.models.*, variants.* and the
#                           figure4 grid points, naming the config key that set a bad value.
# The Snakefile calls check_config_files before the schema validation and check_workflow_config
# after including common.smk (whose run_layers it uses); the second one imports momok's models
# (a few seconds), so it runs in the main Snakemake process only.


def check_config_files(paths):
    from momok.errors import MomokError
    from momok.yamlio import load_yaml

    for path in paths:
        try:
            load_yaml(path)
        except MomokError as err:
            raise WorkflowError(str(err)) from None


def check_experiment_names():
    """Every dataset, model and variant a table or figure names is configured (otherwise the run's
    job would have no rule: a MissingInputException that names no config key)."""
    for target in TABLES + FIGURES:
        section = config[target]
        named = [("datasets", "datasets", section["datasets"])]
        if "models" in section:
            named.append(("models", "models", section["models"]))
        if "model" in section:
            named.append(("model", "models", [section["model"]]))
        if "variants" in section:
            named.append(("variants", "variants", section["variants"]))
        for dataset, models in section.get("skip", {}).items():
            named.append(("skip", "datasets", [dataset]))
            named += [(f"skip.{dataset}", "models", models)]
        for key, where, names in named:
            for name in names:
                if name not in config[where]:
                    raise WorkflowError(
                        f"{target}.{key}: {name!r} is not configured under {where}: "
                        f"(configured: {', '.join(config[where]) or 'none'})"
                    )


def check_toy_options():
    from momok.data.toy import ToyOptions
    from momok.errors import ConfigError

    for name, entry in config["datasets"].items():
        if "toy" in entry["raw"]:
            try:
                ToyOptions(**entry["raw"]["toy"].get("options", {})).validate()
            except ConfigError as err:
                raise WorkflowError(f"datasets.{name}.raw.toy.options: {err}") from None


def planned_runs():
    """(dataset, model, variant) of every run of every table and figure, and the default run of
    every configured model on every configured dataset."""
    runs = {(dataset, model, FULL) for dataset in config["datasets"] for model in config["models"]}
    for target in TABLES + FIGURES:
        for path in experiment_metrics(target):  # results/runs/{dataset}/{model}/{variant}/seed{seed}/...
            runs.add(tuple(path.split("/")[2:5]))
    return sorted(runs)


def check_run_configs():
    from momok.config import config_from_layers
    from momok.errors import ConfigError

    for dataset, model, variant in planned_runs():
        # what the workflow sets itself (run_config): seed, dataset path, features (checked per job)
        own = {"seed": 0, "dataset": {"path": raw_dir(dataset)}, "features": {"allow_missing": True}}
        try:
            config_from_layers(run_layers(dataset, model, variant) + [("workflow", own)])
        except ConfigError as err:
            raise WorkflowError(f"{err} (in the run config of {dataset}/{model}/{variant})") from None


def check_workflow_config():
    check_experiment_names()
    check_toy_options()
    check_run_configs()
