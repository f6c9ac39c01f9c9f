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


def test_in_memory_data_on_the_device_and_compile_over_the_head_are_applied_and_recorded():
    """dataset.on_device=true on the CPU: the same loader path a GPU takes (indices from the host sampler, one copy
    per chunk, the gather on the device), the same batches; trainer.compile wraps both halves of the model (the
    step's and Metrix's two calls); the record says what was applied."""
    on = build(tiny(["dataset.on_device=true", "trainer.compile=true"]))
    settings = runtime_settings(on.device)
    assert settings["runtime/data_on_device"] is True and settings["runtime/float32_matmul_precision"] == "highest"
    assert settings["runtime/compile"] == "backbone+head"
    for half in ("features", "embed"):
        assert hasattr(getattr(on.model, half), "_torchdynamo_orig_callable"), half
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


def test_decode_on_device_reads_bytes_and_decodes_each_batch_where_the_run_trains(tmp_path):
    """trainer.decode_on_device on the CPU (the same code path as nvJPEG on a GPU: torchvision.io.decode_jpeg with a
    device): batches of the training transform's size and range; the CPU path unchanged; another identity."""
    from harness.bench.pipeline import write_cub_tree
    from harness.data.device_decode import DeviceDecodingLoader

    tree = write_cub_tree(tmp_path / "cub", classes=6, per_class=4, size=(60, 45))
    images = ["dataset=cub200", f"dataset.root={tree}", "dataset.val_fraction=0.34", "backbone=small_cnn",
              "dataset.transform.size=16", "dataset.transform.resize=18", "sampler.m=2", "sampler.batch_size=4",
              "sampler.batches_per_epoch=2", "head.embed_dim=8", "trainer.device=cpu"]  # fmt: skip
    on, off = build(tiny([*images, "trainer.decode_on_device=true"])), build(tiny(images))
    assert isinstance(on.loader, DeviceDecodingLoader) and not isinstance(off.loader, DeviceDecodingLoader)
    (x, y), (xo, yo) = next(iter(on.loader)), next(iter(off.loader))
    assert x.shape == xo.shape == (4, 3, 16, 16) and x.dtype == xo.dtype == torch.float32 and torch.equal(y, yo)
    assert torch.isfinite(x).all() and abs(float(x.mean()) - float(xo.mean())) < 1.0  # both normalised alike
    assert runtime_settings(on.device)["runtime/data_on_device"] is False  # the last build noted its own settings
    assert (
        RunDir.for_config(tiny([*images, "trainer.decode_on_device=true"])).digest
        != RunDir.for_config(tiny(images)).digest
    )
