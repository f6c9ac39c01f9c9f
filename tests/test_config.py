"""Every file of every config group composes and instantiates; `--help` lists the groups."""

import subprocess
import sys

import pytest
from conftest import REPO, compose_cfg, group_options
from hydra.utils import instantiate

GROUPS = [
    "dataset",
    "backbone",
    "loss",
    "regularizer",
    "optimizer",
    "scheduler",
    "sampler",
    "trainer",
    "eval",
    "logger",
]
CASES = [(g, o) for g in GROUPS for o in group_options(g)]


@pytest.mark.parametrize("group,option", CASES, ids=[f"{g}={o}" for g, o in CASES])
def test_every_group_file_composes(group, option):
    cfg = compose_cfg([f"{group}={option}"])
    assert group in cfg


@pytest.mark.parametrize("option", group_options("loss"))
def test_every_loss_instantiates_to_a_metric_loss(option):
    from harness.losses import MetricLoss

    cfg = compose_cfg([f"loss={option}"])
    node = cfg.loss.copy()
    for key, value in {"num_classes": 5, "embedding_size": 16}.items():
        if key in node.loss.keys():  # `in node.loss` is False for ??? values
            node.loss[key] = value
    loss = instantiate(node)
    assert isinstance(loss, MetricLoss) and loss.name == option
    assert loss.is_proxy_based == (loss.proxies is not None)
    if loss.is_proxy_based:
        assert loss.proxies.shape[1] == 16 and loss.proxy_labels.max().item() == 4


@pytest.mark.parametrize("option", group_options("optimizer"))
def test_every_optimizer_instantiates(option):
    import torch

    cfg = compose_cfg([f"optimizer={option}"])
    opt = instantiate(cfg.optimizer, _partial_=True)([torch.nn.Parameter(torch.zeros(2))])
    assert isinstance(opt, torch.optim.Optimizer)


def test_help_lists_the_config_groups():
    out = subprocess.run([sys.executable, "run.py", "--help"], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    for group in ["dataset", "backbone", "loss", "regularizer", "optimizer", "sampler"]:
        assert f"{group}:" in out.stdout
    assert "multi_similarity" in out.stdout and "proxy_anchor" in out.stdout


@pytest.mark.parametrize("option", [o for o in group_options("regularizer") if o != "none"])
def test_every_regularizer_instantiates_and_accepts_a_compatible_loss(option):
    from harness.config import complete_config
    from harness.regularizers.base import Regularizer
    from harness.training.build import build_regularizers

    cfg = compose_cfg([f"regularizer={option}", "loss=proxy_anchor"])
    cfg = complete_config(cfg, instantiate(cfg.dataset, _convert_="all"))  # the values the data decides
    loss = instantiate(cfg.loss)
    regularizers = build_regularizers(cfg.regularizer, loss)  # runs each one's check_compatible
    assert list(regularizers) == [option] and isinstance(regularizers[option], Regularizer)


@pytest.mark.parametrize("option", group_options("scheduler"))
def test_every_scheduler_instantiates(option):
    import torch

    cfg = compose_cfg([f"scheduler={option}"])
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(2))], lr=0.1)
    if not cfg.scheduler:  # scheduler=none (an empty file): a constant learning rate
        assert option == "none"
        return
    assert isinstance(instantiate(cfg.scheduler, optimizer=optimizer), torch.optim.lr_scheduler.LRScheduler)


@pytest.mark.parametrize("option", group_options("sampler"))
def test_every_sampler_instantiates_to_a_seeded_batch_sampler(option):
    import numpy as np

    cfg = compose_cfg([f"sampler={option}"])
    labels = np.repeat(np.arange(12), 20)
    sampler = instantiate(cfg.sampler, labels=labels, seed=0)
    sampler.set_epoch(1)
    first = list(sampler)
    sampler.set_epoch(1)
    assert list(sampler) == first and len(first) == len(sampler)  # a pure function of (seed, epoch)
    assert all(len(batch) == cfg.sampler.batch_size for batch in first)
