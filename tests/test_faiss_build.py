"""faiss's CPU and GPU builds are mutually exclusive choices, and a run can say which one it searches with."""

from __future__ import annotations

import configparser
import subprocess

import faiss
from conftest import REPO

from harness.evaluation.faiss_build import FaissBuild, faiss_build


def test_the_cpu_and_gpu_builds_are_two_extras_and_neither_is_required():
    cfg = configparser.ConfigParser()
    cfg.read(REPO / "setup.cfg")
    required = cfg["options"]["install_requires"]
    extras = cfg["options.extras_require"]
    assert "faiss" not in required
    assert extras["cpu"].split() == ["faiss-cpu>=1.8"] and extras["gpu"].split() == ["faiss-gpu-cu12>=1.8"]
    # make install keeps faiss-cpu; FAISS=gpu removes both builds before installing the GPU one
    cpu = subprocess.run(["make", "-n", "install", "VENV=/nonexistent"], cwd=REPO, capture_output=True, text=True)
    gpu = subprocess.run(
        ["make", "-n", "install", "FAISS=gpu", "VENV=/nonexistent"], cwd=REPO, capture_output=True, text=True
    )
    assert "pip install -e '.[cpu]'" in cpu.stdout and "uninstall -y -q faiss-cpu faiss-gpu-cu12" in gpu.stdout
    assert "pip install -e '.[gpu]'" in gpu.stdout and "show -q faiss-cpu" in gpu.stdout


def test_the_installed_build_is_described_and_a_double_install_names_its_repair():
    build = faiss_build()
    assert build.version == faiss.__version__ and build.gpu_build == hasattr(faiss, "StandardGpuResources")
    line = build.describe()
    assert line.startswith(f"faiss {faiss.__version__} (") and line.endswith(f"run on the {build.searches_on}")
    assert "\n" not in line and build.conflict is None  # this environment has one build
    both = FaissBuild(version="1.9", gpu_build=True, gpus=2, distributions=("faiss-cpu", "faiss-gpu-cu12"))
    assert both.searches_on == "GPU" and "GPU build, 2 GPU(s) visible" in both.describe()
    assert both.conflict.endswith("pip uninstall -y faiss-cpu faiss-gpu-cu12 && pip install -e '.[gpu]'")
