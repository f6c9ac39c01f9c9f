"""python -m harness.inspect RUN_DIR [--only retrieval_grid,embedding_map,spectrum] [--map umap|pca] ..."""

from __future__ import annotations

import logging
import sys

from harness.cli import ArgumentParser, entry_point
from harness.inspect import PICTURES, make_pictures


def parse_args(argv=None):
    p = ArgumentParser(
        prog="python -m harness.inspect",
        description="Pictures of a finished run, written into RUN_DIR/pictures/ (PNG).",
    )
    p.add_argument("run_dir", help="a run directory: results/runs/<dataset>/<run>")
    p.add_argument("--only", default=",".join(PICTURES), help=f"comma-separated subset of {','.join(PICTURES)}")
    p.add_argument("--map", default="umap", choices=["umap", "pca"], help="embedding map projection (default umap)")
    p.add_argument("--k", type=int, default=8, help="results per query in the retrieval grid (default 8)")
    p.add_argument("--worst", type=int, default=4, help="rows of worst queries by AP@R (default 4)")
    p.add_argument("--random", type=int, default=4, help="rows of random queries (default 4)")
    p.add_argument("--max-points", type=int, default=3000, help="most test embeddings in the map (default 3000)")
    p.add_argument("--out", help="output folder (default RUN_DIR/pictures)")
    p.add_argument("--device", default="cpu", help="torch device for embedding (default cpu)")
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    logging.getLogger("faiss.loader").setLevel(logging.WARNING)
    with entry_point():
        paths = make_pictures(
            args.run_dir,
            out=args.out,
            device=args.device,
            only=[p for p in args.only.split(",") if p],
            map_method=args.map,
            k=args.k,
            n_worst=args.worst,
            n_random=args.random,
            max_points=args.max_points,
        )
    for path in paths:
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
