# The entities' raw images and descriptions, from the benchmarks' public primary sources
# (momok fetch-modalities: Wikidata, English Wikipedia titles, DBpedia, Wikimedia Commons), for the
# datasets whose raw section has `modalities:`. They feed the encode_images/encode_texts rules
# (helpers: common_modalities.smk).


rule fetch_modalities:
    input:
        entities="data/raw/{dataset}/entity2id.txt",
    output:
        descriptions="data/raw/{dataset}/descriptions.tsv",
        manifest="data/raw/{dataset}/modalities/manifest.tsv",
        coverage="data/raw/{dataset}/modalities/coverage.json",
    wildcard_constraints:
        dataset=one_of(datasets_with_modalities()),
    params:
        name=lambda wildcards: dataset_config(wildcards.dataset)["raw"]["fetch"],
        dest=lambda wildcards, input: os.path.dirname(input.entities),
        options=modalities_arguments,
    log:
        "results/logs/fetch_modalities/{dataset}.log",
    benchmark:
        "results/benchmarks/fetch_modalities/{dataset}.tsv"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=2880,
    conda:
        "../../environment.yml"
    shell:
        # Images go to data/raw/{dataset}/images/ (not an output, so that Snakemake never deletes
        # them before a rerun; the command's cache under modalities/ makes a rerun resume).
        "momok fetch-modalities {params.name:q} --dest {params.dest:q} {params.options} > {log:q} 2>&1"
