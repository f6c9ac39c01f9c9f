"""``make gpu-check``: one prepared check for a GPU machine (meant to finish in under 8 minutes on one H100 / A100).

    python -m harness.bench.gpu_check [--out results/bench] [--device cuda|cpu] [--tiny]

Each section is guarded (a failing one is reported with its error; the others still run) and written to
``<out>/gpu.md`` (Markdown) and ``<out>/gpu.json``:

1. training throughput: ResNet-50, bf16 autocast, channels_last, cudnn.benchmark, 224 px, batch 90 on synthetic
   batches resident on the GPU: the harness's step against a bare PyTorch loop (a ratio figure) and its img/s;
2. the real image pipeline on generated JPEGs (harness.bench.pipeline): loader, its floor, step, epoch img/s;
3. host syncs per training step, three ways: ``torch.cuda.set_sync_debug_mode("warn")`` with every warning counted
   (``warnings.simplefilter("always")``) and charged to the file that raised it; the CUDA profiler's
   synchronisations and device-to-host copies; harness.bench.host_reads (the harness's own, undeclared: 0);
4. resume: a small image run stopped after its first checkpoint and resumed gives the uninterrupted run's numbers,
   with cudnn.benchmark on (the record's test metrics and every epoch row compared bit for bit);
5. evaluation at SOP size (60,502 x 512, 11,316 classes, clustered random embeddings): faiss-gpu against faiss-cpu,
   the same metrics;
6. AntiCo / NIR / Metrix: extra ms per step over the base loss alone on the ResNet-50 step.

``--device cpu --tiny`` runs every section on tiny sizes on the CPU, on one thread: the plumbing, tested in
tests/test_gpu_check.py (no GPU number comes out of it). The sections' code: harness/bench/gpu_sections.py.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import traceback
from contextlib import nullcontext
from pathlib import Path

import torch

from harness.bench import gpu_sections
from harness.bench.common import describe_machine, machine
from harness.io import atomic_write_json, atomic_write_text
from harness.runtime.threads import ThreadPlan, applied

SECTIONS = ("throughput", "pipeline", "host_syncs", "resume", "faiss", "regularizers")


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m harness.bench.gpu_check", description=__doc__.split("\n")[0])
    p.add_argument("--out", type=Path, default=Path(os.environ.get("HARNESS_RESULTS", "results")) / "bench")
    p.add_argument("--device", default="cuda", help="cuda (default) | cpu (a dry run of the plumbing)")
    p.add_argument("--tiny", action="store_true", help="tiny sizes (with --device cpu: the tested dry run)")
    p.add_argument("--only", default="", help=f"comma-separated sections: {', '.join(SECTIONS)}")
    args = p.parse_args(argv)
    args.only = [s for s in args.only.split(",") if s] or list(SECTIONS)
    unknown = sorted(set(args.only) - set(SECTIONS))
    if unknown:
        p.error(f"unknown section {', '.join(unknown)}; choose from {', '.join(SECTIONS)}")
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        p.error("no CUDA device here: run it on a GPU machine, or --device cpu --tiny for the dry run")
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    sizes = gpu_sections.TINY if args.tiny else gpu_sections.FULL
    device = torch.device(args.device)
    args.out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    results = {}
    one_thread = ThreadPlan(1, "gpu_check --device cpu: one thread") if device.type == "cpu" else None
    with gpu_sections.Workspace(device, sizes) as ws, applied(one_thread) if one_thread else nullcontext():
        for name in args.only:
            print(f"[gpu-check] {name} ...", flush=True)
            t0 = time.perf_counter()
            try:
                results[name] = {"ok": True, **getattr(gpu_sections, name)(ws)}
            except Exception as exc:  # noqa: BLE001 - one failing section must not lose the others' numbers
                traceback.print_exc()
                results[name] = {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
            results[name]["wall_s"] = time.perf_counter() - t0
            print(f"[gpu-check] {name}: {results[name]['wall_s']:.0f} s", flush=True)
    report = {
        **machine(),
        "device": str(device),
        "card": torch.cuda.get_device_name(device) if device.type == "cuda" else None,
        "tiny": args.tiny,
        "sizes": sizes,
        "wall_s": time.perf_counter() - started,
        "finished_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "sections": results,
    }
    atomic_write_json(args.out / "gpu.json", report)
    text = render(report)
    atomic_write_text(args.out / "gpu.md", text)
    print(text)
    return 0 if all(r["ok"] for r in results.values()) else 1


def render(report: dict) -> str:
    where = report["card"] or "CPU (dry run of the plumbing: no GPU number)"
    lines = [
        "# GPU check",
        "",
        f"{where}; {describe_machine(report)}; {'tiny sizes; ' if report['tiny'] else ''}"
        f"{report['wall_s'] / 60:.1f} min; {report['finished_at']}. `make gpu-check` "
        f"(`python -m harness.bench.gpu_check`) rewrites this file.",
        "",
    ]
    for name, r in report["sections"].items():
        lines += [f"## {name}", ""]
        if not r["ok"]:
            lines += [f"**failed**: {r['error']}", ""]
            continue
        for row in r.get("table", []):
            lines.append("| " + " | ".join(str(c) for c in row) + " |")
            if row is r["table"][0]:
                lines.append("|" + "---|" * len(row))
        lines += ([""] if r.get("table") else []) + [f"- {n}" for n in r.get("notes", [])] + [""]
    return "\n".join(lines).rstrip() + "\n"


if __name__ == "__main__":
    sys.exit(main())
