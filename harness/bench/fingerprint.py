"""The cost of identity by content (harness/rundir/fingerprint.py) on a tree of SOP's size.

A Stanford Online Products layout (``Ebay_train.txt``, ``Ebay_test.txt``, ``<super>_final/<class>_<n>.JPG``) of
120,053 files of random bytes at SOP's mean JPEG size (about 24 KB: 2.9 GB in all; hashing reads bytes, it does
not decode them) is written, then staged once with a plain copy (new inodes and times, as ``cp -r`` to a node's
local disk). Timed per round, each against the path-and-size walk the identity used before (one ``stat`` per
file, no byte read):

* cold: the staged copy with an empty hash cache and its files evicted from the OS page cache
  (``posix_fadvise(DONTNEED)``; a virtual disk may still cache below the guest);
* cached: the same tree again: one ``stat`` per file plus one SQLite lookup per file;
* manifest: a planner trusting the tree's checksum manifest (``trust_manifest=True``): ``stat`` and the
  manifest's size and mtime.

``run(quick)`` returns the figure rows (``figures``), as every module of ``python -m harness.bench``.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

from harness.bench.common import MIN_ROUNDS, WARMUP, figure, load_average
from harness.rundir import hashes
from harness.rundir.fingerprint import data_fingerprint, walk_files, write_manifest

SOP = {"images": 120_053, "classes": 22_634, "mean_bytes": 24_000}
SUPER = (
    "bicycle",
    "cabinet",
    "chair",
    "coffee_maker",
    "fan",
    "kettle",
    "lamp",
    "mug",
    "sofa",
    "stapler",
    "table",
    "toaster",
)


def write_sop_tree(root: Path, images: int, classes: int, mean_bytes: int, seed: int = 0) -> Path:
    """A SOP-layout tree of ``images`` files of random bytes (sizes around ``mean_bytes``), and its two lists."""
    rng = np.random.default_rng(seed)
    sizes = np.clip(rng.normal(mean_bytes, mean_bytes / 3, images), 2_000, None).astype(int)
    blob = rng.bytes(int(sizes.max()) + images)
    rows = []
    for i in range(images):
        cls = i * classes // images + 1
        rel = f"{SUPER[cls % len(SUPER)]}_final/{cls}_{i}.JPG"
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(blob[i : i + int(sizes[i])])  # distinct content per file
        rows.append(f"{i + 1} {cls} {cls % len(SUPER) + 1} {rel}")
    half = len(rows) // 2
    header = "image_id class_id super_class_id path\n"
    (root / "Ebay_train.txt").write_text(header + "\n".join(rows[:half]) + "\n")
    (root / "Ebay_test.txt").write_text(header + "\n".join(rows[half:]) + "\n")
    return root


def evict(root: Path) -> None:
    """Drop the tree's files from the OS page cache (clean pages; no root needed)."""
    for _, path in walk_files(root, set()):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)


def stat_walk(root: Path) -> str:
    """The identity before: sha1 of the sorted (relative path, size) of every file, no byte read."""
    h = hashlib.sha1()
    for rel, path in walk_files(root, set()):
        h.update(f"{rel}\0{os.stat(path).st_size}\n".encode())
    return h.hexdigest()


def run(quick: bool = False) -> dict:
    scale = {"images": 3_000, "classes": 565, "mean_bytes": 24_000} if quick else SOP
    rounds = WARMUP + MIN_ROUNDS  # the first (warm-up) round is dropped, as in every figure of harness.bench
    times = {"walk": [], "cold": [], "cached": [], "manifest": []}
    load_before = load_average()
    with tempfile.TemporaryDirectory(prefix="bench-fingerprint-") as tmp:
        work = Path(tmp)
        t0 = time.perf_counter()
        source = write_sop_tree(work / "source", **scale)
        staged = Path(shutil.copytree(source, work / "staged"))  # new inodes and times: the node-local copy
        written_s = time.perf_counter() - t0
        node = {"_target_": "harness.data.sop.load_sop", "root": str(staged)}
        saved = os.environ.get(hashes.CACHE_ENV)
        try:
            for r in range(rounds):
                os.environ[hashes.CACHE_ENV] = str(work / f"cache-{r}.sqlite3")  # empty: nothing hashed before
                (staged / ".dml-manifest.jsonl").unlink(missing_ok=True)
                evict(staged)
                t = time.perf_counter()
                content = data_fingerprint(node)
                times["cold"].append(time.perf_counter() - t)
                t = time.perf_counter()
                assert data_fingerprint(node) == content
                times["cached"].append(time.perf_counter() - t)
                write_manifest(staged)
                t = time.perf_counter()
                assert data_fingerprint(node, trust_manifest=True) == content
                times["manifest"].append(time.perf_counter() - t)
                t = time.perf_counter()
                stat_walk(staged)
                times["walk"].append(time.perf_counter() - t)
        finally:
            if saved is None:
                os.environ.pop(hashes.CACHE_ENV, None)
            else:
                os.environ[hashes.CACHE_ENV] = saved
    times = {k: v[WARMUP:] for k, v in times.items()}
    load = (load_before, load_average())
    n = f"{scale['images']:,} files"
    walk = "path-and-size walk (the identity before: no byte read)"
    figures = [
        figure(f"data fingerprint, cold ({n}, staged copy)", "blake2b of every byte", walk, times["cold"],
               times["walk"], load=load),
        figure(f"data fingerprint, cached ({n})", "hash cache hit per file", walk, times["cached"], times["walk"],
               load=load),
        figure(f"data fingerprint, manifest ({n})", "planner trusting the manifest", walk, times["manifest"],
               times["walk"], load=load),
    ]  # fmt: skip
    return {"figures": figures, "files": scale["images"], "tree_written_s": written_s, "rounds": MIN_ROUNDS}


if __name__ == "__main__":  # python -m harness.bench.fingerprint [--quick]
    import sys

    result = run(quick="--quick" in sys.argv[1:])
    for f in result["figures"]:
        s, a, r = f["subject_s"], f["alternative_s"], f["ratio"]
        print(
            f"{f['name']}: {f['subject']} {s['median']:.2f} s ({s['min']:.2f}-{s['max']:.2f}), {f['alternative']} "
            f"{a['median']:.2f} s: {r['median']:.1f}x the time ({r['min']:.1f}-{r['max']:.1f}), {s['n']} rounds"
        )
