"""AntiCo: the coding rate against a float64 brute force, gradients, where each variant's gradient goes,
start-up checks, every variant with every base loss, and the digits claim (MS + antico_pair beats MS)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from conftest import compose_cfg, group_options, tiny
from hydra.utils import instantiate
from pytorch_metric_learning import losses, miners

from harness.errors import ConfigError
from harness.losses import MetricLoss
from harness.regularizers.antico import AntiCo
from harness.regularizers.base import Batch
from harness.regularizers.coding_rate import _with_float64_fallback, cholesky_cannot_fail, coding_rate
from harness.rundir import records
from harness.rundir.run_dir import RunDir
from harness.training.task import run

VARIANTS = ("antico_pair", "antico_batch_proxy", "antico_all_proxy")


# ----------------------------------------------------------------------------------------------- brute force
def brute_rate(z: np.ndarray, a: float, form: str) -> float:
    """1/2 logdet(I + a Z^T Z) (form "d") or 1/2 logdet(I + a Z Z^T) (form "n"), float64 numpy."""
    z = np.asarray(z, dtype=np.float64)
    g = z.T @ z if form == "d" else z @ z.T
    sign, logdet = np.linalg.slogdet(np.eye(len(g)) + a * g)
    assert sign > 0
    return 0.5 * logdet


def unit_rows(n: int, d: int, seed: int = 0, rank: int | None = None) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(n, rank or d, generator=g, dtype=torch.float64)
    if rank is not None:
        z = z @ torch.randn(rank, d, generator=g, dtype=torch.float64)
    return F.normalize(z, dim=1)


INPUTS = {
    "random_wide": lambda: unit_rows(12, 40, seed=1),  # n < d: the n x n Gram matrix
    "random_tall": lambda: unit_rows(50, 8, seed=2),  # n > d: the d x d Gram matrix
    "rank2": lambda: unit_rows(30, 16, seed=3, rank=2),  # rank-deficient
    "duplicates": lambda: unit_rows(1, 16, seed=4).repeat(20, 1),  # fully collapsed: one vector 20 times
    "dup_half": lambda: torch.cat([unit_rows(5, 16, seed=5)] * 2),  # every row twice
}


@pytest.mark.parametrize("scale", ["textbook", "reference"])
@pytest.mark.parametrize("name", sorted(INPUTS))
def test_coding_rate_matches_float64_brute_force_in_both_gram_forms(name, scale):
    z = INPUTS[name]()
    n, d = z.shape
    eps, gam1 = 0.3, 1.7
    a = gam1 * d / (n * eps) if scale == "textbook" else gam1 * n / (d * eps)
    ref_d, ref_n = brute_rate(z.numpy(), a, "d"), brute_rate(z.numpy(), a, "n")
    assert ref_d == pytest.approx(ref_n, rel=1e-10)  # Sylvester: both Gram forms give R
    r64 = coding_rate(z, eps=eps, gam1=gam1, scale=scale)
    assert r64.dtype == torch.float64 and float(r64) == pytest.approx(ref_d, rel=1e-10)
    r32 = coding_rate(z.float(), eps=eps, gam1=gam1, scale=scale)
    assert r32.dtype == torch.float32 and float(r32) == pytest.approx(ref_d, rel=1e-5)
    # float64 on request for float32 input; a half-precision input is lifted to float32 at least
    assert coding_rate(z.float(), eps=eps, gam1=gam1, scale=scale, dtype=torch.float64).dtype == torch.float64
    assert float(coding_rate(z.half(), eps=eps, gam1=gam1, scale=scale)) == pytest.approx(ref_d, rel=2e-3)


def test_coding_rate_closed_forms():
    # collapsed: n copies of one unit vector -> 1/2 log(1 + d/eps); orthonormal rows (n = d) -> d/2 log(1 + 1/eps)
    d, eps = 16, 0.5
    assert float(coding_rate(INPUTS["duplicates"](), eps=eps)) == pytest.approx(0.5 * math.log(1 + d / eps), rel=1e-12)
    assert float(coding_rate(torch.eye(d, dtype=torch.float64), eps=eps)) == pytest.approx(
        d / 2 * math.log(1 + 1 / eps)
    )


SMALL = {  # gradcheck differentiates numerically entry by entry: small inputs of each kind
    "random_wide": lambda: unit_rows(5, 9, seed=1),
    "random_tall": lambda: unit_rows(12, 4, seed=2),
    "rank2": lambda: unit_rows(8, 6, seed=3, rank=2),
    "duplicates": lambda: unit_rows(1, 5, seed=4).repeat(6, 1),
}


@pytest.mark.parametrize("name", sorted(SMALL))
def test_coding_rate_gradcheck_float64(name):
    z = SMALL[name]().requires_grad_(True)
    assert torch.autograd.gradcheck(lambda t: coding_rate(t, eps=0.5, gam1=1.0), (z,))
    assert torch.autograd.gradcheck(lambda t: coding_rate(t, eps=0.5, scale="reference"), (z,))


@pytest.mark.parametrize("form", ["exp", "linear"])
def test_penalty_value_and_gradcheck_including_normalisation(form):
    reg = AntiCo(variant="pair", form=form, weight=0.7, gam2=1.3, eps=0.5, dtype="float64")
    x = torch.randn(7, 5, dtype=torch.float64, generator=torch.Generator().manual_seed(0)).requires_grad_(True)
    rate = brute_rate(F.normalize(x, dim=1).detach().numpy(), 5 / (7 * 0.5), "d")
    expected = 0.7 * math.exp(-1.3 * rate) if form == "exp" else -0.7 * rate
    assert float(reg.penalty(x, scale="textbook").detach()) == pytest.approx(expected, rel=1e-10)
    assert torch.autograd.gradcheck(lambda t: reg.penalty(t, scale="textbook"), (x,))


def test_nonfinite_input_gives_nan_not_a_crash():
    z = unit_rows(5, 8).clone()
    z[0, 0] = float("nan")
    assert torch.isnan(coding_rate(z))


# ----------------------------------------------------------------------------------------------- where gradients go
C, D = 5, 8


def base_loss(kind: str) -> MetricLoss:
    torch.manual_seed(0)
    if kind == "proxy_anchor":
        return MetricLoss("proxy_anchor", losses.ProxyAnchorLoss(num_classes=C, embedding_size=D))
    if kind == "soft_triple":  # several proxies per class
        return MetricLoss("soft_triple", losses.SoftTripleLoss(num_classes=C, embedding_size=D, centers_per_class=3))
    if kind == "arcface":  # proxies stored transposed (d x C)
        return MetricLoss("arcface", losses.ArcFaceLoss(num_classes=C, embedding_size=D))
    return MetricLoss("multi_similarity", losses.MultiSimilarityLoss(), miners.MultiSimilarityMiner())


def batch_of(labels) -> Batch:
    x = torch.randn(len(labels), D, generator=torch.Generator().manual_seed(1))
    emb = F.normalize(x, dim=1).requires_grad_(True)
    return Batch(inputs=x, labels=torch.tensor(labels), features=x, embeddings=emb)


def grads(term, tensors):
    """d term / d tensor for each tensor, None where the term does not depend on it."""
    return torch.autograd.grad(term, tensors, allow_unused=True, retain_graph=True)


@pytest.mark.parametrize("kind", ["proxy_anchor", "multi_similarity"])
def test_pair_gradient_reaches_the_embeddings_only(kind):
    loss, batch = base_loss(kind), batch_of([0, 0, 1, 1, 2, 2])
    reg = AntiCo(variant="pair", num_classes=C, embed_dim=D)
    reg.check_compatible(loss)
    terms = reg(batch, base_loss=loss, model=None)
    assert set(terms) == {"coding_rate"}
    params = list(loss.parameters()) + list(reg.parameters())
    g_emb, *g_params = grads(terms["coding_rate"], [batch.embeddings] + params)
    assert g_emb is not None and g_emb.abs().sum() > 0
    assert all(g is None for g in g_params) and reg.param_groups() == []
    # the authors code the batch with the textbook factor: scale=reference changes nothing for pair
    ref = AntiCo(variant="pair", scale="reference")(batch, base_loss=loss, model=None)["coding_rate"]
    assert float(ref.detach()) == pytest.approx(float(terms["coding_rate"].detach()), rel=1e-6)


@pytest.mark.parametrize("kind", ["proxy_anchor", "soft_triple", "arcface"])
@pytest.mark.parametrize("variant", ["batch_proxy", "all_proxy"])
def test_proxy_variants_code_the_base_loss_proxies(variant, kind):
    loss, batch = base_loss(kind), batch_of([1, 1, 3, 3, 3, 1])
    reg = AntiCo(variant=variant, num_classes=C, embed_dim=D)
    reg.check_compatible(loss)
    assert reg.align is None and list(reg.parameters()) == [] and reg.param_groups() == []
    terms = reg(batch, base_loss=loss, model=None)
    assert set(terms) == {"coding_rate"}  # no alignment: the base loss ties its own proxies
    (param,) = list(loss.parameters())
    g_emb, g_param = grads(terms["coding_rate"], [batch.embeddings, param])
    assert g_emb is None
    g_rows = g_param if kind == "proxy_anchor" else g_param.t()  # ArcFace's W and SoftTriple's fc are d x P
    touched = g_rows.abs().sum(dim=1) > 0
    coded = torch.isin(loss.proxy_labels, batch.labels) if variant == "batch_proxy" else torch.ones_like(touched)
    assert torch.equal(touched, coded)
    # the value is R of exactly those proxies
    p = F.normalize(loss.proxies[coded].detach().double(), dim=1).numpy()
    rate = brute_rate(p, D / (len(p) * 0.5), "d")
    assert float(terms["coding_rate"].detach()) == pytest.approx(math.exp(-rate), rel=1e-5)
    # the authors' scaling of the proxy Gram matrix: C / (d eps)
    ref = AntiCo(variant=variant, scale="reference")(batch, base_loss=loss, model=None)["coding_rate"]
    assert float(ref.detach()) == pytest.approx(math.exp(-brute_rate(p, len(p) / (D * 0.5), "d")), rel=1e-5)


def test_batch_proxy_with_more_proxies_than_the_batch_holds_codes_exactly_the_present_ones():
    """More classes than a batch can hold: the present proxies are moved first into a fixed number of rows (no
    data-dependent shape); the value is R of exactly those proxies and only they get a gradient."""
    torch.manual_seed(0)
    loss = MetricLoss("proxy_anchor", losses.ProxyAnchorLoss(num_classes=12, embedding_size=D))
    batch = batch_of([7, 7, 2, 2])  # 4 rows, 2 of 12 classes
    reg = AntiCo(variant="batch_proxy", dtype="float64")
    reg.check_compatible(loss)
    term = reg(batch, base_loss=loss, model=None)["coding_rate"]
    (g_param,) = grads(term, [loss.proxies])
    assert torch.equal(g_param.abs().sum(dim=1) > 0, torch.isin(torch.arange(12), torch.tensor([2, 7])))
    p = F.normalize(loss.proxies[[2, 7]].detach().double(), dim=1).numpy()
    assert float(term.detach()) == pytest.approx(math.exp(-brute_rate(p, D / (2 * 0.5), "d")), rel=1e-6)


def test_coding_rate_decides_its_float64_fallback_without_a_host_read():
    """Whether float32's factorisation can fail is decided from shapes and gains (Demmel's condition): never for the
    presets' settings; where it may, the float64 factorisation is computed beside it and taken on the device where
    float32 failed (the 9 x 9 Hilbert matrix: float32 Cholesky fails, float64 succeeds)."""
    assert cholesky_cannot_fail(90, 1 + 512 / (90 * 0.5), torch.float32)  # batch 90, 512-d, eps 0.5 (n x n form)
    assert cholesky_cannot_fail(128, 1 + 128 / 0.5, torch.float32)  # Omniglot's 912 proxies in 128-d (d x d form)
    assert not cholesky_cannot_fail(90, 1 + 512 / (90 * 1e-6), torch.float32)
    i = torch.arange(9, dtype=torch.float64)
    hilbert = (1 / (i[:, None] + i[None, :] + 1)).float().requires_grad_(True)
    assert torch.linalg.cholesky_ex(hilbert.detach()).info > 0
    value = _with_float64_fallback(hilbert)
    assert value.dtype == torch.float32
    assert float(value.detach()) == pytest.approx(0.5 * float(torch.logdet(hilbert.detach().double())), rel=1e-6)
    (g,) = torch.autograd.grad(value, hilbert)
    assert torch.isfinite(g).all() and g.abs().sum() > 0
    m = torch.eye(5) + 0.5 * torch.ones(5, 5)  # where float32 succeeds, its value and gradient are float32's own
    assert torch.equal(_with_float64_fallback(m), torch.log(torch.diagonal(torch.linalg.cholesky(m))).sum())


@pytest.mark.parametrize("variant", ["batch_proxy", "all_proxy"])
def test_proxy_variants_with_a_pair_loss_own_aligned_proxies(variant):
    loss, batch = base_loss("multi_similarity"), batch_of([1, 1, 3, 3, 3, 1])
    reg = AntiCo(variant=variant, num_classes=C, embed_dim=D, w_align=0.5, proxy_lr_mult=7.0)
    reg.check_compatible(loss)
    (proxies,) = list(reg.parameters())
    assert reg.param_groups() == [{"name": "proxies", "params": [proxies], "lr_mult": 7.0}]
    terms = reg(batch, base_loss=loss, model=None)
    assert set(terms) == {"coding_rate", "align"}
    g_emb, g_p = grads(terms["coding_rate"], [batch.embeddings, proxies])
    assert g_emb is None
    touched = g_p.abs().sum(dim=1) > 0
    expected = (
        torch.tensor([False, True, False, True, False]) if variant == "batch_proxy" else torch.ones(C, dtype=bool)
    )
    assert torch.equal(touched, expected)
    g_emb, g_p = grads(terms["align"], [batch.embeddings, proxies])
    assert g_emb.abs().sum() > 0 and g_p.abs().sum() > 0  # the alignment ties embeddings and proxies
    assert float(terms["align"].detach()) == pytest.approx(0.5 * brute_proxy_anchor(batch, proxies), rel=1e-5)


def brute_proxy_anchor(batch: Batch, proxies: torch.Tensor, alpha: float = 32.0, delta: float = 0.1) -> float:
    """Kim et al. 2020, loops over proxies: positive term averaged over proxies with positives, negative over all."""
    x = F.normalize(batch.embeddings.detach().double(), dim=1).numpy()
    p = F.normalize(proxies.detach().double(), dim=1).numpy()
    y = batch.labels.numpy()
    s = x @ p.T
    pos, neg, with_pos = 0.0, 0.0, 0
    for c in range(len(p)):
        if (y == c).any():
            pos += math.log(1 + sum(math.exp(-alpha * (s[i, c] - delta)) for i in np.where(y == c)[0]))
            with_pos += 1
        neg += math.log(1 + sum(math.exp(alpha * (s[i, c] + delta)) for i in np.where(y != c)[0]))
    return pos / with_pos + neg / len(p)


# ----------------------------------------------------------------------------------------------- start-up checks
def test_combinations_that_cannot_work_fail_at_start_up():
    with pytest.raises(ConfigError, match="w_align"):
        AntiCo(variant="batch_proxy", num_classes=C, embed_dim=D, w_align=0.0).check_compatible(base_loss("ms"))
    with pytest.raises(ConfigError, match="num_classes"):
        AntiCo(variant="all_proxy").check_compatible(base_loss("ms"))
    frozen = base_loss("proxy_anchor")
    frozen.lr_mult = 0.0
    with pytest.raises(ConfigError, match="lr_mult"):
        AntiCo(variant="all_proxy", num_classes=C, embed_dim=D).check_compatible(frozen)
    AntiCo(variant="pair", w_align=0.0).check_compatible(frozen)  # pair needs no proxies: fine
    for bad in (
        {"variant": "pairs"},
        {"form": "log"},
        {"scale": "paper"},
        {"eps": 0.0},
        {"dtype": "float16"},
        {"weight": -1.0},
    ):
        with pytest.raises(ConfigError):
            AntiCo(**bad)


def test_configs_expose_every_knob_under_their_own_name():
    for name in VARIANTS:
        cfg = compose_cfg([f"regularizer={name}"])
        node = cfg.regularizer[name]
        assert set(cfg.regularizer) == {name}
        assert node.variant == name.removeprefix("antico_")
        assert {"weight", "eps", "gam1", "gam2", "form", "scale", "dtype"} <= set(node)
        if name != "antico_pair":
            assert {"w_align", "proxy_lr_mult", "num_classes", "embed_dim"} <= set(node)
        filled = {"num_classes": C, "embed_dim": D} if name != "antico_pair" else {}  # what start-up fills
        assert isinstance(instantiate(node, **filled), AntiCo)


# ----------------------------------------------------------------------------------------------- every base loss
@pytest.mark.parametrize("loss", group_options("loss"))
def test_every_variant_trains_with_every_base_loss(loss, results):
    """All three variants at once on each base loss: one real run, 2 steps, every term logged and finite."""
    cfg = tiny(
        [
            f"loss={loss}",
            f"regularizer=[{','.join(VARIANTS)}]",
            "sampler.batches_per_epoch=2",
            "eval.nmi=false",
            "eval.raw_baseline=false",
        ],
        results,
    )
    record = run(cfg)
    assert record["status"] == "finished"
    assert all(math.isfinite(record[f"diag/{split}/coding_rate"]) for split in ("val", "test"))
    row = records.read_epochs(record["run_dir"])[-1]
    own_proxies = "num_classes" not in cfg.loss.loss.keys()  # a pair-based loss: the proxy variants bring their own
    for name in VARIANTS:
        assert math.isfinite(row[f"train/{name}.coding_rate"])
        aligned = name != "antico_pair" and own_proxies
        assert (f"train/{name}.align" in row) == aligned and (f"lr/{name}.proxies" in row) == aligned
        if aligned:
            assert math.isfinite(row[f"train/{name}.align"])
            assert row[f"lr/{name}.proxies"] == pytest.approx(cfg.optimizer.lr * cfg.regularizer[name].proxy_lr_mult)


# ----------------------------------------------------------------------------------------------- the digits claim
@pytest.mark.slow
def test_antico_pair_beats_multi_similarity_on_digits(digits_ablation):
    """`python run.py -m sweep=digits_ablation` (make run's grid) with the committed defaults: MS + antico_pair beats
    MS on test MAP@R averaged over the seeds 0-2, and codes at a higher rate."""
    found = {}
    for run_dir in sorted((digits_ablation / "runs" / "digits").iterdir()):
        record = RunDir.at(run_dir).record()
        assert record["status"] == "finished"
        if record["loss"] == "multi_similarity":
            found.setdefault(record["regularizer"], []).append(record)
    assert {reg: sorted(r["seed"] for r in rs) for reg, rs in found.items()} == {
        "none": [0, 1, 2],
        "antico_pair": [0, 1, 2],
    }
    mean = {
        reg: {k: float(np.mean([r[k] for r in rs])) for k in ("test/map@r", "diag/test/coding_rate")}
        for reg, rs in found.items()
    }
    assert mean["antico_pair"]["test/map@r"] >= mean["none"]["test/map@r"] + 0.05, mean
    assert mean["antico_pair"]["diag/test/coding_rate"] > mean["none"]["diag/test/coding_rate"] + 1.0, mean
