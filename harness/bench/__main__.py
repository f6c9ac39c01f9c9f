"""Run the benchmarks: ``python -m harness.bench [--only NAME] [--quick] [--full] [--out DIR]``."""

from __future__ import annotations

import argparse
import importlib
import inspect
import json
import os
import sys
import time
import traceback
from pathlib import Path

from harness.bench.common import describe_machine, machine
from harness.cli import ArgumentParser
from harness.io import atomic_write_json, atomic_write_text

BENCHMARKS = ("evaluation", "coding_rate", "regularizers", "training_loop", "sweep", "tables", "pipeline", "scaling")


def parse_args(argv=None) -> argparse.Namespace:
    p = ArgumentParser(prog="python -m harness.bench", description=__doc__)
    p.add_argument(
        "--only",
        action="append",
        default=[],
        metavar="NAME",
        help=f"run only these benchmarks (repeatable or comma-separated): {', '.join(BENCHMARKS)}",
    )
    p.add_argument("--quick", action="store_true", help="small sizes and few repeats (a smoke run, not figures)")
    p.add_argument("--full", action="store_true", help="also the evaluation at full SOP scale (60,502 x 512)")
    p.add_argument(
        "--out",
        type=Path,
        default=Path(os.environ.get("HARNESS_RESULTS", "results")) / "bench",
        help="output folder (default: <results>/bench)",
    )
    args = p.parse_args(argv)
    args.only = [n for item in args.only for n in item.split(",") if n]
    unknown = sorted(set(args.only) - set(BENCHMARKS))
    if unknown:
        p.error(f"unknown benchmark {', '.join(unknown)}; choose from {', '.join(BENCHMARKS)}")
    return args


def run_one(module, quick: bool, full: bool) -> dict:
    accepted = inspect.signature(module.run).parameters
    kwargs = {k: v for k, v in {"quick": quick, "full": full}.items() if k in accepted}
    return module.run(**kwargs)


def main(argv=None) -> int:
    args = parse_args(argv)
    names = args.only or list(BENCHMARKS)
    args.out.mkdir(parents=True, exist_ok=True)
    failed = []
    for name in names:
        module = importlib.import_module(f"harness.bench.{name}")
        print(f"[bench] {name} ...", flush=True)
        info, t0 = machine(), time.perf_counter()
        try:
            result = run_one(module, args.quick, args.full)
        except Exception as exc:  # one broken benchmark does not stop the others; it is reported and fails the exit
            traceback.print_exc()
            result = {"error": f"{type(exc).__name__}: {exc}", "ok": False, "figures": []}
        if not result.get("ok", True):
            failed.append(name)
        result = {
            "benchmark": name,
            "quick": args.quick,
            "wall_s": time.perf_counter() - t0,
            "finished_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            **info,
            "load_average_after": list(os.getloadavg()),
            **result,
        }
        atomic_write_json(args.out / f"{name}.json", result)
        print(f"[bench] {name}: {result['wall_s']:.0f} s -> {args.out / (name + '.json')}", flush=True)
    summary = summarize(args.out)
    atomic_write_text(args.out / "README.md", summary)
    print(summary)
    if failed:
        print(f"[bench] failed or values differ: {', '.join(failed)} (see their JSON)", file=sys.stderr)
    return 1 if failed else 0


# ----------------------------------------------------------------------------------------------- the summary
def format_figure(f: dict) -> list:
    show = f.get("show", "ratio")
    s = f[show]
    value = f"**{s['median']:.2f}x** ({s['min']:.2f}-{s['max']:.2f})"
    value += " faster" if show == "speedup" else " the time"
    goal = ""
    if "goal" in f:
        goal = f"{f['goal'].replace('<=', ' <= ').replace('>=', ' >= ')}: {'yes' if f['meets_goal'] else '**no**'}"
    return [
        f["name"],
        f["subject"],
        f["alternative"],
        f"{f['subject_s']['median']:.4g} s",
        f"{f['alternative_s']['median']:.4g} s",
        value,
        goal,
    ]


def summarize(out: Path) -> str:
    results = [json.loads(p.read_text()) for p in sorted(out.glob("*.json"))]
    order = {n: i for i, n in enumerate(BENCHMARKS)}
    results.sort(key=lambda r: order.get(r.get("benchmark"), len(order)))
    lines = [
        "# Benchmarks",
        "",
        "Every figure is a ratio against the named alternative, measured in the same run: the median over "
        "rounds (min-max in brackets); times are medians. `python -m harness.bench` (`make bench`) rewrites "
        "this file from the JSON beside it.",
        "",
    ]
    for r in results:
        lines += [
            f"## {r['benchmark']}{' (quick)' if r.get('quick') else ''}",
            "",
            f"{describe_machine(r)}; {r['finished_at']}; {r['wall_s']:.0f} s; load average "
            f"{r['machine']['load_average'][0]:.1f} -> {r['load_average_after'][0]:.1f}",
            "",
        ]
        if r.get("error"):
            lines += [f"**failed**: {r['error']}", ""]
        if r.get("figures"):
            header = [
                "figure",
                "subject",
                "alternative",
                "subject time",
                "alternative time",
                "median (min-max)",
                "goal",
            ]
            lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
            lines += ["| " + " | ".join(format_figure(f)) + " |" for f in r["figures"]]
            lines.append("")
        lines += [f"- {note}" for note in r.get("notes", [])]
        lines.append("")
    return "\n".join(lines).rstrip() + "\n"


if __name__ == "__main__":
    sys.exit(main())
