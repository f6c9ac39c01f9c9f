"""The general options the paper presets need, each usable by any run (issue 13):

BatchNorm modes, the head's initialisation, proxy initialisation and per-group weight decay, Proxy Anchor's
averaging of its positive term, samplers with replacement and class-agnostic batches, gradient clipping by
value, timm pretrained tags with a local weights file.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from pytorch_metric_learning import losses

from harness.data.samplers import MPerClassBatchSampler, RandomBatchSampler
from harness.errors import ConfigError
from harness.losses import MetricLoss
from harness.losses.proxy_anchor import ProxyAnchorLoss
from harness.models import EmbeddingModel
from harness.models.backbones import timm_backbone
from harness.models.batchnorm_modes import EvalStatsBatchNorm2d


# ------------------------------------------------------------------------------------- BatchNorm modes
def bn_state(model):
    return {k: v.clone() for k, v in model.backbone.state_dict().items() if "bn" in k}


def one_sgd_step(model, x):
    model.train()
    out = model(x)
    torch.optim.SGD(model.parameters(), lr=0.1).zero_grad()
    out.sum().backward()
    torch.optim.SGD(model.parameters(), lr=0.1).step()
    return out


def test_batchnorm_eval_keeps_statistics_but_trains_the_affine_weights():
    torch.manual_seed(0)
    model = EmbeddingModel(timm_backbone("resnet18", batchnorm="eval", in_chans=3), embed_dim=8)
    bn = model.backbone.bn1
    assert isinstance(bn, EvalStatsBatchNorm2d) and isinstance(bn, torch.nn.BatchNorm2d)
    assert {"weight", "bias"} <= set(dict(bn.named_parameters()))
    before = bn_state(model)
    x = torch.randn(4, 3, 32, 32)
    model.train()
    assert not bn.training and model.backbone.training  # model.train() cannot switch it back
    train_out = one_sgd_step(model, x)
    after = model.backbone.state_dict()
    stats = [k for k in before if "running" in k or "num_batches" in k]
    affine = [k for k in before if k.endswith(("weight", "bias"))]
    assert stats and all(torch.equal(before[k], after[k]) for k in stats)  # running statistics untouched
    assert any(not torch.equal(before[k], after[k]) for k in affine)  # affine weights trained
    with torch.no_grad():
        model.eval()
        eval_out = model(x)
        model.train()
        torch.testing.assert_close(model(x), eval_out)  # eval-mode statistics in training too
    assert set(model.state_dict()) == set(EmbeddingModel(timm_backbone("resnet18", in_chans=3), 8).state_dict())
    assert train_out.shape == (4, 8)


def test_batchnorm_frozen_fixes_statistics_and_affine_and_train_updates_both():
    torch.manual_seed(0)
    x = torch.randn(4, 3, 32, 32)
    frozen = EmbeddingModel(timm_backbone("resnet18", batchnorm="frozen", in_chans=3), embed_dim=8)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in frozen.modules())
    before = bn_state(frozen)
    one_sgd_step(frozen, x)
    assert all(torch.equal(v, frozen.backbone.state_dict()[k]) for k, v in before.items())
    legacy = timm_backbone("resnet18", frozen_bn=True, in_chans=3)  # the older spelling still works
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in legacy.modules())

    trained = EmbeddingModel(timm_backbone("resnet18", batchnorm="train", in_chans=3), embed_dim=8)
    before = bn_state(trained)
    one_sgd_step(trained, x)
    assert not torch.equal(before["bn1.running_mean"], trained.backbone.state_dict()["bn1.running_mean"])
    with pytest.raises(ConfigError, match="batchnorm='stats' is unknown"):
        timm_backbone("resnet18", batchnorm="stats", in_chans=3)


# ------------------------------------------------------------------------------------- head initialisation
def test_head_init_kaiming_fan_out_has_its_variance_and_zero_bias():
    torch.manual_seed(0)
    model = EmbeddingModel(timm_backbone("resnet18", in_chans=3), embed_dim=256, init="kaiming_normal_fan_out")
    w = model.head.weight
    assert torch.count_nonzero(model.head.bias) == 0
    assert w.std().item() == pytest.approx(math.sqrt(2.0 / w.shape[0]), rel=0.05)  # gain sqrt(2) over fan-out 256
    default = EmbeddingModel(timm_backbone("resnet18", in_chans=3), embed_dim=256)
    assert default.head.weight.abs().max().item() <= 1 / math.sqrt(w.shape[1]) + 1e-6  # nn.Linear's uniform bound
    with pytest.raises(ConfigError, match="head.init"):
        EmbeddingModel(timm_backbone("resnet18", in_chans=3), embed_dim=8, init="xavier")


# ------------------------------------------------------------------------------------- proxies
def test_proxy_init_std_draws_normal_proxies_and_weight_decay_enters_the_group():
    torch.manual_seed(0)
    loss = MetricLoss(
        "proxy_anchor",
        ProxyAnchorLoss(num_classes=400, embedding_size=64),
        proxy_init_std=0.125,
        weight_decay=0.0,
        lr_mult=4000,
    )
    p = loss.proxies
    assert p.mean().abs().item() < 0.01 and p.std().item() == pytest.approx(0.125, rel=0.02)
    (group,) = loss.param_groups()
    assert group["weight_decay"] == 0.0 and group["lr_mult"] == 4000
    assert "weight_decay" not in MetricLoss("pa", ProxyAnchorLoss(num_classes=4, embedding_size=8)).param_groups()[0]
    with pytest.raises(ConfigError, match="proxy_init_std"):
        MetricLoss("ms", losses.MultiSimilarityLoss(), proxy_init_std=0.125)
    with pytest.raises(ConfigError, match="weight_decay"):
        MetricLoss("pa", ProxyAnchorLoss(num_classes=4, embedding_size=8), weight_decay=-1)


def brute_proxy_anchor(emb, labels, proxies, alpha, delta, per_sample):
    e = torch.nn.functional.normalize(emb, dim=1).tolist()
    p = torch.nn.functional.normalize(proxies, dim=1).tolist()
    labels = labels.tolist()
    cos = lambda u, v: sum(a * b for a, b in zip(u, v))  # noqa: E731
    pos_terms = {}
    for c in sorted(set(labels)):
        pos_terms[c] = math.log(
            1 + sum(math.exp(-alpha * (cos(e[i], p[c]) - delta)) for i in range(len(e)) if labels[i] == c)
        )
    neg = [
        math.log(1 + sum(math.exp(alpha * (cos(e[i], p[c]) + delta)) for i in range(len(e)) if labels[i] != c))
        for c in range(len(p))
    ]
    pos = (sum(pos_terms[y] for y in labels) / len(labels)) if per_sample else sum(pos_terms.values()) / len(pos_terms)
    return pos + sum(neg) / len(neg)


@pytest.mark.parametrize("average", ["proxies", "samples"])
def test_proxy_anchor_positive_average_matches_brute_force(average):
    g = torch.Generator().manual_seed(4)
    labels = torch.tensor([2, 2, 2, 2, 0, 0, 5, 5, 1, 1])  # class 2 drawn twice (4 samples)
    emb = torch.randn(len(labels), 6, generator=g, dtype=torch.float64)
    loss = ProxyAnchorLoss(
        num_classes=7, embedding_size=6, alpha=16, margin=0.1, average_positives_over=average
    ).double()
    expected = brute_proxy_anchor(emb, labels, loss.proxies.detach(), 16, 0.1, average == "samples")
    assert loss(emb, labels).item() == pytest.approx(expected, rel=1e-12)
    even = labels[4:]  # every class twice: the two averages agree
    values = {
        a: ProxyAnchorLoss(num_classes=7, embedding_size=6, average_positives_over=a).double()
        for a in ("proxies", "samples")
    }
    values["samples"].load_state_dict(values["proxies"].state_dict())
    assert values["samples"](emb[4:], even).item() == pytest.approx(values["proxies"](emb[4:], even).item(), rel=1e-12)
    with pytest.raises(ConfigError, match="average_positives_over"):
        ProxyAnchorLoss(num_classes=3, embedding_size=4, average_positives_over="classes")


# ------------------------------------------------------------------------------------- samplers
LABELS = np.repeat(np.arange(12), [5, 5, 5, 5, 4, 4, 4, 3, 3, 2, 2, 2])


def test_sampler_with_replacement_draws_classes_and_samples_like_the_authors():
    s = MPerClassBatchSampler(
        LABELS, m=2, batch_size=20, batches_per_epoch=400, seed=3, class_replacement=True, sample_replacement=True
    )
    s.set_epoch(1)
    batches = list(s)
    assert len(batches) == 400 and all(len(b) == 20 for b in batches)
    repeated_class = repeated_sample = 0
    for b in batches:
        pairs = [b[i : i + 2] for i in range(0, 20, 2)]
        assert all(LABELS[x] == LABELS[y] for x, y in pairs)  # m samples of one class per draw
        classes = [LABELS[x] for x, _ in pairs]
        repeated_class += len(set(classes)) < len(classes)
        repeated_sample += any(x == y for x, y in pairs)
    assert repeated_class > 300 and repeated_sample > 100  # 10 draws of 12 classes; pairs of <= 5
    s.set_epoch(1)
    assert list(s) == batches  # a pure function of (seed, epoch)
    s.set_epoch(2)
    assert list(s) != batches


def test_sampler_sample_replacement_serves_small_classes_and_keeps_classes_distinct():
    with pytest.raises(ConfigError, match="fewer than sampler.m=5"):
        MPerClassBatchSampler(LABELS, m=5, batch_size=20)
    s = MPerClassBatchSampler(LABELS, m=5, batch_size=20, seed=0, sample_replacement=True)
    s.set_epoch(0)
    for b in s:
        classes = [LABELS[b[i]] for i in range(0, 20, 5)]
        assert len(set(classes)) == 4 and all(len({LABELS[x] for x in b[i : i + 5]}) == 1 for i in range(0, 20, 5))


def test_random_batches_are_a_seeded_permutation_dropping_the_last():
    s = RandomBatchSampler(LABELS, batch_size=7, seed=5)
    s.set_epoch(3)
    batches = list(s)
    assert len(batches) == len(LABELS) // 7 and all(len(b) == 7 for b in batches)
    flat = [i for b in batches for i in b]
    assert len(set(flat)) == len(flat)  # no sample twice in an epoch
    s.set_epoch(3)
    assert list(s) == batches
    s.set_epoch(4)
    assert list(s) != batches
    longer = RandomBatchSampler(LABELS, batch_size=7, batches_per_epoch=20, seed=5)
    assert len(list(longer)) == 20
    with pytest.raises(ConfigError, match="batch_size"):
        RandomBatchSampler(LABELS, batch_size=500)


# ------------------------------------------------------------------------------------- through the run's own build
def build_preset(preset: str, *overrides):
    """A paper preset's optimizer and model, built by harness.training.build on a small fake split (ResNet-18 stands in
    for the pretrained ResNet-50, no download)."""
    from conftest import compose_cfg

    from harness.config import complete_config
    from harness.data.base import ArrayDataset, DMLData, EvalSet
    from harness.training.build import build_model, build_optimizer, build_regularizers, instantiate

    cfg = compose_cfg([f"experiment={preset}", "backbone.model_name=resnet18", "backbone.pretrained=false", *overrides])
    fake = ArrayDataset(torch.zeros(20, 3, 8, 8), np.repeat(np.arange(10), 2))
    cfg = complete_config(cfg, DMLData("fake", fake, EvalSet(fake), EvalSet(fake)))
    model = build_model(cfg)
    loss = instantiate(cfg.loss)
    regularizers = build_regularizers(cfg.get("regularizer"), loss)
    return cfg, model, loss, build_optimizer(cfg.optimizer, model, loss, regularizers, cfg.lr_mult)


@pytest.mark.parametrize("preset", ["cub_nir", "cub_antico", "cub_metrix"])
def test_presets_weight_decay_per_group_and_coupled_l2(preset):
    cfg, model, loss, optimizer = build_preset(preset)
    groups = {g["name"]: g for g in optimizer.param_groups}
    assert type(optimizer) is torch.optim.Adam  # coupled L2: Adam adds wd * w to the gradient (AdamW decouples)
    wd = float(cfg.optimizer.weight_decay)
    assert groups["backbone"]["weight_decay"] == groups["head"]["weight_decay"] == wd
    if preset != "cub_metrix":
        assert groups["loss"]["weight_decay"] == 0.0 and groups["loss"]["lr"] == pytest.approx(
            wd and cfg.optimizer.lr * cfg.loss.lr_mult
        )
        assert loss.proxies.std().item() == pytest.approx(0.125, rel=0.2)  # randn / 8 (80 numbers at this size)
    if preset == "cub_nir":
        assert groups["nir"]["weight_decay"] == 0.0 and groups["nir"]["lr"] == pytest.approx(1e-5 * 50)
    if preset == "cub_metrix":
        assert torch.count_nonzero(model.head.bias) == 0  # kaiming_normal_fan_out head
    bn = [m for m in model.backbone.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert bn and all(isinstance(m, EvalStatsBatchNorm2d) for m in bn)


def test_adamw_decouples_and_adam_couples_the_decay():
    """One step from a zero gradient: Adam's coupled L2 moves the weight by lr (the normalised wd * w), AdamW by
    lr * wd * w."""
    for cls, expected in ((torch.optim.Adam, 1.0 - 0.1), (torch.optim.AdamW, 1.0 - 0.1 * 0.5 * 1.0)):
        w = torch.nn.Parameter(torch.ones(1))
        opt = cls([{"params": [w], "weight_decay": 0.5}], lr=0.1)
        w.grad = torch.zeros(1)
        opt.step()
        assert w.item() == pytest.approx(expected, rel=1e-4), cls.__name__


def test_gradient_clipping_by_value_and_by_norm():
    from harness.training.step import clip_gradients

    def grads():
        p = torch.nn.Parameter(torch.zeros(3))
        p.grad = torch.tensor([30.0, -0.5, -40.0])
        return p

    p = grads()
    clip_gradients([p], 10.0, "value")
    assert p.grad.tolist() == [10.0, -0.5, -10.0]
    p = grads()
    clip_gradients([p], 10.0, "norm")
    assert p.grad.norm().item() == pytest.approx(10.0, rel=1e-5) and p.grad[1] < 0


def test_bad_clip_settings_fail_before_the_run():
    from conftest import compose_cfg

    from harness.config import validate_config

    with pytest.raises(ConfigError, match="grad_clip_mode=elementwise"):
        validate_config(compose_cfg(["trainer.grad_clip=1", "trainer.grad_clip_mode=elementwise"]))
    with pytest.raises(ConfigError, match="grad_clip=-1"):
        validate_config(compose_cfg(["trainer.grad_clip=-1"]))


def test_test_every_epoch_records_the_best_test_epoch_beside_the_validation_choice(tmp_path):
    from conftest import tiny

    import harness
    from harness.rundir import records

    over = [
        "eval.test_every_epoch=true",
        "selection.metric=recall@1",
        "trainer.grad_clip=0.05",
        "trainer.grad_clip_mode=value",
        "sampler=random",
        "sampler.batch_size=30",
    ]
    record = harness.run(tiny(over, tmp_path / "a", epochs=4))
    rows = records.read_epochs(record["run_dir"])[1:]
    test_r1 = [r["test/recall@1"] for r in rows]
    best = max(range(len(rows)), key=lambda i: (test_r1[i], -i))
    assert record["test_best/epoch"] == rows[best]["epoch"] and record["test_best/optimistic"] is True
    assert record["test_best/recall@1"] == test_r1[best] == max(test_r1)
    assert record["test_best/map@r"] == rows[best]["test/map@r"]
    # the selection itself is unchanged: validation picks the epoch, test/* is that epoch's
    plain = harness.run(tiny(over[1:], tmp_path / "b", epochs=4))
    assert record["selected_epoch"] == plain["selected_epoch"] and record["test/recall@1"] == plain["test/recall@1"]
    assert not any(k.startswith("test_best/") for k in plain)


def test_timm_pretrained_tag_with_a_local_weights_file(tmp_path):
    """The seeds' weights are a timm tag (resnet50.tv_in1k); offline, the same tag loads a saved state dict."""
    import timm

    torch.manual_seed(3)
    source = timm.create_model("resnet18.tv_in1k", pretrained=False)  # stands in for pretrained=True
    torch.save(source.state_dict(), tmp_path / "resnet18_tv.pth")
    model = timm_backbone("resnet18.tv_in1k", weights=str(tmp_path / "resnet18_tv.pth"), batchnorm="eval", in_chans=3)
    assert model.pretrained_cfg["tag"] == "tv_in1k"
    assert torch.equal(model.conv1.weight, source.conv1.weight) and torch.equal(
        model.bn1.running_var, source.bn1.running_var
    )
    assert isinstance(model.bn1, EvalStatsBatchNorm2d)
    with pytest.raises(ConfigError, match="both set"):
        timm_backbone("resnet18.tv_in1k", pretrained=True, weights=str(tmp_path / "resnet18_tv.pth"), in_chans=3)
