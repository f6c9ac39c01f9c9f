"""The knobs a GPU user expects, checked on the CPU: in-memory data on the run's device, TF32 (with the coding
rate kept in full float32), prefetch, compile over the head; each recorded, none changing the run identity at its
default, bad values refused in one line before anything is built."""

from __future__ import annotations

import pytest
import torch
from conftest import tiny

from harness.config import validate_config
from harness.data.base import InMemoryLoader
from harness.errors import ConfigError
from harness.regularizers.coding_rate import coding_rate
from harness.rundir import RunDir, identity
from harness.runtime import pick_matmul_precision, runtime_settings
from harness.training.build import build


@pytest.mark.parametrize(
    "override, message",
    [
        ("trainer.float32_matmul_precision=tf32", "trainer.float32_matmul_precision=tf32 must be one of"),
        ("trainer.prefetch_factor=0", "trainer.prefetch_factor=0 must be an integer >= 1"),
        ("dataset.on_device=gpu", "dataset.on_device='gpu' must be auto"),
    ],
)
def test_bad_values_are_one_line_before_anything_is_built(override, message):
    with pytest.raises(ConfigError, match=message):
        validate_config(tiny([override]))


def test_knobs_at_their_defaults_and_the_device_placement_leave_the_identity_alone():
    base = RunDir.for_config(tiny())
    assert RunDir.for_config(tiny(["dataset.on_device=true", "trainer.prefetch_factor=4"])).digest == base.digest
    semantic = identity.semantic_config(tiny())
    assert "float32_matmul_precision" not in semantic["trainer"]  # a new knob at its default: hashed as before
    assert (
        "float32_matmul_precision"
        in identity.semantic_config(tiny(["trainer.float32_matmul_precision=high"]))["trainer"]
    )  # another value changes a GPU run's numbers: another run


def test_in_memory_data_on_the_device_yields_the_same_batches_and_is_recorded():
    """dataset.on_device=true on the CPU: the same loader path a GPU takes (indices from the host sampler, one copy
    per chunk, the gather on the device), the same batches; the record says where the data lived."""
    on = build(tiny(["dataset.on_device=true"]))
    settings = runtime_settings(on.device)
    assert settings["runtime/data_on_device"] is True and settings["runtime/float32_matmul_precision"] == "highest"
    off = build(tiny(["dataset.on_device=false"]))
    assert runtime_settings(off.device)["runtime/data_on_device"] is False
    assert isinstance(on.loader, InMemoryLoader) and on.loader.device == torch.device("cpu")
    assert off.loader.device is None
    for parts in (on, off):
        parts.sampler.set_epoch(1)
    for (x, y), (xo, yo) in zip(on.loader, off.loader, strict=True):
        assert torch.equal(x, xo) and torch.equal(y, yo)


def test_matmul_precision_auto_is_tf32_on_cuda_only_and_the_coding_rate_stays_full_float32():
    assert pick_matmul_precision("auto", torch.device("cuda")) == "high"
    assert pick_matmul_precision("auto", torch.device("cpu")) == "highest"
    z = torch.nn.functional.normalize(torch.randn(90, 512, generator=torch.Generator().manual_seed(0)), dim=1)
    before = torch.get_float32_matmul_precision()
    try:
        torch.set_float32_matmul_precision("highest")
        exact, gram = coding_rate(z), z @ z.T
        torch.set_float32_matmul_precision("medium")  # bf16 passes where the CPU has them (as TF32 on a GPU)
        assert torch.equal(coding_rate(z), exact)
        assert torch.get_float32_matmul_precision() == "medium"  # the caller's setting is left as it was
        print("plain product under 'medium' differs from full float32 by", float((z @ z.T - gram).abs().max()))
    finally:
        torch.set_float32_matmul_precision(before)


def test_compile_covers_the_backbone_and_the_embedding_head():
    parts = build(tiny(["trainer.compile=true"]))
    for half in ("features", "embed"):  # the two calls of the training step and of Metrix
        assert hasattr(getattr(parts.model, half), "_torchdynamo_orig_callable"), half
    assert runtime_settings(parts.device)["runtime/compile"] == "backbone+head"
