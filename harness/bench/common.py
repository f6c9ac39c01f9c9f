"""What every benchmark shares: interleaved timing, ratio figures with their spread, peak memory, the machine.

Absolute times on a shared machine drift, so every figure is a ratio against a named alternative measured in the
same run: after a warm-up round (allocations, caches, first-call compilation), each of at least ``MIN_ROUNDS``
rounds times the subject and its alternatives back to back (the order rotates every round, so a load spike hits
all of them alike); the ratio is taken per round, and a figure reports the median and the min-max spread of the
per-round ratios, with the machine's load average before and after its rounds. A figure whose spread crosses 1.0
is marked "within noise" (the rounds disagree on which side is faster); so is one measured against its own floor
(the least work any implementation must do) whose median falls below 1.0, which no real difference can cause.
Goals are judged on the median ratio.
"""

from __future__ import annotations

import gc
import os
import platform
import statistics
import time
import tracemalloc
from pathlib import Path

MIN_ROUNDS = 5  # timed rounds per figure, after WARMUP
WARMUP = 1


def stats(values) -> dict:
    values = [float(v) for v in values]
    return {"min": min(values), "median": statistics.median(values), "max": max(values), "n": len(values)}


def load_average() -> float:
    return os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")


class Rounds(dict):
    """Seconds per call of each candidate (name -> list, one per round), and the load average before and after."""

    load: tuple = (float("nan"), float("nan"))


def interleave(candidates: dict, repeats: int = MIN_ROUNDS, warmup: int = WARMUP, clock=time.perf_counter) -> Rounds:
    """Seconds per call of each candidate (name -> zero-argument callable): ``warmup`` untimed rounds, then
    ``repeats`` timed rounds (at least MIN_ROUNDS and one warm-up: fewer gives a figure no reader can trust).
    ``clock=time.thread_time`` counts only this thread's CPU time: for single-threaded work on a shared machine,
    it leaves out the time the thread waited for a core."""
    if repeats < MIN_ROUNDS or warmup < WARMUP:
        raise ValueError(f"a figure needs >= {MIN_ROUNDS} timed rounds after >= {WARMUP} warm-up round")
    names = list(candidates)
    before = load_average()
    for _ in range(warmup):
        for name in names:
            candidates[name]()
    times = Rounds({name: [] for name in names})
    for r in range(repeats):
        for name in names[r % len(names) :] + names[: r % len(names)]:
            gc.collect()
            t0 = clock()
            candidates[name]()
            times[name].append(clock() - t0)
    times.load = (before, load_average())
    return times


def figure(
    name: str,
    subject: str,
    alternative: str,
    subject_s: list,
    alternative_s: list,
    goal: str | None = None,
    show: str | None = None,
    load: tuple | None = None,
    floor: bool = False,
) -> dict:
    """One comparison. ``ratio`` = subject time / alternative time (per round); ``speedup`` = its inverse.
    ``goal`` is ``"ratio<=X"`` or ``"speedup>=X"``, judged on the median; ``show`` picks the one the summary
    prints (default: the goal's, else ratio). ``load``: the load average before and after the rounds (a
    :class:`Rounds`' ``load``). ``floor``: the alternative is the subject's floor (its ratio cannot be below 1)."""
    if len(subject_s) != len(alternative_s):
        raise ValueError(f"{name}: {len(subject_s)} subject rounds but {len(alternative_s)} alternative rounds")
    ratios = [s / a for s, a in zip(subject_s, alternative_s)]
    ratio = stats(ratios)
    noise = ratio["min"] <= 1.0 <= ratio["max"] or (floor and ratio["median"] < 1.0)
    out = {
        "name": name,
        "subject": subject,
        "alternative": alternative,
        "subject_s": stats(subject_s),
        "alternative_s": stats(alternative_s),
        "ratio": ratio,
        "speedup": stats([1 / r for r in ratios]),
        "ratio_of_best": min(subject_s) / min(alternative_s),  # best-of-N: the least load-sensitive estimate
        "show": show or (goal.split("<")[0].split(">")[0] if goal else "ratio"),
        "within_noise": bool(noise),
        "against_floor": bool(floor),
        "rounds": len(ratios),
        "load": list(load) if load is not None else [load_average(), load_average()],
    }
    if goal:
        kind, bound = goal.split("=")
        key, op = kind[:-1], kind[-1]
        value = out[key]["median"]
        out["goal"] = goal
        out["meets_goal"] = bool(value <= float(bound) if op == "<" else value >= float(bound))
    return out


def measurement(name: str, value: float, unit: str, note: str = "") -> dict:
    """A measured quantity that is no ratio (an overhead per run, a wall time): reported beside the figures."""
    return {"name": name, "value": float(value), "unit": unit, "note": note, "load": load_average()}


def clock_for(threads: int | None, device=None):
    """The thread's CPU time for single-threaded CPU work, else the wall clock (and its name)."""
    if threads == 1 and getattr(device, "type", "cpu") == "cpu":
        return time.thread_time, "thread CPU time"
    return time.perf_counter, "wall clock"


def synchronize(device) -> None:
    """Wait for queued GPU work, so that a timed call includes it."""
    # lazy: harness.bench.__main__ imports this module, and its --help stays free of torch
    import torch

    if getattr(device, "type", device) == "cuda":
        torch.cuda.synchronize()


# ----------------------------------------------------------------------------------------------- memory
def _rss_kib(field: str) -> int | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


def _reset_peak_rss() -> bool:
    """Linux: writing 5 to clear_refs resets the process's peak resident set size (VmHWM)."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def peak_memory_mib(fn) -> dict:
    """Peak memory of one call above what the process held before it: the resident set (native allocations
    of faiss / torch / numpy included) where Linux lets us reset its peak, else the Python-tracked peak."""
    gc.collect()
    before = _rss_kib("VmRSS")
    if before is not None and _reset_peak_rss():
        fn()
        return {"peak_rss_mib": round((_rss_kib("VmHWM") - before) / 1024, 1)}
    tracemalloc.start()
    try:
        fn()
        return {"peak_traced_mib": round(tracemalloc.get_traced_memory()[1] / 2**20, 1)}
    finally:
        tracemalloc.stop()


# ----------------------------------------------------------------------------------------------- machine
def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine() -> dict:
    # lazy: harness.bench.__main__ imports this module, and its --help stays free of torch
    import torch

    from harness.provenance import git_state, package_versions

    info = {
        "host": platform.node(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "cpu": cpu_model(),
        "cores": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "memory_gib": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1),
        "load_average": list(os.getloadavg()),
        **git_state(),
    }
    return {"machine": info, "versions": package_versions()}


def describe_machine(info: dict) -> str:
    m = info["machine"]
    where = m["gpu"] or f"{m['cpu']}, {m['cores']} cores"
    return f"{where}, torch {info['versions'].get('torch')}, faiss {info['versions'].get('faiss')}"
