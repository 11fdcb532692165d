# Regenerates the MoMoK paper's Tables 2-4 and Figures 3-5 from raw data:
#   snakemake --cores 8 all                                   (config/config.yaml: the paper)
#   snakemake --cores 2 all --configfile config/toy.yaml      (the CI smoke run on the toy dataset)
#   snakemake --report results/report.html
# Targets: all, table2, table3, table4, figure3, figure4, figure5, and any single run
# results/runs/{dataset}/{model}/{variant}/seed{seed}/metrics.json. See workflow/rules/common.smk.

from snakemake.utils import min_version, validate

min_version("9.0")


# config/config.yaml unless config files are given with --configfile: those replace it (instead of
# being merged into it, Snakemake's default), so that config/toy.yaml is a complete config of its own.
if not workflow.overwrite_configfiles:

    configfile: "config/config.yaml"



# The config is checked before anything is planned (workflow/rules/checks.smk): repeated keys in its
# files, then the schema, then (after common.smk) the names and run configs of every experiment.
include: "workflow/rules/checks.smk"


check_config_files(workflow.configfiles)
validate(config, "workflow/schemas/config.schema.yaml")


include: "workflow/rules/common.smk"
include: "workflow/rules/common_modalities.smk"


if workflow.is_main_process:
    check_workflow_config()


include: "workflow/rules/data.smk"
include: "workflow/rules/modalities.smk"
include: "workflow/rules/features.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/report.smk"


rule all:
    input:
        all_targets(),
    default_target: True
