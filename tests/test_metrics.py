"""Retrieval metrics equal pytorch-metric-learning's AccuracyCalculator; NMI equals scikit-learn's."""

import json
import subprocess
import sys

import numpy as np
import pytest
import torch
from conftest import REPO
from pytorch_metric_learning.utils.accuracy_calculator import AccuracyCalculator
from sklearn.metrics import normalized_mutual_info_score

from harness.evaluation import evaluate_embeddings, retrieval_metrics
from harness.evaluation.clustering import kmeans_assign, nmi


def clustered(n_classes=12, per_class=(3, 15), d=16, noise=0.9, seed=0):
    rng = np.random.default_rng(seed)
    counts = rng.integers(*per_class, size=n_classes)
    centres = rng.normal(size=(n_classes, d))
    labels = np.repeat(np.arange(n_classes), counts)
    x = centres[labels] + noise * rng.normal(size=(len(labels), d))
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return x.astype(np.float32), labels


def pml(query, ql, ref=None, rl=None):
    calc = AccuracyCalculator(include=("precision_at_1", "r_precision", "mean_average_precision_at_r"))
    if ref is None:
        return calc.get_accuracy(torch.tensor(query), torch.tensor(ql))
    return calc.get_accuracy(torch.tensor(query), torch.tensor(ql), torch.tensor(ref), torch.tensor(rl), False)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_leave_one_out_metrics_equal_pml(seed):
    x, y = clustered(seed=seed)
    ours, ref = retrieval_metrics(x, y, k_list=(1, 2)), pml(x, y)
    assert ours["recall@1"] == pytest.approx(ref["precision_at_1"], abs=1e-6)
    assert ours["r_precision"] == pytest.approx(ref["r_precision"], abs=1e-6)
    assert ours["map@r"] == pytest.approx(ref["mean_average_precision_at_r"], abs=1e-6)


def test_query_gallery_metrics_equal_pml():
    x, y = clustered(seed=3)
    q, ql, g, gl = x[::3], y[::3], np.delete(x, np.s_[::3], 0), np.delete(y, np.s_[::3], 0)
    ours, ref = retrieval_metrics(q, ql, g, gl, k_list=(1,)), pml(q, ql, g, gl)
    assert ours["recall@1"] == pytest.approx(ref["precision_at_1"], abs=1e-6)
    assert ours["r_precision"] == pytest.approx(ref["r_precision"], abs=1e-6)
    assert ours["map@r"] == pytest.approx(ref["mean_average_precision_at_r"], abs=1e-6)


def test_l2_and_ip_agree_on_normalised_embeddings():
    x, y = clustered(seed=4)
    a, b = retrieval_metrics(x, y, metric="ip"), retrieval_metrics(x, y, metric="l2")
    assert a["map@r"] == pytest.approx(b["map@r"], abs=1e-6)


def test_recall_at_k_by_brute_force():
    x, y = clustered(seed=5, d=8)
    sim = x @ x.T
    np.fill_diagonal(sim, -np.inf)
    order = np.argsort(-sim, axis=1)
    ours = retrieval_metrics(x, y, k_list=(1, 4))
    for k in (1, 4):
        expected = np.mean([(y[order[i, :k]] == y[i]).any() for i in range(len(y))])
        assert ours[f"recall@{k}"] == pytest.approx(expected, abs=1e-9)


def test_the_query_is_excluded_even_with_exact_duplicates():
    x = np.repeat(np.eye(4, dtype=np.float32), 3, axis=0)  # every point has two exact copies
    y = np.repeat(np.arange(4), 3)
    out = retrieval_metrics(x, y, k_list=(1,))
    assert out["recall@1"] == 1.0 and out["map@r"] == 1.0


def test_lone_queries_are_excluded():
    x, y = clustered(seed=6)
    y = y.copy()
    y[0] = 999  # a class with one sample: nothing to retrieve
    assert retrieval_metrics(x, y)["num_queries"] == len(y) - 1


@pytest.mark.parametrize("seed", [0, 1])
def test_nmi_is_sklearns_score_of_the_seeded_kmeans(seed):
    x, y = clustered(seed=seed)
    assign = kmeans_assign(x, len(np.unique(y)), seed=seed)
    assert nmi(x, y, seed=seed) == normalized_mutual_info_score(y, assign)
    assert evaluate_embeddings(x, y, seed=seed)["nmi"] == normalized_mutual_info_score(y, assign)


def test_nmi_is_seeded():
    x, y = clustered(seed=7)
    assert evaluate_embeddings(x, y, seed=3)["nmi"] == evaluate_embeddings(x, y, seed=3)["nmi"]


def test_evaluate_cli_prints_the_same_metrics(tmp_path):
    x, y = clustered(seed=8)
    np.save(tmp_path / "e.npy", x)
    np.save(tmp_path / "l.npy", y)
    out = subprocess.run(
        [sys.executable, "-m", "harness.evaluate", str(tmp_path / "e.npy"), str(tmp_path / "l.npy"), "--k", "1,2"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    printed = json.loads(out.stdout)
    ref = evaluate_embeddings(x, y, k_list=(1, 2))
    for key in ("recall@1", "recall@2", "map@r", "r_precision", "nmi"):
        assert printed[key] == pytest.approx(ref[key], abs=1e-6)
    assert "diag/coding_rate" in printed


def test_few_points_per_centroid_cluster_the_same_and_print_nothing(capfd):
    """Omniglot-sized k-means (20 points per class): faiss's "please provide at least N training points" is not
    printed, and the clustering equals faiss's own with its default min_points_per_centroid, bit for bit."""
    import faiss

    x = np.random.default_rng(0).normal(size=(540, 32)).astype(np.float32)
    ours = kmeans_assign(x, 27, seed=0)
    assert capfd.readouterr().err == ""
    km = faiss.Kmeans(32, 27, niter=20, seed=0, verbose=False)
    km.train(x)
    assert "please provide at least" in capfd.readouterr().err  # the warning the default prints
    np.testing.assert_array_equal(ours, km.index.search(x, 1)[1][:, 0])
