"""Plan-time checks of the workflow config (issue 11, items 2 and 4): a broken config/toy.yaml copy
makes ``snakemake -n`` fail at once with the config key named (workflow/rules/checks.smk, the schema),
and no config string reaches a shell command as shell syntax."""

from __future__ import annotations

import copy
import shutil

import pytest

from test_workflow import TOY, load, snakemake, write_config

pytestmark = [pytest.mark.skipif(shutil.which("snakemake") is None, reason="snakemake is not installed"),
              pytest.mark.slow]  # one snakemake process per case, a few seconds each


def plan(tmp_path, config: dict | str, *targets: str):
    """``snakemake -n -p TARGETS`` with ``config`` (a dict, or the config file's text)."""
    if isinstance(config, str):
        path = tmp_path / "config.yaml"
        path.write_text(config, encoding="utf-8")
    else:
        path = write_config(tmp_path, config)
    result = snakemake(tmp_path, *(targets or ("all",)), "-n", "-p", config=path, timeout=120)
    return result.returncode, result.stdout + result.stderr


def toy_with(change) -> dict:
    config = copy.deepcopy(load(TOY))
    change(config)
    return config


def _set(keys: str, value):
    def change(config):
        *parents, last = keys.split(".")
        node = config
        for key in parents:
            node = node.setdefault(key, {})
        node[last] = value
    return change


@pytest.mark.parametrize("change, words", [
    (_set("run_defaults.training.epoch", 3), ["run_defaults: training.epoch: unknown key"]),
    (_set("models.momok.model.num_expert", 3), ["models.momok: model.num_expert: unknown key"]),
    (_set("figure4.grids.K.key", "model.num_expertz"), ["figure4.grids.K: model.num_expertz: unknown key"]),
    (_set("models.momok.model.exid_weight", "zero"),
     ["models.momok: model.exid_weight: expected a number, got 'zero'"]),
    (_set("run_defaults.training.lr", -0.01), ["run_defaults: training.lr: must be positive, got -0.01"]),
    (_set("variants.wo_exid.model.exid_weight", -1), ["variants.wo_exid: model.exid_weight: must be non-negative"]),
    (_set("datasets.toy.models", {"transe": {"model": {"dim": 0}}}),
     ["datasets.toy.models.transe: model.dim: must be at least 1, got 0"]),
    (_set("table2.models", ["transe", "nope"]), ["table2.models: 'nope' is not configured under models:"]),
    (_set("figure3.datasets", ["MKG-Y"]), ["figure3.datasets: 'MKG-Y' is not configured under datasets:"]),
    (_set("table3.variants", ["wo_exid", "wo_exidd"]), ["table3.variants: 'wo_exidd' is not configured"]),
    (_set("models.transx", {}), ["models.transx: model.name: unknown model 'transx'"]),
    (_set("models.mans.model.name", "nope"), ["models.mans: model.name: unknown model 'nope'"]),
    (_set("models.mmrns.model.sampler.pool_size", 0), ["models.mmrns: model.sampler.pool_size: must be at least 1"]),
    (_set("table2.skip", {"toy": ["nope"]}), ["table2.skip.toy: 'nope' is not configured under models:"]),
    (_set("table2.skip", {"MKG-Y": ["mans"]}), ["table2.skip: 'MKG-Y' is not configured under datasets:"]),
    (_set("datasets.toy.raw.toy.options.entities", 5), ["datasets.toy.raw.toy.options: toy option entities=5"]),
])
def test_plan_fails_naming_the_config_key(tmp_path, change, words):
    code, output = plan(tmp_path, toy_with(change))
    assert code != 0, output
    assert "MissingInputException" not in output and "Traceback" not in output, output
    for word in words:
        assert word in output, output


def test_duplicate_keys_in_the_workflow_config_are_an_error(tmp_path):
    text = TOY.read_text(encoding="utf-8") + "\nrun_defaults:\n  training: {epochs: 1}\n"
    line = text.count("\n") - 1  # the repeated key's line (1-based)
    first = 1 + TOY.read_text(encoding="utf-8").splitlines().index("run_defaults:")
    code, output = plan(tmp_path, text)
    assert code != 0, output
    assert f"config.yaml:{line}: duplicate key 'run_defaults' (first at line {first})" in output, output


def test_toy_options_are_typed_so_no_value_reaches_the_shell(tmp_path):
    code, output = plan(tmp_path, toy_with(_set("datasets.toy.raw.toy.options.entities", "200; touch INJECTED")))
    assert code != 0 and "is not of type 'integer'" in output, output
    assert not (tmp_path / "INJECTED").exists()


def test_extra_arguments_reach_the_command_as_quoted_words(tmp_path):
    config = toy_with(_set("datasets.toy.features.text.extra", "--batch-size 8; touch INJECTED $(id)"))
    code, output = plan(tmp_path, config, "features/toy/text.safetensors")
    assert code == 0, output
    assert "--no-progress --batch-size '8;' touch INJECTED '$(id)' >" in output, output
    config = toy_with(_set("datasets.toy.features.text.extra", "--batch-size '8"))
    code, output = plan(tmp_path, config, "features/toy/text.safetensors")
    assert code != 0 and "datasets.toy.features.text.extra: No closing quotation" in output, output


def test_an_injected_extra_is_not_executed(tmp_path):
    """The job runs: its command gets '8;' 'touch' 'INJECTED' as arguments (rejected), nothing else."""
    config = toy_with(_set("datasets.toy.features.text.extra", "--batch-size 8; touch INJECTED"))
    config = write_config(tmp_path, config)
    result = snakemake(tmp_path, "features/toy/text.safetensors", "--cores", "1", config=config, timeout=300)
    assert result.returncode != 0, result.stdout + result.stderr
    assert not (tmp_path / "INJECTED").exists()
    log = (tmp_path / "results/logs/encode_texts/toy.log").read_text(encoding="utf-8")
    assert "--batch-size: invalid" in log and "'8;'" in log, log  # the word "8;" reached argparse as is


def test_a_models_entry_runs_a_registered_model_under_its_own_key(tmp_path):
    """config/toy.yaml's mans and mmrns: keys that are not registered models, whose entries name their base
    scorer in model.name; the run config (rendered for real, a local job with no inputs) keeps the key's
    overrides and the entry's model.name. table2.skip leaves a model's runs on a dataset out of the plan."""
    config = load(TOY)
    assert {"mans", "mmrns"} <= set(config["table2"]["models"])
    targets = [f"results/configs/toy/{key}/full/seed0.yaml" for key in ("mans", "mmrns")]
    result = snakemake(tmp_path, *targets, "--cores", "1", config=TOY, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    mans, mmrns = (load(tmp_path / target) for target in targets)
    assert mans["model"]["name"] == "ikrl" and mans["model"]["sampler"] == config["models"]["mans"]["model"]["sampler"]
    assert mmrns["model"]["name"] == "transe" and mmrns["model"]["sampler"]["name"] == "mmrns"
    assert mmrns["features"]["image"] and mmrns["features"]["text"]  # the sampler's files, not nulled

    code, output = plan(tmp_path, toy_with(_set("table2.skip", {"toy": ["mans"]})), "table2")
    assert code == 0, output
    assert "results/runs/toy/mmrns/full/seed0/metrics.json" in output
    assert "results/runs/toy/mans/" not in output
