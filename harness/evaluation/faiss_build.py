"""Which faiss the searches run on: the CPU or the GPU build, its version, and the pip distribution behind it.

``faiss-cpu`` and ``faiss-gpu-cu12`` both install the ``faiss`` module, so whichever was installed last wins and
uninstalling the other deletes files of the winner. setup.cfg therefore offers them as two mutually exclusive
extras (as pytorch-metric-learning's ``with-hooks`` / ``with-hooks-cpu`` do): ``pip install -e '.[cpu]'`` (the
default of ``make install``) or ``pip install -e '.[gpu]'`` (``make install FAISS=gpu``). A run logs
``describe()`` at start-up and records it; two builds installed together are reported with the command that
repairs the environment.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from importlib import import_module
from importlib.metadata import PackageNotFoundError, version

from harness.errors import ConfigError

DISTRIBUTIONS = ("faiss-cpu", "faiss-gpu-cu12", "faiss-gpu-cu11", "faiss-gpu")
GPU_INSTALL = "make install FAISS=gpu (or: pip uninstall -y faiss-cpu && pip install -e '.[gpu]')"
INSTALL = f"pip install -e '.[cpu]', or on a CUDA host {GPU_INSTALL}"


def import_faiss():
    """The ``faiss`` module, or one line saying how to install it."""
    try:
        return import_module("faiss")
    except ImportError as err:
        raise ConfigError(f"faiss is not importable ({err}); install one build: {INSTALL}") from None


@dataclass(frozen=True)
class FaissBuild:
    version: str
    gpu_build: bool  # compiled with GPU support (faiss.StandardGpuResources exists)
    gpus: int  # GPUs faiss can see (0 for the CPU build)
    distributions: tuple  # the pip distributions that installed a `faiss` module (one, normally)

    @property
    def searches_on(self) -> str:
        return "GPU" if self.gpu_build and self.gpus > 0 else "CPU"

    @property
    def conflict(self) -> str | None:
        """One line when several faiss distributions overwrite each other's module."""
        if len(self.distributions) < 2:
            return None
        keep = "gpu" if self.gpu_build else "cpu"
        return (
            f"{' and '.join(self.distributions)} are all installed and overwrite each other's `faiss` module; "
            f"keep one: pip uninstall -y {' '.join(self.distributions)} && pip install -e '.[{keep}]'"
        )

    def describe(self) -> str:
        dist = "+".join(self.distributions) or "not from pip"
        build = f"GPU build, {self.gpus} GPU(s) visible" if self.gpu_build else "CPU build"
        return f"faiss {self.version} ({dist}, {build}): exact searches run on the {self.searches_on}"


@functools.cache
def faiss_build() -> FaissBuild:
    faiss = import_faiss()
    installed = []
    for name in DISTRIBUTIONS:
        try:
            version(name)
            installed.append(name)
        except PackageNotFoundError:
            pass
    gpu_build = hasattr(faiss, "StandardGpuResources")
    gpus = int(faiss.get_num_gpus()) if gpu_build else 0
    return FaissBuild(
        version=str(getattr(faiss, "__version__", "?")), gpu_build=gpu_build, gpus=gpus, distributions=tuple(installed)
    )
