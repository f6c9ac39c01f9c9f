"""Metrix (issue 5): the soft-label losses, the regularizer, the utilization measure, and digits runs.

* with y in {0, 1} the mixed losses are pytorch-metric-learning's clean losses (value and gradient);
* with soft labels and masks they match brute-force Python loops in float64;
* the regularizer (pairs, mask, labels, mixing at each level) matches a loop-built reference;
* every (base loss x level) pair trains on digits; any other base loss is refused at start-up.
"""

import json
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from conftest import compose_cfg, group_options, tiny
from pytorch_metric_learning import distances, losses

import harness
from harness.errors import ConfigError
from harness.evaluation.utilization import utilization
from harness.losses import MetricLoss
from harness.losses.mixed_contrastive import MixedContrastive
from harness.losses.mixed_multi_similarity import MixedMultiSimilarity
from harness.losses.mixed_proxy_anchor import MixedProxyAnchor
from harness.models import MLP, EmbeddingModel
from harness.regularizers.base import Batch
from harness.regularizers.metrix import Metrix
from harness.rundir import records

METRIX = [name for name in group_options("regularizer") if name.startswith("metrix")]
KINDS = ("contrastive", "multi_similarity", "proxy_anchor")


def clean_pml_loss(kind, num_classes=4, dim=8):
    if kind == "contrastive":
        return losses.ContrastiveLoss(
            pos_margin=0.1, neg_margin=0.8, distance=distances.LpDistance(p=2, normalize_embeddings=True)
        )
    if kind == "multi_similarity":
        return losses.MultiSimilarityLoss(alpha=2.0, beta=50.0, base=0.5)
    return losses.ProxyAnchorLoss(num_classes=num_classes, embedding_size=dim, margin=0.1, alpha=32)


def mixed_loss(kind):
    return {
        "contrastive": MixedContrastive(0.1, 0.8),
        "multi_similarity": MixedMultiSimilarity(2.0, 50.0, 0.5),
        "proxy_anchor": MixedProxyAnchor(0.1, 32.0),
    }[kind]


# ------------------------------------------------------------------------------------- brute-force references
def unit(v):
    norm = math.sqrt(sum(t * t for t in v))
    return [t / norm for t in v]


def cos(u, v):
    return sum(a * b for a, b in zip(unit(u), unit(v)))


def brute_loss(kind, anchors, examples, y, mask):
    """The mixed losses of the issue, one anchor-example pair at a time (python floats)."""
    A, X, Y, M = anchors.tolist(), examples.tolist(), y.tolist(), mask.tolist()
    n, k = len(A), len(X)
    if kind == "contrastive":
        pos, neg = [], []
        for a in range(n):
            for m in range(k):
                if M[a][m]:
                    d = math.dist(unit(A[a]), unit(X[m]))
                    pos.append(Y[a][m] * max(d - 0.1, 0.0))
                    neg.append((1 - Y[a][m]) * max(0.8 - d, 0.0))
        avg = lambda v: sum(v) / max(sum(t > 0 for t in v), 1)  # noqa: E731
        return avg(pos) + avg(neg)
    if kind == "multi_similarity":
        total = 0.0
        for a in range(n):
            sp = sum(Y[a][m] * math.exp(-2.0 * (cos(A[a], X[m]) - 0.5)) for m in range(k) if M[a][m])
            sn = sum((1 - Y[a][m]) * math.exp(50.0 * (cos(A[a], X[m]) - 0.5)) for m in range(k) if M[a][m])
            total += math.log(1 + sp) / 2.0 + math.log(1 + sn) / 50.0
        return total / n
    pos_terms, neg_total = [], 0.0
    for p in range(n):
        mass = sum(Y[p][m] for m in range(k) if M[p][m])
        sp = sum(Y[p][m] * math.exp(-32.0 * (cos(A[p], X[m]) - 0.1)) for m in range(k) if M[p][m])
        sn = sum((1 - Y[p][m]) * math.exp(32.0 * (cos(A[p], X[m]) + 0.1)) for m in range(k) if M[p][m])
        if mass > 0:
            pos_terms.append(math.log(1 + sp))
        neg_total += math.log(1 + sn)
    return sum(pos_terms) / max(len(pos_terms), 1) + neg_total / n


# ------------------------------------------------------------------------------------- the losses
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("kind", KINDS)
def test_hard_labels_reduce_to_the_clean_pml_loss(kind, dtype):
    g = torch.Generator().manual_seed(1)
    labels = torch.randint(0, 4, (24,), generator=g)
    emb = torch.randn(24, 8, generator=g, dtype=dtype, requires_grad=True)
    clean = clean_pml_loss(kind).to(dtype)
    expected = clean(emb, labels)
    if kind == "proxy_anchor":
        y = F.one_hot(labels, 4).T.to(dtype)
        got = mixed_loss(kind)(clean.proxies, emb, y)
    else:  # every pair of the batch but (a, a), as PML forms them
        y = (labels[:, None] == labels[None, :]).to(dtype)
        got = mixed_loss(kind)(emb, emb, y, mask=~torch.eye(24, dtype=torch.bool))
    assert got.item() == pytest.approx(expected.item(), rel=1e-6, abs=1e-6)
    (g_expected,) = torch.autograd.grad(expected, emb)
    (g_got,) = torch.autograd.grad(got, emb)
    torch.testing.assert_close(g_got, g_expected, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("kind", ["contrastive", "multi_similarity"])
def test_hard_labels_reduce_to_the_clean_pml_loss_against_a_reference_set(kind):
    """Anchors against other examples (the mixtures' shape): PML's ref_emb form."""
    g = torch.Generator().manual_seed(2)
    a, la = torch.randn(10, 8, generator=g, dtype=torch.float64), torch.randint(0, 3, (10,), generator=g)
    x, lx = torch.randn(30, 8, generator=g, dtype=torch.float64), torch.randint(0, 3, (30,), generator=g)
    expected = clean_pml_loss(kind)(a, la, ref_emb=x, ref_labels=lx)
    got = mixed_loss(kind)(a, x, (la[:, None] == lx[None, :]).double())
    assert got.item() == pytest.approx(expected.item(), rel=1e-6, abs=1e-6)


@pytest.mark.parametrize("kind", KINDS)
def test_soft_labels_match_brute_force_loops(kind):
    g = torch.Generator().manual_seed(3)
    anchors, examples = (
        torch.randn(6, 5, generator=g, dtype=torch.float64),
        torch.randn(9, 5, generator=g, dtype=torch.float64),
    )
    y = torch.rand(6, 9, generator=g, dtype=torch.float64)
    y[0, :3], y[1, 3:6] = 0.0, 1.0  # hard labels among the soft ones
    y[5] = 0.0  # an anchor (proxy) with no positive mass
    mask = torch.rand(6, 9, generator=g) > 0.25
    got = mixed_loss(kind)(anchors, examples, y, mask)
    assert got.item() == pytest.approx(brute_loss(kind, anchors, examples, y, mask), rel=1e-9)
    everything = torch.ones_like(mask)
    assert mixed_loss(kind)(anchors, examples, y).item() == pytest.approx(
        brute_loss(kind, anchors, examples, y, everything), rel=1e-9
    )


def test_zero_weights_give_finite_gradients():
    x = torch.randn(4, 3, dtype=torch.float64, requires_grad=True)
    y = torch.zeros(2, 4, dtype=torch.float64)
    for kind in KINDS:
        loss = mixed_loss(kind)(torch.randn(2, 3, dtype=torch.float64), x, y)
        (grad,) = torch.autograd.grad(loss, x)
        assert torch.isfinite(grad).all(), kind


# ------------------------------------------------------------------------------------- the regularizer
LABELS = torch.tensor([0, 0, 0, 1, 1, 1, 2, 2, 3, 4, 5, 5])  # classes 3 and 4 have no positive in the batch


def small_setup(kind):
    torch.manual_seed(0)
    model = EmbeddingModel(MLP(in_features=6, hidden=(16,)), embed_dim=5).double()
    base = MetricLoss(kind, clean_pml_loss(kind, num_classes=6, dim=5)).double()
    x = torch.randn(len(LABELS), 6, dtype=torch.float64)
    f = model.features(x)
    return model, base, Batch(x, LABELS, f, model.embed(f), step=0)


def reference_triplets(mode, negatives, labels, emb, positives="all", negative_index="own"):
    """(anchor, x, x') triplets with repeats, as the Metrix docs describe them, built with loops."""
    n = len(labels)
    triplets = []
    all_negs = [
        (a, j)
        for a in range(n)
        for j in range(n)
        if labels[j] != labels[a] and (mode == "pos_neg" or not any(labels[k] == labels[a] for k in range(n) if k != a))
    ]
    for a in range(n):
        pos = [j for j in range(n) if j != a and labels[j] == labels[a]]
        if (mode == "pos_neg") != bool(pos):
            continue
        negs = [j for j in range(n) if labels[j] != labels[a]]
        if negatives is not None:
            ranked = sorted(range(len(negs)), key=lambda r: -cos(emb[a], emb[negs[r]]))[:negatives]
            negs = [negs[r] for r in ranked] if negative_index == "own" else [all_negs[r][1] for r in ranked]
        xs = [a] if mode == "anchor_neg" else (pos if positives == "all" else [pos[0]] * len(pos))
        triplets += [(a, x, j) for x in xs for j in negs]
    return triplets


def reference_metrix(kind, level, mode, lam, negatives, model, base, batch, positives="all", negative_index="own"):
    """Metrix's loss built with loops: triplets, mixtures, the anchors of each mixture and their labels."""
    labels, emb = batch.labels.tolist(), batch.embeddings.detach().tolist()
    triplets = reference_triplets(mode, negatives, labels, emb, positives, negative_index)
    pairs = sorted({(x, j) for _, x, j in triplets})

    def mix(i, j):
        if level == "embedding":
            e = batch.embeddings
            return F.normalize(lam * e[i] + (1 - lam) * e[j], dim=0)
        if level == "feature":
            return model.embed((lam * batch.features[i] + (1 - lam) * batch.features[j])[None])[0]
        return model((lam * batch.inputs[i] + (1 - lam) * batch.inputs[j])[None])[0]

    mixed = {p: mix(*p).detach().tolist() for p in pairs}
    if kind == "contrastive":  # one entry per triplet, repeats included (the authors' lists)
        pos, neg = [], []
        for a, x, j in triplets:
            y = lam * (labels[x] == labels[a]) + (1 - lam) * (labels[j] == labels[a] and negative_index == "own")
            d = math.dist(unit(emb[a]), unit(mixed[(x, j)]))
            pos.append(y * max(d - 0.1, 0.0))
            neg.append((1 - y) * max(0.8 - d, 0.0))
        avg = lambda v: sum(v) / max(sum(t > 0 for t in v), 1)  # noqa: E731
        return avg(pos) + avg(neg)
    examples = torch.tensor([mixed[p] for p in pairs], dtype=torch.float64)
    if kind == "proxy_anchor":
        anchors, anchor_labels = base.proxies, list(range(len(base.proxies)))
        mask = torch.ones(len(anchors), len(pairs), dtype=torch.bool)
    else:
        anchors, anchor_labels = batch.embeddings, labels
        present = {(a, x, j) for a, x, j in triplets}
        mask = torch.tensor([[(a, x, j) in present for x, j in pairs] for a in range(len(labels))])
    y = torch.tensor(
        [[lam * (c == labels[i]) + (1 - lam) * (c == labels[j]) for i, j in pairs] for c in anchor_labels],
        dtype=torch.float64,
    )
    return brute_loss(kind, anchors.detach(), examples, y, mask)


@pytest.mark.parametrize("mode", ["pos_neg", "anchor_neg"])
@pytest.mark.parametrize("level,negatives", [("input", 1), ("feature", None), ("embedding", None), ("embedding", 2)])
@pytest.mark.parametrize("kind", KINDS)
def test_metrix_matches_a_loop_built_reference(kind, level, negatives, mode):
    model, base, batch = small_setup(kind)
    reg = Metrix(level=level, weight=0.4, modes=[mode], negatives=negatives)
    torch.manual_seed(7)
    drawn_mode, lam = reg.draw()
    torch.manual_seed(7)
    got = reg(batch, base_loss=base, model=model)["metrix"]
    assert drawn_mode == mode and 0 < lam < 1
    expected = 0.4 * reference_metrix(kind, level, mode, lam, negatives, model, base, batch)
    assert got.item() == pytest.approx(expected, rel=1e-9)
    assert got.item() > 0
    params = [p for p in model.parameters()] + ([base.proxies] if kind == "proxy_anchor" else [])
    grads = torch.autograd.grad(got, params, allow_unused=True)
    assert any(gr is not None and gr.abs().sum() > 0 for gr in grads)


@pytest.mark.parametrize("mode", ["pos_neg", "anchor_neg"])
@pytest.mark.parametrize(
    "positives,negative_index,negatives",
    [("first", "own", None), ("first", "own", 2), ("all", "pair_list_position", 1), ("first", "pair_list_position", 2)],
)
def test_the_authors_pairing_options_match_a_loop_built_reference(positives, negative_index, negatives, mode):
    model, base, batch = small_setup("contrastive")
    reg = Metrix(
        level="embedding",
        weight=1.0,
        modes=[mode],
        negatives=negatives,
        positives=positives,
        negative_index=negative_index,
        anchor_neg_weight=0.3,
    )
    reg.draw = lambda: (mode, 0.35)
    got = reg(batch, base_loss=base, model=model)["metrix"].item()
    expected = reference_metrix(
        "contrastive", "embedding", mode, 0.35, negatives, model, base, batch, positives, negative_index
    )
    assert got == pytest.approx((0.3 if mode == "anchor_neg" else 1.0) * expected, rel=1e-9)
    default = Metrix(level="embedding", weight=1.0, modes=[mode], negatives=negatives)
    default.draw = reg.draw
    if mode == "pos_neg" or negative_index != "own":  # class 0 has three samples: the options change the pairs
        assert default(batch, base_loss=base, model=model)["metrix"].item() != pytest.approx(got)


def test_metrix_is_reproducible_and_zero_without_pairs():
    model, base, batch = small_setup("multi_similarity")
    reg = Metrix(level="feature")
    values = []
    for seed in (5, 5, 6):
        torch.manual_seed(seed)
        values.append([reg(batch, base_loss=base, model=model)["metrix"].item() for _ in range(4)])
    assert values[0] == values[1] and values[0] != values[2]
    # every sample has a positive: anchor-negative mixing has nothing to mix
    full = Batch(batch.inputs[:6], LABELS[:6], batch.features[:6], batch.embeddings[:6])
    assert Metrix(level="embedding", modes=["anchor_neg"])(full, base_loss=base, model=model)["metrix"].item() == 0.0


def test_metrix_refuses_other_base_losses_and_bad_settings():
    with pytest.raises(ConfigError, match="contrastive.*multi_similarity.*proxy_anchor"):
        Metrix().check_compatible(MetricLoss("triplet", losses.TripletMarginLoss()))
    with pytest.raises(ConfigError, match="LpDistance"):
        Metrix().check_compatible(
            MetricLoss("contrastive", losses.ContrastiveLoss(distance=distances.LpDistance(normalize_embeddings=False)))
        )
    with pytest.raises(ConfigError, match="contrastive loss only"):
        Metrix(positives="first").check_compatible(MetricLoss("multi_similarity", losses.MultiSimilarityLoss()))
    for bad in (
        {"level": "pixel"},
        {"modes": ["mix_all"]},
        {"modes": []},
        {"negatives": 0},
        {"beta_a": 0},
        {"positives": "last"},
        {"negative_index": "pair_list_position"},
        {"anchor_neg_weight": -1},
    ):
        with pytest.raises(ConfigError):
            Metrix(**bad)


# ------------------------------------------------------------------------------------- utilization
def test_utilization_is_the_mean_distance_to_the_nearest_training_embedding():
    rng = np.random.default_rng(0)
    test, train = rng.normal(size=(40, 7)).astype(np.float32), rng.normal(size=(90, 7)).astype(np.float32)
    brute = np.mean([min(np.linalg.norm(q - t) for t in train) for q in test])
    assert utilization(test, train) == pytest.approx(brute, rel=1e-5)
    assert utilization(train[:5], train) == pytest.approx(0.0, abs=1e-3)


# ------------------------------------------------------------------------------------- digits runs
FAST = ["sampler.batches_per_epoch=2", "eval.nmi=false", "eval.raw_baseline=false"]


def test_each_level_has_a_config_file_that_builds_it():
    from harness.config import instantiate

    levels = {instantiate(compose_cfg([f"regularizer={name}"]).regularizer[name]).level for name in METRIX}
    assert levels == {"input", "feature", "embedding"}


@pytest.mark.parametrize("regularizer", METRIX)
@pytest.mark.parametrize("loss", KINDS)
def test_every_loss_and_level_trains_one_epoch_on_digits(loss, regularizer, results):
    record = harness.run(tiny([f"loss={loss}", f"regularizer={regularizer}", *FAST], results))
    assert record["status"] == "finished" and record["regularizer"] == regularizer
    assert 0.0 <= record["test/recall@1"] <= 1.0
    assert 0.0 < record["test/utilization"] < 2.0  # unit vectors: distances in [0, 2]
    rows = records.read_epochs(record["run_dir"])
    term = rows[1][f"train/{regularizer}.metrix"]
    assert math.isfinite(term) and term >= 0
    assert rows[1]["train/loss"] == pytest.approx(rows[1]["train/base"] + term, rel=1e-5)


def test_metrix_with_another_base_loss_fails_at_start_up(results):
    cfg = tiny(["loss=triplet", "regularizer=metrix_feature", *FAST], results)
    with pytest.raises(ConfigError, match="loss=contrastive, loss=multi_similarity or loss=proxy_anchor"):
        harness.run(cfg)
    finished = [json.loads(p.read_text()).get("status") for p in results.rglob("record.json")]
    assert "finished" not in finished
