"""No host read of the harness's own in the training step (issue 26): a step on the CPU under a TorchDispatchMode
(harness.bench.host_reads) counts the ops that read the device from the host or have data-dependent shapes
(``_local_scalar_dense``, ``nonzero``, ``unique``, ``masked_select``, boolean indexing, device-to-host copies,
``tolist``/``numpy``/``cpu()``) and charges each to its owner. Against the explicit allowlist (PML's miners and
reducers, the optimizer's step counter, Metrix's CPU draw and its one list of mixtures, the epoch's one read at its
end) the harness's own count is 0 for every base-loss family and every regularizer. The allowlist is printed."""

from __future__ import annotations

import pytest
import torch
from conftest import compose_cfg, group_options

from harness.bench.host_reads import ALLOWLIST, count_host_reads
from harness.config import complete_config, instantiate
from harness.training.build import build, build_optimizer, build_regularizers
from harness.training.fit import Plan
from harness.training.step import Step, train_one_epoch

PROXY_LOSS = "proxy_anchor"  # for the regularizers that need proxies (NIR)


@pytest.fixture(scope="module")
def digits():
    """The digits data, model and sampler, built once; each case swaps in its loss and regularizers."""
    return build(compose_cfg(["sampler.batches_per_epoch=2", "trainer.device=cpu"]))


def counted_epoch(parts, overrides):
    cfg = complete_config(compose_cfg([*overrides, "sampler.batches_per_epoch=2", "trainer.device=cpu"]), parts.data)
    loss = instantiate(cfg.loss)
    regularizers = build_regularizers(cfg.get("regularizer"), loss)
    optimizer = build_optimizer(cfg.optimizer, parts.model, loss, regularizers, cfg.lr_mult)
    step = Step.of(parts, Plan.from_config(cfg))
    step.loss, step.regularizers, step.optimizer = loss, regularizers, optimizer
    step.__post_init__()  # the regularizers' reads and hints
    parts.sampler.set_epoch(1)
    with count_host_reads() as reads:
        train_one_epoch(step, parts.loader, 1)
    return reads


CASES = [[f"loss={name}", "regularizer=none"] for name in group_options("loss")]
SMALL_FLOW = ["regularizer.nir.blocks=2", "regularizer.nir.depth=2", "regularizer.nir.width=16"]  # the same code
CASES += [
    [f"regularizer={name}", f"loss={PROXY_LOSS if name == 'nir' else 'multi_similarity'}"]
    + (SMALL_FLOW if name == "nir" else [])
    for name in group_options("regularizer")
    if name != "none"
]
CASES += [["regularizer=antico_batch_proxy", f"loss={PROXY_LOSS}"]]
CASES += [["regularizer=metrix_embedding", "loss=contrastive"]]
CASES += [["loss=proxy_anchor", "loss.loss.average_positives_over=samples"]]


@pytest.mark.parametrize("overrides", CASES, ids=[" ".join(c) for c in CASES])
def test_the_harness_reads_nothing_from_the_device_in_the_step(digits, overrides):
    reads = counted_epoch(digits, overrides)
    print(f"\n{' '.join(overrides)}\n{reads.table()}")
    own = reads.harness_own()
    assert not own, "\n".join(f"{owner} {op} x{n}:\n{reads.examples[(owner, op)]}" for (owner, op), n in own.items())
    assert reads.counts[("harness.training.step:epoch_means", "tolist")] == 1  # the epoch's one read, at its end


def planted(x: torch.Tensor) -> None:
    """Host reads of every kind the counter claims to see."""
    float(x.detach().sum())  # _local_scalar_dense
    (x > 2).nonzero()
    _ = x[x > 2]  # boolean index
    x.tolist()


def test_the_counter_sees_what_it_claims_and_the_allowlist_is_printed(capsys):
    """Planted reads are charged to the function that made them (a test that could not fail would prove nothing)."""
    x = torch.arange(6.0, requires_grad=True)
    with count_host_reads(trace_backward=True) as reads:
        planted(x)
        (x[x > 2] ** 2).sum().backward()  # the backward's index_put_ is charged to the forward line that built it
    unexpected = reads.unexpected()
    for op in ("_local_scalar_dense", "nonzero", "index", "tolist"):
        assert unexpected[("test_host_reads.py:planted", op)] >= 1, (op, reads.table())
    assert any(op.startswith("index_put") for (owner, op) in unexpected if "counter_sees" in owner), reads.table()
    print("\nthe allowlist:")
    for entry in ALLOWLIST:
        print(f"  {entry.op:20s} {entry.owner}: {entry.why}")
    assert "the optimizer's step counter" in capsys.readouterr().out
