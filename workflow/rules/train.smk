# One training run per {dataset}/{model}/{variant}/seed{seed}. The run config is rendered from
# config/config.yaml (common.smk: run_config) into results/configs/; the YAML text is a param, so a
# changed entry reruns exactly the runs it reaches.

rule run_config:
    output:
        "results/configs/{dataset}/{model}/{variant}/seed{seed}.yaml",
    params:
        text=run_config_text,
    log:
        "results/logs/run_config/{dataset}/{model}/{variant}/seed{seed}.log",
    localrule: True
    conda:
        "../../environment.yml"
    # a shell job, not run:, which Snakemake runs in a new Snakemake process that parses the whole
    # workflow again (about 10 s a job, against 0.1 s here)
    shell:
        "python -m momok.atomic {output:q} {params.text:q} > {log:q} 2>&1"


rule train:
    input:
        unpack(train_inputs),
    output:
        "results/runs/{dataset}/{model}/{variant}/seed{seed}/metrics.json",
    params:
        run_dir=lambda wildcards, output: os.path.dirname(output[0]),
    log:
        "results/logs/train/{dataset}/{model}/{variant}/seed{seed}.log",
    benchmark:
        "results/benchmarks/train/{dataset}/{model}/{variant}/seed{seed}.tsv"
    threads: config["resources"]["train"]["threads"]
    resources:
        mem_mb=config["resources"]["train"]["mem_mb"],
        runtime=config["resources"]["train"]["runtime"],
        gpu=config["resources"]["train"]["gpu"],
    conda:
        "../../environment.yml"
    shell:
        "momok train --config {input.config:q} --out {params.run_dir:q} --resume --restart-stale"
        " --set training.num_threads={threads} > {log:q} 2>&1"
