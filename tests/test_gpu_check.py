"""make gpu-check's plumbing, as a dry run on the CPU (--device cpu --tiny): every section runs on tiny sizes and
lands in gpu.md / gpu.json; the harness's own host reads in the step are 0. No GPU number comes out of it."""

import json
import subprocess
import sys

from conftest import REPO

from harness.bench.gpu_check import SECTIONS


def test_gpu_check_dry_run_on_cpu_writes_every_section(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "harness.bench.gpu_check", "--device", "cpu", "--tiny", "--out", str(tmp_path)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    report = json.loads((tmp_path / "gpu.json").read_text())
    assert list(report["sections"]) == list(SECTIONS) and report["card"] is None and report["tiny"]
    for name, section in report["sections"].items():
        assert section["ok"], (name, section.get("error"))
    assert report["sections"]["host_syncs"]["harness_own"] == 0
    assert report["sections"]["resume"]["equal"] is True and report["sections"]["resume"]["attempts"] == 2
    text = (tmp_path / "gpu.md").read_text()
    assert "CPU (dry run of the plumbing: no GPU number)" in text
    assert all(f"## {name}" in text for name in SECTIONS)


def test_gpu_check_refuses_cuda_without_a_gpu(capsys):
    import pytest
    import torch

    from harness.bench.gpu_check import parse_args

    if torch.cuda.is_available():
        pytest.skip("a CUDA device is present")
    with pytest.raises(SystemExit) as exit_info:
        parse_args([])
    assert exit_info.value.code == 2 and "no CUDA device here" in capsys.readouterr().err
