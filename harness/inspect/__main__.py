"""python -m harness.inspect RUN_DIR [RUN_B] [--baseline] [--only ...] [--map umap|pca] ...

One run: its pictures into RUN_DIR/pictures/. Two runs (RUN_A RUN_B), or one run and ``--baseline`` (its
finished sibling with regularizer=none): the comparison pictures, one colour per run, into
RUN_B/pictures/compare_<RUN_A>/ (or ``--out``).
"""

from __future__ import annotations

import logging
import sys

from harness.cli import ArgumentParser, entry_point, fail
from harness.inspect import PICTURES, make_pictures
from harness.inspect.compare import compare_runs, find_baseline

# argument: (smallest value, an example of a good one)
AT_LEAST = {"k": (1, 8), "worst": (0, 4), "random": (0, 4), "max_points": (2, 3000)}


def parse_args(argv=None):
    p = ArgumentParser(
        prog="python -m harness.inspect",
        description="Pictures of a finished run, or of two runs side by side, written as PNG files.",
    )
    p.add_argument(
        "run_dirs",
        nargs="+",
        metavar="RUN_DIR",
        help="a run directory (results/runs/<dataset>/<run>); two: run A (e.g. the baseline) and run B, compared",
    )
    p.add_argument(
        "--baseline",
        action="store_true",
        help="compare RUN_DIR with its finished baseline "
        "(the run beside it with regularizer=none, otherwise the same config and seed)",
    )
    p.add_argument("--only", default=",".join(PICTURES), help=f"comma-separated subset of {','.join(PICTURES)}")
    p.add_argument("--map", default="umap", choices=["umap", "pca"], help="embedding map projection (default umap)")
    p.add_argument("--k", type=int, default=8, help="results per query in the retrieval grid (default 8)")
    p.add_argument(
        "--worst",
        type=int,
        help="rows of worst queries by AP@R (default 4); compared: the queries where the two runs differ most "
        "(default 3)",
    )
    p.add_argument("--random", type=int, help="rows of random queries (default 4; compared: 2)")
    p.add_argument("--max-points", type=int, default=3000, help="most test embeddings in the map (default 3000)")
    p.add_argument("--out", help="output folder (default RUN_DIR/pictures)")
    p.add_argument("--device", default="cpu", help="torch device for embedding (default cpu)")
    return p.parse_args(argv)


def check(args) -> str | None:
    """The first bad argument as one line naming the fix, or None."""
    for name, (low, example) in AT_LEAST.items():
        value = getattr(args, name)
        if value is not None and value < low:
            flag = "--" + name.replace("_", "-")
            return f"{flag} {value} must be an integer >= {low}, e.g. {flag} {example}"
    unknown = [p for p in args.only.split(",") if p and p not in PICTURES]
    if unknown:
        return f"--only {unknown[0]!r} is not a picture; choose from {','.join(PICTURES)}"
    if len(args.run_dirs) > 2:
        return f"at most two run directories (run A and run B); got {len(args.run_dirs)}"
    if args.baseline and len(args.run_dirs) != 1:
        return "--baseline compares ONE run with its baseline: python -m harness.inspect RUN_DIR --baseline"
    return None


def main(argv=None) -> int:
    args = parse_args(argv)
    problem = check(args)
    if problem:
        fail(problem)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    logging.getLogger("faiss.loader").setLevel(logging.WARNING)
    only = [p for p in args.only.split(",") if p]
    out = args.out or f"{args.run_dirs[-1]}/pictures"
    with entry_point(disk_fix="give --out a folder on a disk you can write", where=out):
        if len(args.run_dirs) == 2 or args.baseline:
            a, b = args.run_dirs if len(args.run_dirs) == 2 else (find_baseline(args.run_dirs[0]), args.run_dirs[0])
            paths = compare_runs(
                a,
                b,
                out=args.out,
                device=args.device,
                only=only,
                map_method=args.map,
                k=args.k,
                n_differ=3 if args.worst is None else args.worst,  # a query's two rows take twice the room
                n_random=2 if args.random is None else args.random,
                max_points=args.max_points,
            )
        else:
            paths = make_pictures(
                args.run_dirs[0],
                out=args.out,
                device=args.device,
                only=only,
                map_method=args.map,
                k=args.k,
                n_worst=4 if args.worst is None else args.worst,
                n_random=4 if args.random is None else args.random,
                max_points=args.max_points,
            )
    for path in paths:
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
