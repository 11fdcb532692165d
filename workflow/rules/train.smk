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
    run:
        with open(output[0], "w", encoding="utf-8") as handle:
            handle.write(params.text)


# `momok train` writes metrics.json last (atomically), so a run folder without it is unfinished.
# A run that was interrupted (killed with its job, e.g. a lost node or Ctrl-C; checkpoint/last.pt
# newer than the rendered config) continues with --resume. A run that failed (momok train exited
# with an error: the FAILED marker) or whose config changed starts afresh: its folder is removed.
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
        """
        run={params.run_dir:q}
        if [ -e "$run/checkpoint/last.pt" ] && [ "$run/checkpoint/last.pt" -nt {input.config:q} ] \
            && [ ! -e "$run/FAILED" ]; then
            resume=--resume
        else
            resume=
            rm -rf "$run"
        fi
        momok train --config {input.config:q} --out "$run" $resume \
            --set training.num_threads={threads} > {log:q} 2>&1 \
            || {{ mkdir -p "$run" && touch "$run/FAILED"; exit 1; }}
        """
