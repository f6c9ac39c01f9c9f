"""Run records -> one pandas DataFrame -> paper tables (Markdown, LaTeX, CSV), the raw frame (parquet), plots.

    python -m harness.tables                                   # every run under results/
    python -m harness.tables --sweep digits_ablation --seeds 3 # the runs launched with sweep=digits_ablation
    python -m harness.tables results/runs/cub --rows loss regularizer --cols dataset --metrics recall@1 map@r
    python -m harness.tables --where loss=proxy_anchor --rows regularizer --x regularizer.antico_pair.weight

It reads each run directory's ``record.json`` and nothing else (JSON: nothing is unpickled, no log is
parsed); a run directory without one (running, or killed) is known by its name and ``overrides.txt``.
One row per run: status, dataset, backbone, loss, regularizer, seed, every config value flattened
(``config/<dotted key>``), validation and test metrics, diagnostics, wall and training time, ``path``.

Runs that differ only in the seed form a group. A table cell is the mean ± std (over seeds, ddof=1) of a
group's finished runs; a group with fewer seeds than expected (``--seeds``, by default the most any
group has) is marked † and cannot be bold. Config values that differ inside a row (a swept knob the
command did not name) become row columns of their own, so a cell never averages different configs.
Failed, pruned and running runs are listed apart with the path of their error and never enter a mean.

Written into ``--out`` (default ``<root>/tables/<sweep or "all">/``):

    table.md  table.tex  table.csv   rows x (dataset x metric), best per column in bold; the CSV is long
                                     and numeric (mean, std, n per group and metric)
    references.md  references.tex    the bars to clear on the same split: raw inputs, the untrained network
    delta.md  delta.tex              each regularizer minus ``none`` for the same base loss (and the rest)
    paper.md  paper.tex              the paper view, for the runs of paper presets (``published.source``):
                                     published | authors' protocol ‡ | clean protocol (harness/tables/paper.py)
    problems.md                      records that cannot be read (binary, truncated, a stub, wrong types, a
                                     finished run without metrics: path and reason, in no table); failed /
                                     pruned / running runs with their error file or directory
    runs.parquet                     the raw DataFrame, one row per run (``pd.read_parquet``)
    plots/*.png                      metric vs. each swept numeric knob (seed bands); curves.png: every group

Published numbers: a config (an experiment preset) may carry ``published: {recall@1: 69.5, source: "...",
table: 2, arxiv: "..."}`` (percent as printed in the paper, test split); the paper view shows them beside
the reproduced means. Protocols (conf/protocol/): each run's is a column, ``protocol``, and a row key of every view
as soon as the runs hold two (no mean pools them, no Δ pairs across them); the authors' protocol (the epoch chosen on
test) is marked ‡; the Reality Check's fold runs are read back as one model, separated and concatenated
(harness/tables/protocols.py).

One bad record never stops the tables: it is listed in ``problems.md`` with the reason, the rest is written,
and one console line says how many problems there are and where.

Loading is cached in ``<root>/.tables_index.parquet``, keyed by each record's modification time and size,
so re-tabling 10,000 runs re-reads only the records that changed.

The package, one concern a module: ``load`` (records -> DataFrame, the index), ``select`` (which runs),
``aggregate`` (groups, mean ± std over seeds), ``build`` (the main, Δ and reference views), ``paper``
(published vs. reproduced), ``render`` (Markdown, LaTeX, CSV), ``problems`` (what enters no mean),
``plots``, ``make`` (the pipeline, writing the folder) and ``__main__`` (the command line).
"""

from harness.tables.load import INDEX_FILE, load_runs
from harness.tables.make import make_tables
from harness.tables.select import select_runs

__all__ = ["INDEX_FILE", "load_runs", "make_tables", "select_runs"]
