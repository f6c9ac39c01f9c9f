"""NIR: the FrEIA flow inverts and its log-determinant matches a float64 brute-force Jacobian, the loss
matches a brute-force reference, gradients reach embeddings / proxies / flow, SoftTriple's centers are
picked as documented, overflow fails clearly, and real runs compose with every proxy-based loss (and
with AntiCo) while every pair-based loss fails at start-up naming the proxy losses."""

from __future__ import annotations

import functools
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from conftest import compose_cfg, group_options, tiny
from hydra.utils import instantiate
from pytorch_metric_learning import losses

from harness.config import complete_config
from harness.errors import ConfigError, NonFiniteLossError
from harness.losses import MetricLoss
from harness.regularizers.base import Batch
from harness.regularizers.flow import CONDITIONINGS, build_conditional_flow
from harness.regularizers.nir import NIR, PROXY_LOSSES
from harness.rundir import records
from harness.rundir.run_dir import RunDir
from harness.training.step import epoch_means
from harness.training.task import run

SMALL = dict(blocks=3, depth=3, width=16)  # a flow small enough for brute-force Jacobians
FAST_RUN = [
    "regularizer.nir.blocks=2",
    "regularizer.nir.depth=3",
    "regularizer.nir.width=32",
    "sampler.batches_per_epoch=2",
    "eval.nmi=false",
    "eval.raw_baseline=false",
]


def unit(n: int, d: int, seed: int, dtype=torch.float32) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return F.normalize(torch.randn(n, d, generator=g, dtype=torch.float64), dim=1).to(dtype)


def proxy_loss(kind: str, classes: int, d: int, dtype=torch.float32) -> MetricLoss:
    if kind == "soft_triple":
        loss = losses.SoftTripleLoss(num_classes=classes, embedding_size=d, centers_per_class=3)
    else:
        loss = losses.ProxyAnchorLoss(num_classes=classes, embedding_size=d)
    return MetricLoss(kind, loss).to(dtype)


def brute_exponents(reg: NIR, x: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
    """1/2||f(x_i|c_i)||^2 - log|det df/dx_i|, one sample at a time, Jacobian by autograd (float64)."""
    out = []
    for xi, ci in zip(x, cond):
        f = lambda v: reg.flow(v[None], c=[ci[None]])[0][0]  # noqa: E731, B023 (used in this iteration)
        jac = torch.autograd.functional.jacobian(f, xi)
        z = f(xi)
        out.append(0.5 * z.pow(2).sum() - torch.linalg.slogdet(jac).logabsdet)
    return torch.stack(out)


# ----------------------------------------------------------------------------------------------- the flow
@pytest.mark.parametrize("conditioning", CONDITIONINGS)
def test_flow_inverts_to_1e5(conditioning):
    torch.manual_seed(0)
    flow = build_conditional_flow(64, 64, conditioning=conditioning)  # the authors' size: 5 blocks, 8 x 128
    x, c = unit(32, 64, 1), unit(32, 64, 2)
    with torch.no_grad():
        z, log_det = flow(x, c=[c])
        x_back, log_det_back = flow(z, c=[c], rev=True)
    assert (x_back - x).abs().max() <= 1e-5
    assert torch.allclose(log_det_back, -log_det, atol=1e-4)
    assert (z - x).abs().max() > 1e-2  # not an identity


@pytest.mark.parametrize("conditioning", ["dense", "mid"])
def test_log_det_matches_float64_brute_force_jacobian(conditioning):
    torch.manual_seed(0)
    flow = build_conditional_flow(6, 6, conditioning=conditioning, **SMALL).double()
    x, c = unit(5, 6, 3, torch.float64), unit(5, 6, 4, torch.float64)
    _, log_det = flow(x, c=[c])
    for i in range(len(x)):
        jac = torch.autograd.functional.jacobian(lambda v: flow(v[None], c=[c[i][None]])[0][0], x[i])  # noqa: B023
        assert log_det[i].item() == pytest.approx(torch.linalg.slogdet(jac).logabsdet.item(), abs=1e-10)
    assert log_det.abs().max() > 1e-3  # the check means something: the flow is not volume-preserving


def test_condition_changes_the_map_and_conditioning_picks_the_blocks():
    torch.manual_seed(0)
    flow = build_conditional_flow(8, 8, **SMALL)
    x = unit(4, 8, 5)
    z1, _ = flow(x, c=[unit(4, 8, 6)])
    z2, _ = flow(x, c=[unit(4, 8, 7)])
    assert (z1 - z2).abs().max() > 1e-3
    for mode, expected in {"dense": [0, 1, 2], "start": [0], "mid": [1], "end": [2]}.items():
        built = build_conditional_flow(8, 8, conditioning=mode, **SMALL)
        assert [k // 2 for k, cond in enumerate(built.conditions) if cond is not None] == expected
    with pytest.raises(ConfigError, match="conditioning"):
        build_conditional_flow(8, 8, conditioning="sparse")


def test_building_the_flow_leaves_numpy_global_rng_alone():
    np.random.seed(123)
    expected = np.random.rand(3)
    np.random.seed(123)
    build_conditional_flow(8, 8, **SMALL)  # FrEIA's PermuteRandom reseeds numpy's global generator
    assert np.array_equal(np.random.rand(3), expected)
    # and the permutations are the same in every build (seeded per block)
    a, b = build_conditional_flow(8, 8, **SMALL), build_conditional_flow(8, 8, **SMALL)
    assert all(torch.equal(a[k].perm, b[k].perm) for k in range(0, 6, 2))
    assert not torch.equal(a[0].perm, a[2].perm)


# ----------------------------------------------------------------------------------------------- the loss
@pytest.mark.parametrize("form", ["exp", "log_mean_exp", "nll"])
def test_loss_matches_float64_brute_force(form):
    torch.manual_seed(0)
    reg = NIR(embed_dim=6, weight=0.7, form=form, **SMALL).double()
    base = proxy_loss("proxy_anchor", 3, 6, torch.float64)
    labels = torch.tensor([0, 0, 1, 2, 2, 1, 0])
    x = unit(7, 6, 8, torch.float64)
    got = reg(Batch(x, labels, x, x), base_loss=base)["nir"]
    a = brute_exponents(reg, x, F.normalize(base.proxies, dim=1)[labels])
    expected = {"exp": a.exp().mean(), "log_mean_exp": a.exp().mean().log(), "nll": a.mean()}[form]
    assert got.item() == pytest.approx(0.7 * expected.item(), rel=1e-10)


def test_gradient_reaches_embeddings_proxies_and_flow():
    torch.manual_seed(0)
    reg, base = NIR(embed_dim=16), proxy_loss("proxy_anchor", 4, 16)  # the authors' flow, float32
    x = unit(24, 16, 9).requires_grad_(True)
    labels = torch.arange(24) % 4
    term = reg(Batch(x, labels, x, x), base_loss=base)["nir"]
    assert torch.isfinite(term) and term > 0
    term.backward()
    flow_params = [p for p in reg.flow.parameters() if p.requires_grad]
    assert flow_params and all(p.grad is not None and torch.isfinite(p.grad).all() for p in flow_params)
    assert sum(bool(p.grad.abs().sum() > 0) for p in flow_params) == len(flow_params)
    assert x.grad.abs().sum(dim=1).min() > 0  # every sample's embedding
    assert base.proxies.grad is not None
    assert (base.proxies.grad.abs().sum(dim=1) > 0).all()  # every class present gets gradient
    (group,) = reg.param_groups()
    assert group["lr_mult"] == reg.lr_mult and {id(p) for p in group["params"]} == {id(p) for p in flow_params}


def test_soft_triple_condition_is_the_nearest_or_the_mean_center():
    torch.manual_seed(0)
    base = proxy_loss("soft_triple", 3, 8)  # 3 centers per class
    x, labels = unit(9, 8, 10), torch.tensor([0, 1, 2] * 3)
    centers = F.normalize(base.proxies, dim=1).detach().view(3, 3, 8)  # class, center, dim
    nearest = NIR(embed_dim=8, multi_proxy="nearest", **SMALL).conditions(base.proxies, base.proxy_labels, x, labels)
    mean = NIR(embed_dim=8, multi_proxy="mean", **SMALL).conditions(base.proxies, base.proxy_labels, x, labels)
    for i, y in enumerate(labels.tolist()):
        best = max(range(3), key=lambda j: float(x[i] @ centers[y, j]))
        assert torch.allclose(nearest[i], centers[y, best])
        assert torch.allclose(mean[i], F.normalize(centers[y].mean(0), dim=0), atol=1e-6)
    assert len({tuple(r.tolist()) for r in nearest}) > 3  # samples of a class differ in their center
    # one proxy per class: both rules give the class's normalised proxy
    pa = proxy_loss("proxy_anchor", 3, 8)
    for rule in ("nearest", "mean"):
        cond = NIR(embed_dim=8, multi_proxy=rule, **SMALL).conditions(pa.proxies, pa.proxy_labels, x, labels)
        assert torch.allclose(cond, F.normalize(pa.proxies, dim=1)[labels], atol=1e-6)


def test_overflow_of_the_exp_form_fails_clearly_and_the_log_form_stays_finite():
    """The exp form's overflow is no host read in the step: the term is inf, and the loop's check at the epoch's end
    names NIR's fix (epoch_means: the terms of the first bad step)."""
    torch.manual_seed(0)
    base = proxy_loss("proxy_anchor", 2, 8)
    x, labels = 100.0 * unit(6, 8, 11), torch.tensor([0, 1] * 3)  # ||z||^2 / 2 far beyond exp's float32 range
    nir = NIR(embed_dim=8, **SMALL)
    term = nir(Batch(x, labels, x, x), base_loss=base)["nir"]
    assert not torch.isfinite(term)
    sums = {"base": [torch.tensor(0.5)] * 2, "nir": [torch.tensor(1.0), term], "loss": [torch.tensor(1.5), term]}
    expected = r"epoch 3 step 1 \(base=0.5, nir=inf\); NIR's .*nir.form=log_mean_exp"
    with pytest.raises(NonFiniteLossError, match=expected):
        epoch_means(sums, epoch=3, step0=20, hints=nir.non_finite_hints)
    torch.manual_seed(0)
    stable = NIR(embed_dim=8, form="log_mean_exp", **SMALL)(Batch(x, labels, x, x), base_loss=base)["nir"]
    assert torch.isfinite(stable) and stable > 88


def test_bad_settings_fail_at_construction():
    for bad, match in [
        (dict(form="log"), "form"),
        (dict(multi_proxy="first"), "multi_proxy"),
        (dict(weight=-1.0), "weight"),
        (dict(clamp=0.0), "clamp"),
    ]:
        with pytest.raises(ConfigError, match=match):
            NIR(embed_dim=8, **bad)
    with pytest.raises(ConfigError, match="embed_dim"):
        NIR(embed_dim=8, **SMALL).check_compatible(proxy_loss("proxy_anchor", 3, 16))


# ----------------------------------------------------------------------------------------------- real runs
@functools.cache
def is_proxy_based(loss_name: str) -> bool:
    cfg = compose_cfg([f"loss={loss_name}"])
    with_facts = complete_config(cfg, instantiate(cfg.dataset, _convert_="all"))
    return instantiate(with_facts.loss).is_proxy_based


def test_the_error_message_names_every_proxy_based_loss_of_conf_loss():
    named = {s.strip() for s in PROXY_LOSSES.replace(" or ", ", ").split(",")}
    assert named == {name for name in group_options("loss") if is_proxy_based(name)}


@pytest.mark.parametrize("loss", group_options("loss"))
def test_nir_trains_with_every_proxy_loss_and_refuses_every_pair_loss(loss, results):
    cfg = tiny([f"loss={loss}", "regularizer=nir", *FAST_RUN], results)
    if not is_proxy_based(loss):
        with pytest.raises(ConfigError, match="proxy_anchor, proxy_nca, normalized_softmax, soft_triple or arcface"):
            run(cfg)
        # refused by build (the loss must be built to know): a failed record, nothing that looks finished
        assert {RunDir.at(p.parent).record()["status"] for p in results.rglob("record.json")} <= {"failed"}
        return
    record = run(cfg)
    assert record["status"] == "finished"
    row = records.read_epochs(record["run_dir"])[-1]
    assert math.isfinite(row["train/nir"]) and row["train/nir"] > 0
    assert row["lr/nir"] == pytest.approx(cfg.optimizer.lr * cfg.regularizer.nir.lr_mult)


def test_nir_and_antico_in_one_run(results):
    cfg = tiny(["loss=proxy_anchor", "regularizer=[antico_pair,nir]", *FAST_RUN], results)
    record = run(cfg)
    assert record["status"] == "finished" and record["regularizer"] == "antico_pair+nir"
    row = records.read_epochs(record["run_dir"])[-1]
    assert math.isfinite(row["train/nir"]) and math.isfinite(row["train/antico_pair.coding_rate"])
    assert row["train/loss"] == pytest.approx(
        row["train/base"] + row["train/nir"] + row["train/antico_pair.coding_rate"], rel=1e-5
    )
