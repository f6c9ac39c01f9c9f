"""``make bench``: side-by-side performance of the harness, every figure a ratio against a named alternative.

    python -m harness.bench                       # everything (about 10 minutes on 2 CPU cores)
    python -m harness.bench --quick               # small sizes, few repeats: a smoke run
    python -m harness.bench --only evaluation     # one benchmark (repeatable, or comma-separated)
    python -m harness.bench --full                # also the evaluation at full SOP scale (minutes more)

One module per benchmark, each with ``run(quick, full) -> dict``: evaluation, coding_rate, regularizers,
training_loop, sweep, tables, and pipeline (image-loader throughput) where that module is present. Each
writes ``<results>/bench/<name>.json`` (machine, versions, figures with min / median / max over rounds);
``<results>/bench/README.md`` summarises the latest JSON of every benchmark.
"""
