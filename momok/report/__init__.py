"""Tables and figures of the paper from run folders (``results/runs/<dataset>/<model>/<variant>/seed<k>/``).

- :mod:`momok.report.runs`: find and load runs, group seeds, aggregate metrics (mean, sample std, n).
- :mod:`momok.report.tables`: Tables 2, 3, 4 (CSV, Markdown, LaTeX), ours beside ``paper.yaml``.
- :mod:`momok.report.figures`: Figures 3, 4, 5 (PNG, PDF).
- ``paper.yaml``: the paper's reported numbers, as data.

``workflow/scripts/make_table.py`` and ``make_figure.py`` are the command-line entry points.
"""
