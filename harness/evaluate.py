"""Score any embeddings with the harness's metrics (a model trained elsewhere, too).

    python -m harness.evaluate EMBEDDINGS.npy LABELS.npy [--k 1,2,4,8] [--metric ip|l2] [--no-normalize]
    python -m harness.evaluate Q.npy QL.npy --gallery G.npy GL.npy      # query -> gallery (In-Shop style)

Prints one JSON object: Recall@K, MAP@R, R-Precision, NMI and the collapse diagnostics.
Embeddings are L2-normalised first unless --no-normalize (the search is exact faiss, inner product by default).
"""

from __future__ import annotations

import json
import sys

import numpy as np

from harness.cli import ArgumentParser, entry_point
from harness.errors import ConfigError, DataError


def parse_args(argv=None):
    p = ArgumentParser(prog="python -m harness.evaluate", description=__doc__.split("\n")[0])
    p.add_argument("embeddings", help=".npy file, n x d")
    p.add_argument("labels", help=".npy file, n integer labels")
    p.add_argument("--gallery", nargs=2, metavar=("G.npy", "GL.npy"), help="search queries in this gallery instead")
    p.add_argument("--k", default="1,2,4,8", help="Recall@K list, comma-separated (default 1,2,4,8)")
    p.add_argument("--metric", default="ip", choices=["ip", "l2"], help="exact faiss search metric (default ip)")
    p.add_argument("--no-normalize", action="store_true", help="do not L2-normalise the embeddings")
    p.add_argument("--no-nmi", action="store_true", help="skip k-means NMI")
    p.add_argument("--seed", type=int, default=0, help="k-means seed")
    return p.parse_args(argv)


def parse_k(text: str) -> list:
    """``"1,2,4,8"`` -> [1, 2, 4, 8]; each K a positive integer."""
    tokens = [t.strip() for t in str(text).split(",") if t.strip()]
    if not tokens or not all(t.lstrip("+").isdigit() and int(t) >= 1 for t in tokens):
        raise ConfigError(f"--k {text!r}: give positive integers separated by commas, e.g. --k 1,2,4,8")
    return [int(t) for t in tokens]


def load_pair(emb_path: str, lab_path: str, what: str = "query"):
    """Embeddings (float32, n x d, finite) and labels (n) from two .npy files, or one DataError line."""
    emb, lab = load_array(emb_path), load_array(lab_path)
    if emb.ndim != 2 or lab.ndim != 1 or len(emb) != len(lab):
        raise DataError(f"expected an n x d embedding array and n labels ({what}), got {emb.shape} and {lab.shape}")
    if emb.size == 0:
        raise DataError(f"the {what} embeddings {emb_path} are empty ({emb.shape}); give at least one row and column")
    if not (np.issubdtype(emb.dtype, np.integer) or np.issubdtype(emb.dtype, np.floating)):
        raise DataError(f"the {what} embeddings {emb_path} are {emb.dtype}, not numbers; save a float array")
    with np.errstate(over="ignore"):
        emb = emb.astype(np.float32)
    bad = int((~np.isfinite(emb)).any(axis=1).sum())
    if bad:
        raise DataError(
            f"{bad} of {len(emb)} {what} embeddings in {emb_path} hold NaN or inf (or exceed float32); "
            f"fix the model or drop those rows"
        )
    return emb, as_labels(lab, lab_path, what)


def load_array(path: str) -> np.ndarray:
    """One array from a .npy file, or one DataError line (an .npz archive: its arrays named)."""
    try:
        array = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError) as err:
        raise DataError(
            f"cannot read {path} as a .npy array ({' '.join(str(err).split())[:200]}); save it with numpy.save"
        ) from None
    if isinstance(array, np.lib.npyio.NpzFile):
        with array:
            names = ", ".join(array.files[:8]) or "none"
        raise DataError(
            f"{path} is an .npz archive (arrays: {names}); give one .npy file per array, e.g. "
            f"numpy.save('embeddings.npy', numpy.load('{path}')['<name>'])"
        )
    return array


def as_labels(lab: np.ndarray, path: str, what: str) -> np.ndarray:
    if np.issubdtype(lab.dtype, np.integer) or lab.dtype.kind in "bUS":
        return lab
    if np.issubdtype(lab.dtype, np.floating) and np.isfinite(lab).all() and (lab == np.round(lab)).all():
        return lab.astype(np.int64)
    raise DataError(f"the {what} labels {path} are {lab.dtype} with non-integer values; save integer class labels")


def check_inputs(q, ql, g=None, gl=None) -> None:
    """Queries that can be scored: a gallery of the same dimension, and some query with an item to retrieve."""
    if g is not None and g.shape[1] != q.shape[1]:
        raise DataError(
            f"the gallery has {g.shape[1]}-dimensional embeddings but the queries {q.shape[1]}; "
            f"embed both with the same model"
        )
    ref = ql if g is None else gl
    classes, counts = np.unique(ref, return_counts=True)
    if g is None and not (counts > 1).any():
        raise DataError(
            f"every one of the {len(ql)} labels is unique: no query has another item of its class to "
            f"retrieve; give at least 2 items of some class"
        )
    if g is not None and not np.isin(ql, classes).any():
        raise DataError("no query label occurs in the gallery labels: nothing to retrieve; check the label files")
    if len(np.unique(ql)) == 1 and (g is None or len(classes) == 1):
        print(
            "warning: all items are of one class: every retrieval metric is trivially 1 (and NMI 1); "
            "evaluate on several classes",
            file=sys.stderr,
        )
    from harness.evaluation.retrieval import all_tied  # faiss loads with the metrics: bad arguments answer first

    if all_tied(q, g):
        print(
            f"warning: all {len(q) + (0 if g is None else len(g))} embeddings are the same vector (all zero?): every "
            f"distance ties, so the order of the items, not the model, decides each ranking",
            file=sys.stderr,
        )


def measurable(k_list: list, q, g=None) -> list:
    """The Ks a query can be scored at; one warning line names the ones left out (never a trivial 1.0)."""
    from harness.evaluation.retrieval import unmeasurable_k  # faiss loads with the metrics (see above)

    left_out = unmeasurable_k(k_list, len(q), None if g is None else len(g))
    if left_out:
        among = f"the {len(g)} gallery items" if g is not None else f"the {len(q) - 1} other queries"
        print(
            f"warning: recall@{','.join(map(str, left_out))} left out: a query retrieves among {among}; "
            f"give a smaller --k",
            file=sys.stderr,
        )
    return [k for k in k_list if k not in left_out]


def main(argv=None) -> int:
    args = parse_args(argv)
    with entry_point():
        return evaluate(args)


def evaluate(args) -> int:
    # lazy: torch and faiss (~3 s); --help and argument errors stay fast
    from harness.evaluation import evaluate_embeddings
    from harness.evaluation.diagnostics import collapse_diagnostics, normalize_rows

    k_list = parse_k(args.k)
    q, ql = load_pair(args.embeddings, args.labels)
    g, gl = load_pair(*args.gallery, what="gallery") if args.gallery else (None, None)
    check_inputs(q, ql, g, gl)
    k_list = measurable(k_list, q, g)
    if not args.no_normalize:
        q = normalize_rows(q, np.float32)
        g = normalize_rows(g, np.float32) if g is not None else None
    out = evaluate_embeddings(q, ql, g, gl, k_list=k_list, metric=args.metric, with_nmi=not args.no_nmi, seed=args.seed)
    out.update({f"diag/{k}": v for k, v in collapse_diagnostics(q, ql).items()})
    json.dump(out, sys.stdout, indent=2)
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
