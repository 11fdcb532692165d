# Tables and figures of the paper, each a target of its own (snakemake table2, ...). The scripts
# (momok/report) get the metrics.json of every run the item is made of (common.smk:
# experiment_metrics); dataset, model, variant and seed come from each run's folder path.


for _table in TABLES:

    rule:
        name:
            _table
        input:
            runs=experiment_metrics(_table),
        output:
            csv=report(
                f"results/tables/{_table}.csv",
                caption=f"../report/{_table}.rst",
                category="Tables",
                labels={"table": _table, "format": "csv"},
            ),
            md=f"results/tables/{_table}.md",
            tex=f"results/tables/{_table}.tex",
        params:
            table=_table,
            script=os.path.join(workflow.basedir, "workflow", "scripts", "make_table.py"),
            prefix=lambda wildcards, output: os.path.splitext(output.csv)[0],
        log:
            f"results/logs/tables/{_table}.log",
        benchmark:
            f"results/benchmarks/tables/{_table}.tsv"
        threads: 1
        resources:
            mem_mb=2000,
            runtime=10,
        conda:
            "../../environment.yml"
        shell:
            "python {params.script:q} --table {params.table} --runs {input.runs:q}"
            " --out-prefix {params.prefix:q} > {log:q} 2>&1"


for _figure in FIGURES:

    rule:
        name:
            _figure
        input:
            runs=experiment_metrics(_figure),
        output:
            png=report(
                f"results/figures/{_figure}.png",
                caption=f"../report/{_figure}.rst",
                category="Figures",
                labels={"figure": _figure},
            ),
            pdf=f"results/figures/{_figure}.pdf",
        params:
            figure=_figure,
            script=os.path.join(workflow.basedir, "workflow", "scripts", "make_figure.py"),
            prefix=lambda wildcards, output: os.path.splitext(output.png)[0],
        log:
            f"results/logs/figures/{_figure}.log",
        benchmark:
            f"results/benchmarks/figures/{_figure}.tsv"
        threads: 1
        resources:
            mem_mb=2000,
            runtime=10,
        conda:
            "../../environment.yml"
        shell:
            "python {params.script:q} --figure {params.figure} --runs {input.runs:q}"
            " --out-prefix {params.prefix:q} > {log:q} 2>&1"
