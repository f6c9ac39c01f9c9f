"""1. The evaluation engine against pytorch-metric-learning's AccuracyCalculator and a bare faiss search.

Synthetic clustered embeddings (unit vectors around random class centres, noise set so that MAP@R is far
from 0 and 1) at CUB scale (5,924 x 512, 100 classes) and at SOP density (about 5.3 images per class:
60,502 x 512 with 11,316 classes at full size; 1/16 and 1/8 of it by default, whose two sizes give the
scaling). Three things are timed on the same embeddings in the same rounds:

* ours: ``harness.evaluation.evaluate_embeddings`` (Recall@1,2,4,8, R-Precision, MAP@R on one faiss
  search, NMI of faiss k-means), and its neighbour part ``retrieval_metrics`` alone;
* PML: ``AccuracyCalculator`` with the same metrics (its precision_at_1 is Recall@1; Recall@2,4,8 are
  added as three custom metrics on its k-NN labels), ``k="max_bin_count"`` as its docs prescribe for
  MAP@R (its default k=None searches every reference item), raised to 8 where R_max < 8 so that its
  Recall@8 sees 8 neighbours; its default faiss k-means;
* the floor: one bare ``faiss.IndexFlatIP`` exact search of every query with the same k (R_max + 1), and
  for the full set that search plus the faiss k-means NMI needs (no engine can skip either).

Both engines run faiss k-means with the same seed (PML's default, 1234), so NMI must agree too.
"""

from __future__ import annotations

import multiprocessing
from concurrent.futures import ProcessPoolExecutor

import faiss
import numpy as np
import torch
from pytorch_metric_learning.utils.accuracy_calculator import AccuracyCalculator, try_getting_not_lone_labels
from pytorch_metric_learning.utils.inference import FaissKNN

from harness.bench.common import MIN_ROUNDS, figure, interleave, peak_memory_mib
from harness.evaluation import evaluate_embeddings, retrieval_metrics
from harness.evaluation.clustering import kmeans_assign
from harness.evaluation.retrieval import maybe_to_gpu, search_neighbours

K_LIST = (1, 2, 4, 8)
PML_KMEANS_SEED = 1234  # faiss.Kmeans' default seed, which PML's FaissKMeans keeps
SOP = {"n": 60502, "classes": 11316}
CUB = {"n": 5924, "classes": 100}
NOISE = 3.0  # per-dimension noise around unit-variance centres: R@1 ~0.9, MAP@R ~0.3 at CUB scale


def clustered_embeddings(n: int, classes: int, d: int = 512, noise: float = NOISE, seed: int = 0):
    """``n`` L2-normalised float32 embeddings in ``classes`` near-equal classes around random centres."""
    rng = np.random.default_rng(seed)
    labels = np.repeat(np.arange(classes), np.diff(np.linspace(0, n, classes + 1).astype(int)))
    centres = rng.standard_normal((classes, d), dtype=np.float32)
    x = centres[labels] + noise * rng.standard_normal((n, d), dtype=np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return np.ascontiguousarray(x), labels


class RecallAtKCalculator(AccuracyCalculator):
    """PML's AccuracyCalculator plus Recall@2,4,8 (a query scores if any of its K nearest shares its class)."""

    def recall_at(self, k, knn_labels, query_labels, not_lone_query_mask, **kwargs):
        knn_labels, query_labels = try_getting_not_lone_labels(knn_labels, query_labels, not_lone_query_mask)
        return (knn_labels[:, :k] == query_labels[:, None]).any(dim=1).double().mean().item()

    def calculate_recall_at_2(self, **kwargs):
        return self.recall_at(2, **kwargs)

    def calculate_recall_at_4(self, **kwargs):
        return self.recall_at(4, **kwargs)

    def calculate_recall_at_8(self, **kwargs):
        return self.recall_at(8, **kwargs)

    def requires_knn(self):
        return super().requires_knn() + ["recall_at_2", "recall_at_4", "recall_at_8"]


PML_NEIGHBOUR = (
    "precision_at_1",
    "recall_at_2",
    "recall_at_4",
    "recall_at_8",
    "r_precision",
    "mean_average_precision_at_r",
)
PML_TO_OURS = {
    "precision_at_1": "recall@1",
    "recall_at_2": "recall@2",
    "recall_at_4": "recall@4",
    "recall_at_8": "recall@8",
    "r_precision": "r_precision",
    "mean_average_precision_at_r": "map@r",
    "NMI": "nmi",
}


def bare_search(x: np.ndarray, k: int) -> None:
    index = maybe_to_gpu(faiss.IndexFlatIP(x.shape[1]))  # on the GPU where the harness would use one
    index.add(x)
    index.search(x, k + 1)  # leave-one-out: the query itself comes back first


def search_k(labels) -> int:
    """Neighbours per query: R_max (what MAP@R and R-Precision need) or the largest K of Recall@K."""
    return max(int(np.bincount(labels).max()) - 1, max(K_LIST))


def engines(x: np.ndarray, y: np.ndarray, k: int) -> dict:
    """The timed candidates on one set of embeddings, each a zero-argument callable returning its metrics."""
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    # k="max_bin_count" (R_max), raised to k where Recall@8 needs more (R_max is 5 at SOP density)
    pml_k = "max_bin_count" if k == int(np.bincount(y).max()) - 1 else k
    pml_nb = RecallAtKCalculator(include=PML_NEIGHBOUR, k=pml_k, device=device)
    pml_all = RecallAtKCalculator(include=PML_NEIGHBOUR + ("NMI",), k=pml_k, device=device)
    return {
        "bare": lambda: bare_search(x, k),
        "floor_full": lambda: (bare_search(x, k), kmeans_assign(x, len(np.unique(y)), seed=PML_KMEANS_SEED)),
        "ours_neighbour": lambda: retrieval_metrics(x, y, k_list=K_LIST),
        "pml_neighbour": lambda: pml_nb.get_accuracy(xt, yt),
        "ours_full": lambda: evaluate_embeddings(x, y, k_list=K_LIST, seed=PML_KMEANS_SEED),
        "pml_full": lambda: pml_all.get_accuracy(xt, yt),
    }


def measure_memory(candidate, n: int, classes: int):
    """Peak memory of one candidate's call, or a list for a tuple of candidates (called one after another)."""
    x, y = clustered_embeddings(n, classes)
    found = engines(x, y, search_k(y))
    if isinstance(candidate, tuple):
        return [peak_memory_mib(found[c]) for c in candidate]
    return peak_memory_mib(found[candidate])


def peak_memory_in_fresh_process(candidate, n: int, classes: int):
    """Peak memory of one call in a new interpreter (in this one, freed memory kept by the allocator hides it)."""
    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
        return pool.submit(measure_memory, candidate, n, classes).result()


def compare_values(ours: dict, pml: dict, x=None, k: int | None = None) -> dict:
    """Every metric equal to 1e-6; where one is not, whether tied neighbours explain it (``x``, ``k`` given): two
    items at exactly the same similarity to a query may come back in either order, and so may change its AP."""
    diffs = {PML_TO_OURS[k_]: abs(ours[PML_TO_OURS[k_]] - v) for k_, v in pml.items()}
    equal = all(v <= 1e-6 for v in diffs.values())
    out = {"max_abs_diff": diffs, "equal_1e-6": equal}
    if not equal and x is not None:
        out["tied_queries"] = tied_queries(x, k)
        out["equal_1e-6"] = out["tied_queries"] is not None
    return out


def tied_queries(x: np.ndarray, k: int) -> int | None:
    """How many queries get their neighbours in another order from the harness and from PML's FaissKNN, if every such
    difference is a reordering among items of equal similarity (to float32's 1e-6); None if one is not."""
    ours = search_neighbours(x, k)
    _, theirs = FaissKNN()(torch.from_numpy(x), k + 1, torch.from_numpy(x), True)
    tied = 0
    for q, (a, b) in enumerate(zip(ours, theirs.numpy())):
        b = [j for j in b if j != q][:k]
        if list(a) != b:
            if not np.allclose(x[a] @ x[q], x[b] @ x[q], rtol=0, atol=1e-6):  # float32 inner products, any order
                return None
            tied += 1
    return tied


def bench_size(name: str, n: int, classes: int, repeats: int, quick: bool = False) -> tuple:
    x, y = clustered_embeddings(n, classes)
    k = search_k(y)
    candidates = engines(x, y, k)
    t = interleave(candidates, repeats)
    ours, pml = candidates["ours_full"](), candidates["pml_full"]()
    label = f"{name} ({n:,} x 512, {classes:,} classes)"
    kinds = {"ours_full": "harness", "pml_full": "PML", "bare": "bare faiss search"}
    figures = [
        figure(
            f"{label}: neighbour metrics vs one bare faiss search",
            "harness retrieval_metrics",
            f"faiss IndexFlatIP search, k={k + 1}",
            t["ours_neighbour"],
            t["bare"],
            goal="ratio<=1.25",
            load=t.load,
            floor=True,
        ),
        figure(
            f"{label}: neighbour metrics vs PML",
            "harness retrieval_metrics",
            "PML AccuracyCalculator",
            t["ours_neighbour"],
            t["pml_neighbour"],
            show="speedup",
            load=t.load,
        ),
        figure(
            f"{label}: full set incl. NMI vs PML",
            "harness evaluate_embeddings",
            "PML AccuracyCalculator + NMI",
            t["ours_full"],
            t["pml_full"],
            goal="speedup>=1.5",
            load=t.load,
        ),
        figure(
            f"{label}: PML neighbour metrics vs bare faiss search",
            "PML AccuracyCalculator",
            f"faiss IndexFlatIP search, k={k + 1}",
            t["pml_neighbour"],
            t["bare"],
            load=t.load,
            floor=True,
        ),
        figure(
            f"{label}: full set incl. NMI vs its floor",
            "harness evaluate_embeddings",
            "bare faiss search + faiss k-means (the same seed)",
            t["ours_full"],
            t["floor_full"],
            load=t.load,
            floor=True,
        ),
    ]
    if quick:  # a smoke run: the three in one fresh process (an allocator's cache may hide a later one's peak)
        memory = dict(zip(kinds.values(), peak_memory_in_fresh_process(tuple(kinds), n, classes)))
    else:
        memory = {kinds[c]: peak_memory_in_fresh_process(c, n, classes) for c in kinds}
    check = {
        "size": label,
        **compare_values(ours, pml, x, k),
        "values": {m: round(v, 6) for m, v in ours.items() if m != "num_queries"},
    }
    return figures, check, memory


def scaling_notes(medians: dict) -> list:
    """Log-log slope of time against n between the two largest SOP-density sizes, and the time it predicts
    at full SOP scale (where that size was not run)."""
    if len(medians) < 2:
        return []
    (n1, t1), (n2, t2) = sorted(medians.items())[-2:]
    parts = []
    for who in t2:
        slope = np.log(t2[who] / t1[who]) / np.log(n2 / n1)
        at_sop = t2[who] * (SOP["n"] / n2) ** slope
        parts.append(f"{who} n^{slope:.2f}" + (f" (~{at_sop:.0f} s at {SOP['n']:,})" if n2 < SOP["n"] else ""))
    return [f"scaling at SOP density ({n1:,} -> {n2:,}), full set: " + ", ".join(parts)]


def run(quick: bool = False, full: bool = False) -> dict:
    """CUB scale, then SOP density at 1/16 and 1/8 of its size (1/4, 1/2 and the full 60,502 with ``full``: each
    of their rounds takes minutes on one core)."""
    if quick:  # a smoke run: one small size
        sizes = [("CUB/4", CUB["n"] // 4, CUB["classes"] // 4, MIN_ROUNDS)]
    else:
        sizes = [("CUB", CUB["n"], CUB["classes"], MIN_ROUNDS)]
        for f in [0.0625, 0.125] + ([0.25, 0.5, 1.0] if full else []):
            n, classes = int(round(SOP["n"] * f)), int(round(SOP["classes"] * f))
            sizes.append((f"SOP{'' if f == 1.0 else f' x{f:g}'}", n, classes, MIN_ROUNDS))
    figures, checks, memory = [], [], {}
    medians = {}
    for name, n, classes, repeats in sizes:
        f, c, m = bench_size(name, n, classes, repeats, quick)
        figures += f
        checks.append(c)
        memory[c["size"]] = m
        if name.startswith("SOP"):
            medians[n] = {
                "harness": f[2]["subject_s"]["median"],
                "PML": f[2]["alternative_s"]["median"],
                "bare faiss search": f[0]["alternative_s"]["median"],
            }
    notes = scaling_notes(medians)
    notes += [
        f"equal values (every metric to 1e-6, NMI included): "
        f"{'yes' if all(c['equal_1e-6'] for c in checks) else 'NO'}; largest difference "
        f"{max(max(c['max_abs_diff'].values()) for c in checks):.1e}"
        + "".join(
            f"; {c['size']}: {c['tied_queries']} quer{'y' if c['tied_queries'] == 1 else 'ies'} with tied neighbours "
            f"returned in another order (the only differences)"
            for c in checks
            if c.get("tied_queries")
        )
    ]
    notes += [
        f"peak memory above the embeddings, {size}: "
        + ", ".join(f"{who} {next(iter(m.values())):.0f} MiB" for who, m in mem.items())
        for size, mem in memory.items()
    ]
    return {
        "figures": figures,
        "checks": checks,
        "memory": memory,
        "notes": notes,
        "params": {"d": 512, "noise": NOISE, "k_list": list(K_LIST), "faiss_threads": faiss.omp_get_max_threads()},
        "ok": all(c["equal_1e-6"] for c in checks),
    }
