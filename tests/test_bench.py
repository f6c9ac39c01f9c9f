"""`python -m harness.bench --quick` runs and writes valid JSON and a summary (timings are never asserted)."""

import json
import subprocess
import sys

import pytest
import torch
from conftest import REPO, tiny
from hydra.utils import instantiate

from harness.config import complete_config
from harness.data.base import ArrayDataset, InMemoryLoader, collate_batch
from harness.data.samplers import MPerClassBatchSampler
from harness.training.build import build_loader

FAST = ("evaluation", "coding_rate", "training_loop")  # the subprocess-heavy ones (sweep, tables) run in make bench


@pytest.fixture(scope="module")
def bench(tmp_path_factory):
    out = tmp_path_factory.mktemp("bench")
    proc = subprocess.run(
        [sys.executable, "-m", "harness.bench", "--quick", "--only", ",".join(FAST), "--out", str(out)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
    )
    return proc, out


def test_quick_bench_exits_cleanly_with_equal_values(bench):
    proc, _ = bench
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]  # non-zero also when values differ


@pytest.mark.parametrize("name", FAST)
def test_each_benchmark_writes_figures_with_ratios_machine_and_versions(bench, name):
    _, out = bench
    result = json.loads((out / f"{name}.json").read_text())
    assert result["benchmark"] == name and result["quick"] is True and "error" not in result
    assert result["machine"]["cores"] >= 1 and result["versions"]["torch"]
    assert result["figures"]
    for fig in result["figures"]:
        assert fig["subject"] and fig["alternative"] and fig["subject"] != fig["alternative"]
        for key in ("subject_s", "alternative_s", "ratio", "speedup"):
            s = fig[key]
            assert 0 < s["min"] <= s["median"] <= s["max"], (fig["name"], key, s)
        assert fig["ratio"]["min"] == pytest.approx(1 / fig["speedup"]["max"], rel=1e-9)
        if "goal" in fig:
            assert isinstance(fig["meets_goal"], bool)
        # a warm-up round and at least 5 timed rounds; the load around them; noise marked where the spread crosses 1
        assert fig["rounds"] >= 5 and fig["ratio"]["n"] == fig["rounds"] and len(fig["load"]) == 2
        crosses = fig["ratio"]["min"] <= 1.0 <= fig["ratio"]["max"]
        below_floor = fig["against_floor"] and fig["ratio"]["median"] < 1.0
        assert fig["within_noise"] == (crosses or below_floor), fig["name"]


def test_evaluation_values_equal_pml(bench):
    _, out = bench
    result = json.loads((out / "evaluation.json").read_text())
    for check in result["checks"]:
        assert check["equal_1e-6"], check
        assert set(check["max_abs_diff"]) == {
            "recall@1",
            "recall@2",
            "recall@4",
            "recall@8",
            "r_precision",
            "map@r",
            "nmi",
        }
    assert all("peak_rss_mib" in m or "peak_traced_mib" in m for mem in result["memory"].values() for m in mem.values())


def test_summary_lists_every_benchmark_and_figure(bench):
    proc, out = bench
    summary = (out / "README.md").read_text()
    assert summary in proc.stdout  # printed too
    for name in FAST:
        result = json.loads((out / f"{name}.json").read_text())
        assert f"## {name} (quick)" in summary
        assert all(fig["name"] in summary for fig in result["figures"])
        for fig in result["figures"]:  # no ratio below its own floor without the mark
            row = next(line for line in summary.splitlines() if line.startswith(f"| {fig['name']} |"))
            assert ("*within noise*" in row) == fig["within_noise"], row
    assert "Last command: 3 benchmark(s) (--quick) in" in summary


def test_fewer_than_five_rounds_or_no_warm_up_is_refused():
    from harness.bench.common import interleave

    for kwargs in ({"repeats": 4}, {"warmup": 0}):
        with pytest.raises(ValueError, match="5 timed rounds"):
            interleave({"a": lambda: None}, **kwargs)


def test_unknown_benchmark_is_one_clear_error(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "harness.bench", "--only", "nonsense", "--out", str(tmp_path)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2 and "unknown benchmark nonsense" in proc.stderr
    assert not list(tmp_path.iterdir())


def test_in_memory_loader_yields_the_dataloaders_batches():
    """The training loader of in-memory splits (built for the training-loop benchmark's 5% goal) changes no batch."""
    cfg = tiny()
    data = instantiate(cfg.dataset, _convert_="all")
    cfg = complete_config(cfg, data)
    assert isinstance(data.train, ArrayDataset)
    sampler = MPerClassBatchSampler(
        data.train.labels, m=cfg.sampler.m, batch_size=cfg.sampler.batch_size, batches_per_epoch=37, seed=3
    )  # 37: chunks of 16 batches and a remainder
    ours = build_loader(data.train, sampler, int(cfg.trainer.num_workers), int(cfg.seed), torch.device("cpu"))
    reference = torch.utils.data.DataLoader(data.train, batch_sampler=sampler, collate_fn=collate_batch)
    assert isinstance(ours, InMemoryLoader) and len(ours) == 37
    for epoch in (1, 2):
        sampler.set_epoch(epoch)
        got = list(ours)
        sampler.set_epoch(epoch)
        expected = list(reference)
        assert len(got) == len(expected) == 37
        for (x, y), (xr, yr) in zip(got, expected):
            assert torch.equal(x, xr) and torch.equal(y, yr) and y.dtype == yr.dtype == torch.int64


def test_the_benchmarks_page_is_what_its_snapshot_renders():
    """docs/results/benchmarks.md's figures come from the committed JSON (python -m harness.bench --docs DIR), never
    typed by hand: the page equals its render."""
    from harness.bench.__main__ import DOCS_SNAPSHOT, docs

    assert list(DOCS_SNAPSHOT.glob("*.json"))
    assert docs(None, check=True) == 0
