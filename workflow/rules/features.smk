# Feature files, one per dataset and modality (format: momok/features/store.py), from the source
# configured in datasets.<name>.features.<modality>: an encoder over the raw images/texts, the
# authors' bundle ("official"), or none ("absent"). Noise variants for Figure 3 are derived files.


rule encode_images:
    input:
        raw=lambda wildcards: raw_files(wildcards.dataset),
        modalities=modality_files,
    output:
        "features/{dataset}/image.safetensors",
    wildcard_constraints:
        dataset=one_of(datasets_with_source("image", "encoder")),
    params:
        dataset=lambda wildcards, input: os.path.dirname(input.raw[0]),
        encoder=lambda wildcards: feature_spec_of(wildcards.dataset, "image")["encoder"],
        weights=lambda wildcards: resolve_resource(feature_spec_of(wildcards.dataset, "image").get("weights") or "default"),
        extra=lambda wildcards: extra_arguments(wildcards.dataset, "image"),
    log:
        "results/logs/encode_images/{dataset}.log",
    benchmark:
        "results/benchmarks/encode_images/{dataset}.tsv"
    threads: config["resources"]["features"]["threads"]
    resources:
        mem_mb=config["resources"]["features"]["mem_mb"],
        runtime=config["resources"]["features"]["runtime"],
        gpu=config["resources"]["features"]["gpu"],
    conda:
        "../../environment.yml"
    shell:
        "OMP_NUM_THREADS={threads} momok features image --dataset {params.dataset:q} --out {output:q}"
        " --encoder {params.encoder:q} --weights {params.weights:q} --no-progress {params.extra}"
        " > {log:q} 2>&1"


rule encode_texts:
    input:
        raw=lambda wildcards: raw_files(wildcards.dataset),
        modalities=modality_files,
    output:
        "features/{dataset}/text.safetensors",
    wildcard_constraints:
        dataset=one_of(datasets_with_source("text", "encoder")),
    params:
        dataset=lambda wildcards, input: os.path.dirname(input.raw[0]),
        model=lambda wildcards: resolve_resource(feature_spec_of(wildcards.dataset, "text")["model"]),
        pooling=lambda wildcards: feature_spec_of(wildcards.dataset, "text").get("pooling", "mean"),
        extra=lambda wildcards: extra_arguments(wildcards.dataset, "text"),
    log:
        "results/logs/encode_texts/{dataset}.log",
    benchmark:
        "results/benchmarks/encode_texts/{dataset}.tsv"
    threads: config["resources"]["features"]["threads"]
    resources:
        mem_mb=config["resources"]["features"]["mem_mb"],
        runtime=config["resources"]["features"]["runtime"],
        gpu=config["resources"]["features"]["gpu"],
    conda:
        "../../environment.yml"
    shell:
        "OMP_NUM_THREADS={threads} momok features text --dataset {params.dataset:q} --out {output:q}"
        " --model {params.model:q} --pooling {params.pooling:q} --no-progress {params.extra}"
        " > {log:q} 2>&1"


# One import rule per modality, each owning the datasets whose source for it is "official".
for _modality in MODALITIES:

    rule:
        name:
            f"import_official_{_modality}"
        input:
            raw=lambda wildcards: raw_files(wildcards.dataset),
            bundle=official_bundle_of(_modality),
        output:
            f"features/{{dataset}}/{_modality}.safetensors",
        wildcard_constraints:
            dataset=one_of(datasets_with_source(_modality, "official")),
        params:
            dataset=lambda wildcards, input: os.path.dirname(input.raw[0]),
            modality=_modality,
            extra=official_extra_of(_modality),
        log:
            f"results/logs/import_official_{_modality}/{{dataset}}.log",
        benchmark:
            f"results/benchmarks/import_official_{_modality}/{{dataset}}.tsv"
        threads: 1
        resources:
            mem_mb=16000,
            runtime=30,
        conda:
            "../../environment.yml"
        shell:
            "momok features import --from {input.bundle:q} --modality {params.modality}"
            " --dataset {params.dataset:q} --out {output:q} {params.extra} > {log:q} 2>&1"


# The authors' bundles sit on a cloud drive that no script can download from: a missing one is
# "made" by this job, which stops the workflow with what to fetch and where to put it. A dry run
# plans it like any other job; once the file is in place the job never runs.
rule official_bundle:
    output:
        "{bundle}",
    wildcard_constraints:
        bundle=one_of([spec["path"] for _, _, spec in official_bundles()]),
    params:
        instructions=bundle_instructions,
    log:
        "results/logs/official_bundle/{bundle}.log",
    localrule: True
    conda:
        "../../environment.yml"
    shell:
        "echo {params.instructions:q} | tee {log:q} >&2; exit 1"


rule add_noise:
    input:
        clean=clean_feature,
    output:
        "features/{dataset}/noise/{ratio}/{modality}.safetensors",
    params:
        seed=config["figure3"]["noise_seed"],
        scale=config["figure3"]["scale"],
    log:
        "results/logs/add_noise/{dataset}/{ratio}/{modality}.log",
    benchmark:
        "results/benchmarks/add_noise/{dataset}/{ratio}/{modality}.tsv"
    threads: 1
    resources:
        mem_mb=4000,
        runtime=10,
    conda:
        "../../environment.yml"
    shell:
        "momok features noise --in {input.clean:q} --out {output:q} --ratio {wildcards.ratio}"
        " --seed {params.seed:q} --scale {params.scale:q} > {log:q} 2>&1"
