# Raw data: the public benchmarks (momok fetch, sha256-checked; from config["data_mirror"] when set)
# and the synthetic toy dataset (momok toy).


rule fetch_dataset:
    output:
        multiext("data/raw/{dataset}/", *RAW_FILES),
    wildcard_constraints:
        dataset=one_of(datasets_with_raw("fetch")),
    params:
        name=lambda wildcards: dataset_config(wildcards.dataset)["raw"]["fetch"],
        mirror=mirror_argument,
        dest=lambda wildcards, output: os.path.dirname(output[0]),
    log:
        "results/logs/fetch_dataset/{dataset}.log",
    benchmark:
        "results/benchmarks/fetch_dataset/{dataset}.tsv"
    threads: 1
    resources:
        mem_mb=1000,
        runtime=30,
    conda:
        "../../environment.yml"
    shell:
        "momok fetch {params.name:q} --dest {params.dest:q} {params.mirror} > {log:q} 2>&1"


rule make_toy:
    output:
        multiext("data/raw/{dataset}/", *RAW_FILES),
    wildcard_constraints:
        dataset=one_of(datasets_with_raw("toy")),
    params:
        options=toy_arguments,
        dest=lambda wildcards, output: os.path.dirname(output[0]),
    log:
        "results/logs/make_toy/{dataset}.log",
    benchmark:
        "results/benchmarks/make_toy/{dataset}.tsv"
    threads: 1
    resources:
        mem_mb=1000,
        runtime=10,
    conda:
        "../../environment.yml"
    shell:
        "momok toy --out {params.dest:q} {params.options} > {log:q} 2>&1"
