"""The docs' results pages, rendered from committed snapshots of the runs behind them (``results/`` is not in git).

    python -m harness.docs_results snapshot NAME [RESULTS] --sweep SWEEP [--where KEY=VALUE ...]
        copy the runs the tables select into docs/results/snapshot/NAME/ (replacing it): per run only
        record.json, identity.json, config.yaml, epochs.jsonl and per_query_test.npz, in the layout they have under
        RESULTS
    python -m harness.docs_results render [--check]
        every docs page and the README: the text between ``<!-- results NAME FILE [tables args] -->`` and
        ``<!-- /results -->`` becomes FILE as ``python -m harness.tables docs/results/snapshot/NAME [tables args]``
        writes it (table.md, delta.md, references.md, ...; a PNG such as plots/curves.png is copied into
        docs/images/results/ and linked). --check: exit 1 naming each page whose tables differ from their render
        (the pictures are not compared), so that no number on a page drifts from its snapshot.

A snapshot is read by the tables' own loader, exactly as results/ is: no second reader, no second format.
"""

from __future__ import annotations

import argparse
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DOCS = REPO / "docs"
SNAPSHOTS = DOCS / "results" / "snapshot"
IMAGES = DOCS / "images" / "results"
KEPT = ("record.json", "identity.json", "config.yaml", "epochs.jsonl", "per_query_test.npz")  # what the tables read
BLOCK = re.compile(r"(<!-- results (?P<spec>[^>]*?) -->\n)(?P<body>.*?)(<!-- /results -->)", re.S)


def snapshot(name: str, root: Path, sweep: str | None, where=(), dest: Path = SNAPSHOTS) -> list:
    """Copy the finished runs the tables would select (``--sweep``, ``--where``) into ``dest/name``."""
    # lazy: the tables' loader brings torch (~3 s); only `snapshot` reads runs, `render` runs without it
    from harness.tables.load import scan
    from harness.tables.select import select_runs

    runs = select_runs(scan(root, cache=False).runs, sweep, list(where))
    runs = runs[runs["status"] == "finished"]
    if runs.empty:
        raise SystemExit(f"error: no finished runs under {root} for sweep={sweep} {' '.join(where)}")
    target = dest / name
    shutil.rmtree(target, ignore_errors=True)
    copied = []
    for path in sorted(runs["path"]):
        run_dir = Path(path)
        out = target / run_dir.resolve().relative_to(Path(root).resolve())
        out.mkdir(parents=True)
        for file in KEPT:
            if (run_dir / file).is_file():
                shutil.copy2(run_dir / file, out / file)
        copied.append(out)
    return copied


def tables_for(name: str, args: list, plots: bool, snapshots: Path = SNAPSHOTS) -> Path:
    """Run ``python -m harness.tables`` on the snapshot ``name``; the folder it wrote."""
    out = Path(tempfile.mkdtemp(prefix=f"docs-{name}-"))
    command = [sys.executable, "-m", "harness.tables", str(snapshots / name), "--out", str(out), "--no-cache"]
    command += [*args, *([] if plots else ["--no-plots"])]
    done = subprocess.run(command, cwd=REPO, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"error: {shlex.join(command)} failed:\n{done.stderr.strip()[-2000:]}")
    return out


def render_page(
    text: str, page: Path, plots: bool, made: dict, snapshots: Path = SNAPSHOTS, images: Path = IMAGES
) -> str:
    """The page with every results block rendered from its snapshot; ``made``: the tables already written for
    (snapshot, arguments), shared by the pages of one render (the caller removes them)."""

    def body(match) -> str:
        name, file, *args = shlex.split(match.group("spec"))
        key = (name, tuple(args))
        if key not in made:
            made[key] = tables_for(name, args, plots or file.endswith(".png"), snapshots)
        source = made[key] / file
        if file.endswith(".png"):
            if not plots:
                return match.group("body")  # pictures are drawn by render, never compared
            images.mkdir(parents=True, exist_ok=True)
            target = images / f"{name}-{Path(file).stem}.png"
            shutil.copyfile(source, target)
            link = Path(os.path.relpath(target, page.parent)).as_posix()
            return f"![{name}: {Path(file).stem}]({link})\n"
        if not source.is_file():
            raise SystemExit(f"error: {page}: python -m harness.tables wrote no {file} for snapshot {name}")
        return source.read_text().strip() + "\n"

    rendered = BLOCK.sub(lambda m: m.group(1) + body(m) + m.group(4), text)
    return rendered


def render(check: bool = False, pages_dir: Path = DOCS) -> list:
    """Render (or, with ``check``, compare) every page with results blocks; the pages that differ from their
    render."""
    differ, made = [], {}  # one tables run per (snapshot, arguments) for all the pages
    pages = sorted(p for p in pages_dir.rglob("*.md") if "_build" not in p.parts and "snapshot" not in p.parts)
    try:
        for page in [*pages, *([REPO / "README.md"] if pages_dir == DOCS else [])]:
            text = page.read_text()
            if "<!-- results " not in text:
                continue
            new = render_page(text, page, plots=not check, made=made)
            if new != text:
                differ.append(page)
                if not check:
                    page.write_text(new)
    finally:
        for folder in made.values():
            shutil.rmtree(folder, ignore_errors=True)
    return differ


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m harness.docs_results", description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="command", required=True)
    s = sub.add_parser("snapshot", help="copy a sweep's runs into docs/results/snapshot/NAME/")
    s.add_argument("name")
    s.add_argument("root", nargs="?", default="results")
    s.add_argument("--sweep")
    s.add_argument("--where", action="append", default=[])
    r = sub.add_parser("render", help="render the results pages from their snapshots")
    r.add_argument("--check", action="store_true", help="exit 1 when a page differs from its render")
    args = p.parse_args(argv)
    if args.command == "snapshot":
        copied = snapshot(args.name, Path(args.root), args.sweep, args.where)
        print(f"{len(copied)} runs -> {SNAPSHOTS / args.name}")
        return 0
    differ = render(check=args.check)
    for page in differ:
        print(f"{'differs from its snapshot' if args.check else 'rendered'}: {page.relative_to(REPO)}")
    if args.check and differ:
        print("error: run python -m harness.docs_results render and commit the pages", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
