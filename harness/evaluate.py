"""Score any embeddings with the harness's metrics (a model trained elsewhere, too).

    python -m harness.evaluate EMBEDDINGS.npy LABELS.npy [--k 1,2,4,8] [--metric ip|l2] [--no-normalize]
    python -m harness.evaluate Q.npy QL.npy --gallery G.npy GL.npy      # query -> gallery (In-Shop style)

Prints one JSON object: Recall@K, MAP@R, R-Precision, NMI and the collapse diagnostics.
Embeddings are L2-normalised first unless --no-normalize (the search is exact faiss, inner product by default).
"""

from __future__ import annotations

import argparse
import json
import sys

import numpy as np


def parse_args(argv=None):
    p = argparse.ArgumentParser(prog="python -m harness.evaluate", description=__doc__.split("\n")[0])
    p.add_argument("embeddings", help=".npy file, n x d")
    p.add_argument("labels", help=".npy file, n integer labels")
    p.add_argument("--gallery", nargs=2, metavar=("G.npy", "GL.npy"), help="search queries in this gallery instead")
    p.add_argument("--k", default="1,2,4,8", help="Recall@K list, comma-separated (default 1,2,4,8)")
    p.add_argument("--metric", default="ip", choices=["ip", "l2"], help="exact faiss search metric (default ip)")
    p.add_argument("--no-normalize", action="store_true", help="do not L2-normalise the embeddings")
    p.add_argument("--no-nmi", action="store_true", help="skip k-means NMI")
    p.add_argument("--seed", type=int, default=0, help="k-means seed")
    return p.parse_args(argv)


def load_pair(emb_path: str, lab_path: str):
    try:
        emb, lab = np.load(emb_path, allow_pickle=False), np.load(lab_path, allow_pickle=False)
    except (OSError, ValueError) as err:
        raise SystemExit(f"error: cannot read {emb_path} / {lab_path} as .npy arrays ({err}); save them with numpy.save")
    if emb.ndim != 2 or lab.ndim != 1 or len(emb) != len(lab):
        raise SystemExit(f"error: expected an n x d embedding array and n labels, got {emb.shape} and {lab.shape}")
    return emb.astype(np.float32), lab


def main(argv=None) -> int:
    from harness.evaluation import evaluate_embeddings
    from harness.evaluation.diagnostics import collapse_diagnostics, normalize_rows

    args = parse_args(argv)
    q, ql = load_pair(args.embeddings, args.labels)
    g, gl = load_pair(*args.gallery) if args.gallery else (None, None)
    if not args.no_normalize:
        q = normalize_rows(q, np.float32)
        g = normalize_rows(g, np.float32) if g is not None else None
    k_list = [int(k) for k in args.k.split(",") if k]
    out = evaluate_embeddings(q, ql, g, gl, k_list=k_list, metric=args.metric, with_nmi=not args.no_nmi, seed=args.seed)
    out.update({f"diag/{k}": v for k, v in collapse_diagnostics(q, ql).items()})
    json.dump(out, sys.stdout, indent=2)
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
