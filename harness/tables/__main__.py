"""``python -m harness.tables``: the command line (see the package docstring)."""

from __future__ import annotations

import argparse
import logging
import os

import harness.tables
from harness.cli import ArgumentParser, entry_point
from harness.tables.make import make_tables


def parse_args(argv=None) -> argparse.Namespace:
    p = ArgumentParser(
        prog="python -m harness.tables",
        description=harness.tables.__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "roots",
        nargs="*",
        default=[os.environ.get("HARNESS_RESULTS", "results")],
        help="results folders (or any folder of run directories); default: results/",
    )
    p.add_argument("--sweep", help="only the runs launched with sweep=NAME (python run.py -m sweep=NAME); A,B: both")
    p.add_argument(
        "--where",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="only runs whose column (or config key) equals VALUE; repeatable",
    )
    p.add_argument("--rows", nargs="+", default=["loss", "regularizer"], help="row columns (default: loss regularizer)")
    p.add_argument("--cols", nargs="*", default=["dataset"], help="column groups (default: dataset)")
    p.add_argument(
        "--metrics",
        nargs="+",
        help="metrics (default: every recall@K, map@r, nmi); "
        "names are of --split, or full columns like diag/test/coding_rate",
    )
    p.add_argument("--split", default="test", choices=["test", "val", "init/test", "raw/test"])
    p.add_argument("--seeds", type=int, help="seeds each group should have (default: the most any group has)")
    p.add_argument("--digits", type=int, default=1, help="decimals of percent metrics (default 1)")
    p.add_argument("--out", help="output folder (default: <root>/tables/<sweep or all>)")
    p.add_argument(
        "--x",
        dest="xs",
        nargs="+",
        default=[],
        help="numeric knobs to plot metrics against (default: the numeric knobs found varying)",
    )
    p.add_argument("--no-plots", dest="plots", action="store_false")
    p.add_argument("--no-cache", dest="cache", action="store_false", help="re-read every record.json")
    p.add_argument("--max-curves", type=int, default=24, help="training-curve plots at most (one per group)")
    return p.parse_args(argv)


def main(argv=None) -> None:
    args = parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    with entry_point(disk_fix="give --out a folder on a disk you can write"):
        result = make_tables(
            args.roots,
            out=args.out,
            sweep=args.sweep,
            where=args.where,
            rows=args.rows,
            cols=args.cols,
            metrics=args.metrics,
            split=args.split,
            seeds=args.seeds,
            digits=args.digits,
            plots=args.plots,
            xs=args.xs,
            cache=args.cache,
            max_curves=args.max_curves,
        )
    texts = result["texts"]
    for name in ("table.md", "references.md", "delta.md", "paper.md", "problems.md"):
        if name in texts:
            print(texts[name])
    print(result["line"])
    if result["problems_line"]:
        print(result["problems_line"])
    print(f"tables, CSV, parquet and plots: {result['out']}/")


if __name__ == "__main__":
    main()
