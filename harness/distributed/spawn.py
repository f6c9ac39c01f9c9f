"""``python run.py trainer.devices=N`` on one machine: run.py starts the N processes itself, as torchrun would.

The calling process is the agent: it starts N fresh interpreters (multiprocessing's ``spawn``; the config
travels through a pipe, nothing is read back from disk), each with torchrun's variables (RANK, WORLD_SIZE,
LOCAL_RANK, MASTER_ADDR=127.0.0.1, a free MASTER_PORT), and waits for all of them. When one fails, the others
notice through their next collective (gloo at once; a hung rank after the collective timeout) and stop on
their own, rank 0 writing the failed record; after ``grace_s`` whatever still runs is terminated. The agent then
raises the failure: the root cause (the first error that is not a lost peer), else the lost-peer line, else
which rank died and how.
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing as mp
import os
import pickle
import signal
import socket
import sys
import time
import traceback

from harness.distributed.world import RankLostError


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rank_env(rank: int, nprocs: int, port: int) -> dict:
    return dict(
        RANK=str(rank),
        WORLD_SIZE=str(nprocs),
        LOCAL_RANK=str(rank),
        LOCAL_WORLD_SIZE=str(nprocs),
        GROUP_RANK="0",
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(port),
    )


def _child(rank: int, nprocs: int, port: int, target, args: tuple, errors) -> None:
    os.environ.update(rank_env(rank, nprocs, port))
    try:
        target(*args)
    except BaseException as exc:  # noqa: BLE001 - reported to the agent, then this process exits non-zero
        simple = all(isinstance(a, (str, int, float, type(None))) for a in exc.args)
        payload = pickle.dumps(exc if simple else RuntimeError(f"{type(exc).__name__}: {exc}"))
        errors.put((rank, time.time(), payload))
        if not isinstance(exc, (RankLostError, KeyboardInterrupt)):
            traceback.print_exc()
        raise SystemExit(1) from None
    _exit_done()


def _exit_done() -> None:
    """A rank whose run is done (its files written atomically, its group left) exits without the interpreter's
    teardown: that teardown frees what gloo's threads may still hold, which can abort a finished rank (SIGABRT,
    "terminate called without an active exception"; seen in CI, rank 0 after it had written the finished record)."""
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


def run_processes(target, args: tuple, nprocs: int, grace_s: float = 120.0) -> None:
    """Run ``target(*args)`` in ``nprocs`` local processes joined as one world; raise if any of them failed."""
    ctx = mp.get_context("spawn")
    errors = ctx.SimpleQueue()
    port = free_port()
    procs = [
        ctx.Process(target=_child, args=(rank, nprocs, port, target, args, errors), name=f"rank{rank}")
        for rank in range(nprocs)
    ]
    for rank, p in enumerate(procs):  # each process starts with its variables (ps / /proc/<pid>/environ show them)
        with environment(rank_env(rank, nprocs, port)):
            p.start()
    first_failure = None
    try:
        while any(p.is_alive() for p in procs):
            for p in procs:
                p.join(timeout=0.2)
            if first_failure is None and any(p.exitcode not in (None, 0) for p in procs):
                first_failure = time.time()
            if first_failure is not None and time.time() - first_failure > grace_s:
                break
    except KeyboardInterrupt:  # the ranks got the same SIGINT: let them write their record, then stop them
        first_failure = first_failure or time.time()
        for p in procs:
            p.join(timeout=grace_s)
    finally:
        for p in procs:
            if p.is_alive():
                p.terminate()
        for p in procs:
            p.join()
    if all(p.exitcode == 0 for p in procs):
        return
    raise _failure(procs, errors)


@contextlib.contextmanager
def environment(values: dict):
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _failure(procs, errors) -> BaseException:
    reported = []
    while not errors.empty():
        rank, at, payload = errors.get()
        reported.append((at, rank, pickle.loads(payload)))
    reported.sort(key=lambda r: r[0])
    causes = [exc for _, _, exc in reported if not isinstance(exc, RankLostError)]
    if causes:
        return causes[0]
    died = [p for p in procs if p.exitcode not in (0, 1)]  # killed, or exited without reporting
    if died:
        p = died[0]
        how = f"signal {signal.Signals(-p.exitcode).name}" if p.exitcode < 0 else f"exit code {p.exitcode}"
        lost = f"; {reported[0][2]}" if reported else ""
        return RankLostError(f"{p.name} of {len(procs)} died ({how}){lost}")
    if reported:
        return reported[0][2]
    return RankLostError(f"the processes of this run failed (exit codes {[p.exitcode for p in procs]})")
