"""Real multi-process runs for the data-parallel tests: N Python processes joined by gloo on localhost.

    run_ranks(target, n, out_dir, args)   starts ``python tests/dist_ranks.py <target> <out_dir> <args...>`` once
                                          per rank, with torchrun's variables (RANK, WORLD_SIZE, LOCAL_RANK,
                                          MASTER_ADDR, MASTER_PORT), and waits for all of them

``target`` is ``module:function``; the function runs in every rank as ``function(world, out_dir, *args)`` with the
process group joined (harness.distributed.init_world), and writes what the test compares under ``out_dir``.
"""

from __future__ import annotations

import importlib
import os
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

TESTS = Path(__file__).resolve().parent
REPO = TESTS.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class RankResult:
    rank: int
    returncode: int
    output: str


def run_ranks(target: str, n: int, out_dir: Path, args=(), timeout: float = 240, env: dict | None = None) -> list:
    """Start n ranks of ``target`` and wait for all of them; returns each rank's exit code and output."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    procs, logs = [], []
    for rank in range(n):
        rank_env = dict(
            os.environ,
            **(env or {}),
            RANK=str(rank),
            WORLD_SIZE=str(n),
            LOCAL_RANK=str(rank),
            MASTER_ADDR="127.0.0.1",
            MASTER_PORT=str(port),
            OMP_NUM_THREADS="1",
            PYTHONPATH=os.pathsep.join([str(TESTS), str(REPO), os.environ.get("PYTHONPATH", "")]),
        )
        log = open(out_dir / f"rank{rank}.log", "w+")
        procs.append(
            subprocess.Popen(
                [sys.executable, str(TESTS / "dist_ranks.py"), target, str(out_dir), *map(str, args)],
                cwd=REPO,
                env=rank_env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        )
        logs.append(log)
    deadline = time.time() + timeout
    try:
        for p in procs:
            p.wait(timeout=max(deadline - time.time(), 1))
    except subprocess.TimeoutExpired:
        for p in procs:
            p.kill()
        for p in procs:
            p.wait()
    results = []
    for rank, (p, log) in enumerate(zip(procs, logs)):
        log.seek(0)
        results.append(RankResult(rank, p.returncode, log.read()))
        log.close()
    return results


def main() -> None:
    from harness.distributed import close_world, init_world, launch_from_env

    target, out_dir, *args = sys.argv[1:]
    module, function = target.split(":")
    world = init_world(launch_from_env(), "cpu", timeout_s=float(os.environ.get("DIST_TIMEOUT_S", "60")))
    try:
        getattr(importlib.import_module(module), function)(world, Path(out_dir), *args)
    finally:
        close_world(world)


if __name__ == "__main__":
    main()
