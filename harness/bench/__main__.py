"""Run the benchmarks: ``python -m harness.bench [--only NAME] [--quick] [--full] [--threads N] [--out DIR]``.

``python -m harness.bench --docs DIR`` puts DIR's results into the docs (docs/results/snapshot/bench/ and the
benchmarks page); ``--docs-check`` says whether the page still matches its snapshot."""

from __future__ import annotations

import argparse
import contextlib
import importlib
import importlib.util
import inspect
import json
import os
import re
import shutil
import sys
import time
import traceback
from pathlib import Path

from harness.bench.common import describe_machine, machine
from harness.cli import ArgumentParser
from harness.io import atomic_write_json, atomic_write_text

BENCHMARKS = (
    "evaluation",
    "coding_rate",
    "regularizers",
    "training_loop",
    "sweep",
    "tables",
    "pipeline",
    "scaling",
    "fingerprint",
)


def parse_args(argv=None) -> argparse.Namespace:
    p = ArgumentParser(prog="python -m harness.bench", description=__doc__)
    p.add_argument(
        "--only",
        action="append",
        default=[],
        metavar="NAME",
        help=f"run only these benchmarks (repeatable or comma-separated): {', '.join(BENCHMARKS)}",
    )
    p.add_argument("--quick", action="store_true", help="small sizes (a smoke run; a warm-up and 5 rounds per figure)")
    p.add_argument("--full", action="store_true", help="also the evaluation at full SOP scale (60,502 x 512)")
    p.add_argument("--threads", type=int, default=1, help="CPU threads per process without a GPU (default 1)")
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


DOCS_PAGE = Path(__file__).resolve().parents[2] / "docs" / "results" / "benchmarks.md"
DOCS_SNAPSHOT = DOCS_PAGE.parent / "snapshot" / "bench"
BLOCK = re.compile(r"(<!-- bench -->\n)(.*?)(<!-- /bench -->)", re.S)


def docs(results: Path | None, check: bool = False) -> int:
    """``--docs [DIR]``: copy DIR's JSON results (default: none, keep the snapshot) into docs/results/snapshot/bench/
    and rewrite the page's block between ``<!-- bench -->`` and ``<!-- /bench -->`` from them; ``--docs-check``:
    exit 1 when the page differs from its snapshot (no number on the page is typed by hand)."""
    if results is not None and not check:
        DOCS_SNAPSHOT.mkdir(parents=True, exist_ok=True)
        for old in DOCS_SNAPSHOT.glob("*.json"):
            old.unlink()
        for source in sorted(results.glob("*.json")):
            shutil.copy2(source, DOCS_SNAPSHOT / source.name)
    page = DOCS_PAGE.read_text()
    rendered = BLOCK.sub(lambda m: m.group(1) + summarize(DOCS_SNAPSHOT, level=3) + m.group(3), page)
    if check:
        if rendered != page:
            print(f"error: {DOCS_PAGE} differs from its snapshot; run python -m harness.bench --docs", file=sys.stderr)
            return 1
        return 0
    atomic_write_text(DOCS_PAGE, rendered)
    return 0


def main(argv=None) -> int:
    if argv is None:
        argv = sys.argv[1:]
    if argv[:1] in (["--docs"], ["--docs-check"]):
        return docs(Path(argv[1]) if len(argv) > 1 else None, check=argv[0] == "--docs-check")
    args = parse_args(argv)
    names = args.only or list(BENCHMARKS)
    args.out.mkdir(parents=True, exist_ok=True)
    started, load_before = time.perf_counter(), os.getloadavg()[0]
    with cpu_threads(args.threads):
        failed = run_all(names, args)
    total = {
        "wall_s": time.perf_counter() - started,
        "quick": args.quick,
        "benchmarks": names,
        "load_average": [load_before, os.getloadavg()[0]],
        "finished_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    atomic_write_json(args.out / "_run.json", total)
    summary = summarize(args.out)
    atomic_write_text(args.out / "README.md", summary)
    print(summary)
    if failed:
        print(f"[bench] failed or values differ: {', '.join(failed)} (see their JSON)", file=sys.stderr)
    return 1 if failed else 0


def cpu_threads(n: int):
    """Without a GPU every figure runs on ``n`` threads (torch, faiss, BLAS; default 1): on a shared machine the wall
    time of multi-threaded ops mostly measures the scheduler (OpenMP threads spinning against other jobs'), and a
    ratio compares like with like. With a GPU the process keeps its threads."""
    # lazy: keeps `python -m harness.bench --help` free of torch
    import torch

    from harness.runtime.threads import ThreadPlan, applied

    if torch.cuda.is_available():
        return contextlib.nullcontext()
    return applied(ThreadPlan(n, f"harness.bench --threads {n}"))


def run_all(names: list, args) -> list:
    """Run each benchmark, write its JSON; the names of those that failed or whose values differ."""
    failed = []
    for name in names:
        if importlib.util.find_spec(f"harness.bench.{name}") is None:  # a figure module another change adds
            print(f"[bench] {name}: no module harness/bench/{name}.py here, skipped", flush=True)
            continue
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
    return failed


# ----------------------------------------------------------------------------------------------- the summary
def format_figure(f: dict) -> list:
    show = f.get("show", "ratio")
    s = f[show]
    value = f"**{s['median']:.2f}x** ({s['min']:.2f}-{s['max']:.2f})"
    value += " speedup" if show == "speedup" else " the time"
    if f.get("within_noise"):
        below = f.get("against_floor") and f["ratio"]["median"] < 1
        value += ", *within noise*" + (" (below its own floor)" if below else "")
    goal = ""
    if "goal" in f:
        goal = f"{f['goal'].replace('<=', ' <= ').replace('>=', ' >= ')}: {'yes' if f['meets_goal'] else '**no**'}"
    load = f.get("load") or [float("nan")] * 2
    return [
        f["name"],
        f["subject"],
        f["alternative"],
        f"{f['subject_s']['median']:.4g} s",
        f"{f['alternative_s']['median']:.4g} s",
        value,
        str(f.get("rounds", f["ratio"].get("n", ""))),
        f"{load[0]:.1f} -> {load[1]:.1f}",
        goal,
    ]


FIGURE_HEADER = [
    "figure",
    "subject",
    "alternative",
    "subject time",
    "alternative time",
    "ratio: median (min-max)",
    "rounds",
    "load",
    "goal",
]


def summarize(out: Path, level: int = 1) -> str:
    """The Markdown summary of the JSON results in ``out``; ``level``: the heading level of its title (the docs page
    embeds it one level down)."""
    results = [json.loads(p.read_text()) for p in sorted(out.glob("*.json")) if not p.name.startswith("_")]
    order = {n: i for i, n in enumerate(BENCHMARKS)}
    results.sort(key=lambda r: order.get(r.get("benchmark"), len(order)))
    lines = [
        f"{'#' * level} Benchmarks",
        "",
        "Every figure is a ratio against the named alternative, measured in the same run: one warm-up round, then "
        "at least 5 timed rounds with the order rotating; the median of the per-round ratios and their min-max. "
        "*Within noise*: the rounds disagree on which side is faster (the spread crosses 1.0), or a figure "
        "against its own floor fell below it. Times are medians; load is the 1-minute load average before and "
        "after the figure's rounds. `python -m harness.bench` (`make bench`) rewrites this file from the JSON "
        "beside it.",
        "",
    ]
    run_file = out / "_run.json"
    if run_file.exists():
        total = json.loads(run_file.read_text())
        lines += [
            f"Last command: {len(total['benchmarks'])} benchmark(s){' (--quick)' if total.get('quick') else ''} in "
            f"{total['wall_s'] / 60:.1f} min, load average {total['load_average'][0]:.1f} -> "
            f"{total['load_average'][1]:.1f}, {total['finished_at']}.",
            "",
        ]
    for r in results:
        lines += [
            f"{'#' * (level + 1)} {r['benchmark']}{' (quick)' if r.get('quick') else ''}",
            "",
            f"{describe_machine(r)}; {r['finished_at']}; {r['wall_s']:.0f} s; load average "
            f"{r['machine']['load_average'][0]:.1f} -> {r['load_average_after'][0]:.1f}",
            "",
        ]
        if r.get("error"):
            lines += [f"**failed**: {r['error']}", ""]
        if r.get("figures"):
            lines += ["| " + " | ".join(FIGURE_HEADER) + " |", "|" + "---|" * len(FIGURE_HEADER)]
            lines += ["| " + " | ".join(format_figure(f)) + " |" for f in r["figures"]]
            lines.append("")
        for m in r.get("measurements", []):
            value = f"**{m['value']:.3g} {m['unit']}**"
            lines.append(f"- measured: {m['name']}: {value} ({m['note']}; load {m['load']:.1f})")
        measured = tuple(m["name"] for m in r.get("measurements", []))
        lines += [f"- {note}" for note in r.get("notes", []) if not (measured and note.startswith(measured))]
        lines.append("")
    return "\n".join(lines).rstrip() + "\n"


if __name__ == "__main__":
    sys.exit(main())
