"""The data a run reads, by content, as a fingerprint that enters the run's identity (never the path it lives at).

The fingerprint is a blake2b over the sorted (key, content hash) of every file the dataset reads, wherever it
lives. A file's key is how the dataset names it, never where the tree sits on this machine:

* a dataset read from a root (any ``root`` / ``*_root`` key): every file under it (dot-files left out), keyed
  by the dotted key and its path relative to the root (``dataset.root/042.Bird/0001.jpg``);
* a loader that lists its own files (``files_read``, an attribute of its ``_target_`` function: the CSV
  dataset gives its table and every image its rows name, absolute paths outside the root too) is asked
  instead of walking its root;
* any other absolute path in the dataset config (``dataset.csv=/abs/table.csv``): keyed by its dotted key;
* a local ``backbone.weights`` file (``weights=...``): keyed ``backbone.weights``;
* a dataset built in memory (no root; scikit-learn's digits): the bytes of every split's inputs and labels
  (hashed as identity version 2 first did, so those runs keep their identity).

So two trees with the same names and sizes but other pixels, or a CSV relabelled in place, are two runs,
while a tree staged elsewhere (``cp -r`` to a node's local disk) is the same run. The hashes of unchanged
files come from a persistent cache (harness/rundir/hashes.py); a dataset may ship a checksum manifest
(:data:`MANIFEST`, written by ``python -m harness.rundir.fingerprint ROOT``) that a planner may trust instead of
hashing (``trust_manifest=True``; never inside a run, which checks the manifest against the bytes instead).
A root that does not exist is fingerprinted as absent (the dataset's own loader then says what to do).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
from pathlib import Path

import numpy as np

from harness.errors import DataError
from harness.io import atomic_write_text
from harness.rundir.hashes import ABSENT, Stat, file_hashes

LENGTH = 32  # hex digits of a fingerprint of files (128 bits: a hostile tree cannot aim at another's)
ARRAYS_LENGTH = 12  # hex digits of an in-memory dataset's fingerprint (unchanged since identity version 2)
MANIFEST = ".dml-manifest.jsonl"


def data_fingerprint(dataset: dict, build=None, weights: str | None = None, *, trust_manifest: bool = False) -> str:
    """The fingerprint of the data a dataset config reads (see the module docstring); a pure function of the
    files' content and names. ``dataset`` is the resolved dataset config as plain data; ``build()`` returns the
    built data and is called only for in-memory datasets (no file read); ``weights`` is ``backbone.weights``."""
    files = data_files(dataset) if dataset else []
    if weights and Path(str(weights)).expanduser().exists():
        files.append(("backbone.weights", str(Path(str(weights)).expanduser())))
    in_memory = not find_roots(dataset or {}) and not lists_own_files(dataset) and build is not None
    if in_memory and not files:  # as identity version 2 first computed it: digits runs keep their identity
        return hashlib.sha1(arrays_fingerprint(build()).encode()).hexdigest()[:ARRAYS_LENGTH]
    if not files:
        return "none"
    h = hashlib.blake2b(digest_size=LENGTH // 2)
    for key, digest in sorted(content_of(files, dataset, trust_manifest).items()):
        h.update(f"{key}\0{digest}\n".encode())
    if in_memory:
        h.update(b"arrays\0" + arrays_fingerprint(build()).encode())
    return h.hexdigest()


def content_of(files: list, dataset: dict, trust_manifest: bool) -> dict:
    """{key: content hash} of (key, path) pairs; in a run, the manifests of the roots are checked against it."""
    manifests = {}
    for _, root in find_roots(dataset or {}):
        manifests.update(read_manifest(Path(root).expanduser()))
    trusted = manifests if trust_manifest else None
    hashes = file_hashes([p for _, p in files], trusted=trusted)
    out = {key: hashes[str(path)] for key, path in files}
    if not trust_manifest:
        for _, path in files:
            stated = manifests.get(str(path))
            if stated is not None and hashes[str(path)] not in (stated[1], ABSENT):
                raise DataError(
                    f"{path} does not match the dataset's checksum manifest ({MANIFEST}): the file changed "
                    f"after the manifest was written; write it again: python -m harness.rundir.fingerprint "
                    f"{manifest_root(manifests, path)}"
                )
    return out


def data_files(dataset: dict) -> list:
    """(key, path) of every file the dataset reads (see the module docstring)."""
    listed = lists_own_files(dataset)
    out = []
    if listed is not None:
        kwargs = {k: v for k, v in dataset.items() if not str(k).startswith("_")}
        out.extend((str(key), str(path)) for key, path in listed(**kwargs))
    else:
        for where, root in find_roots(dataset):
            path = Path(root).expanduser()
            if path.is_file():
                out.append((where, str(path)))
            else:
                out.extend((f"{where}/{rel}", full) for rel, full in walk_files(path, set()) if rel != MANIFEST)
    seen = {where for where, _ in find_roots(dataset)} | {key for key, _ in out}
    for where, value in find_paths(dataset):
        if where in seen:
            continue
        path = Path(value).expanduser()
        if path.is_dir():
            out.extend((f"{where}/{rel}", full) for rel, full in walk_files(path, set()))
        elif path.is_file():
            out.append((where, str(path)))
    return out


def content_keys(config: dict) -> tuple:
    """The dotted keys of a resolved config whose files enter the fingerprint by content (absolute paths in the
    dataset node, a local ``backbone.weights``): their paths leave the identity (a staged copy is the same run)."""
    keys = [k for k, v in find_paths(config.get("dataset") or {}) if "[" not in k and Path(v).expanduser().exists()]
    weights = (config.get("backbone") or {}).get("weights") if isinstance(config.get("backbone"), dict) else None
    if isinstance(weights, str) and Path(weights).expanduser().is_file():
        keys.append("backbone.weights")
    return tuple(keys)


def lists_own_files(dataset: dict):
    """The ``files_read`` function of the dataset's loader (the harness's own loaders only), or None."""
    # lazy: the guard brings OmegaConf and Hydra; `python -m harness.rundir.fingerprint` stays free of them
    from harness.rundir.guard import allowed_target

    target = (dataset or {}).get("_target_")
    if not isinstance(target, str) or not allowed_target(target):
        return None
    # lazy: as the guard above (Hydra)
    from hydra.utils import get_method

    try:
        return getattr(get_method(target), "files_read", None)
    except Exception:  # noqa: BLE001 - an unimportable target: the build says so in one line
        return None


def find_roots(node, where: str = "dataset") -> list:
    """(dotted key, path) of every ``root`` / ``*_root`` string in a config node."""
    return [(k, v) for k, v in find_strings(node, where) if k.rsplit(".", 1)[-1] == "root" or k.endswith("_root")]


def find_paths(node, where: str = "dataset") -> list:
    """(dotted key, value) of every string in a config node that is an absolute path (``/``, ``~``)."""
    return [(k, v) for k, v in find_strings(node, where) if v.startswith(("/", "~"))]


def find_strings(node, where: str) -> list:
    out = []
    if isinstance(node, dict):
        for key, value in node.items():
            out.extend(find_strings(value, f"{where}.{key}"))
    elif isinstance(node, (list, tuple)):
        for i, value in enumerate(node):
            out.extend(find_strings(value, f"{where}[{i}]"))
    elif isinstance(node, str):
        out.append((where, node))
    return out


def walk_files(root, seen: set, prefix: str = ""):
    """(relative path, full path) of the files under ``root`` in sorted order, following symlinks once (no
    loops), dot-files left out. Paths are strings: a tree of 120k files is walked without a Path per file."""
    root = str(root)
    try:
        st = os.stat(root)
    except OSError:
        return
    if (st.st_dev, st.st_ino) in seen:
        return
    seen.add((st.st_dev, st.st_ino))
    try:
        entries = sorted(os.scandir(root), key=lambda e: e.name)
    except OSError:
        return
    for entry in entries:
        if entry.name.startswith("."):
            continue
        rel = f"{prefix}{entry.name}"
        try:
            if entry.is_dir():
                yield from walk_files(entry.path, seen, rel + "/")
            elif entry.is_file():
                yield rel, entry.path
        except OSError:  # a dangling link or a file removed while walking: not part of the data
            continue


def arrays_fingerprint(data) -> str:
    """sha1 of every split's inputs and labels of a built :class:`~harness.data.base.DMLData` (in memory: data a
    package ships, such as scikit-learn's digits, not a tree someone else can write)."""
    h = hashlib.sha1()
    for name, split in splits(data):
        h.update(name.encode())
        for array in (getattr(split, "inputs", None), getattr(split, "labels", None)):
            if array is None:
                continue
            a = array.detach().cpu().numpy() if hasattr(array, "detach") else np.asarray(array)
            h.update(json.dumps([str(a.dtype), list(a.shape)]).encode())
            h.update(np.ascontiguousarray(a).tobytes())
    return h.hexdigest()


def splits(data) -> list:
    out = [("train", data.train)]
    for name in ("val", "test"):
        evalset = getattr(data, name, None)
        if evalset is not None:
            out.append((f"{name}.query", evalset.query))
            if evalset.gallery is not None:
                out.append((f"{name}.gallery", evalset.gallery))
    return out


# ----------------------------------------------------------------------------------------------- the manifest
def read_manifest(root: Path) -> dict:
    """{absolute path: (Stat, digest)} from ``root/MANIFEST`` (empty when there is none or it is unreadable)."""
    out = {}
    try:
        lines = (root / MANIFEST).read_text().splitlines()
    except (OSError, UnicodeDecodeError):
        return out
    for line in lines:
        try:
            row = json.loads(line)
            key = os.path.join(str(root), row["path"])
            out[key] = (Stat(int(row["size"]), int(row["mtime_ns"]), 0, 0), str(row["blake2b"]))
        except (ValueError, KeyError, TypeError):
            continue
    return out


def manifest_root(manifests: dict, path: Path) -> str:
    path = Path(path)
    return next((str(p) for p in path.parents if (p / MANIFEST).exists()), str(path.parent))


def write_manifest(root) -> Path:
    """Hash every file under ``root`` (as a run's fingerprint walks it) into ``root/MANIFEST``."""
    root = Path(root).expanduser().resolve()
    files = [(rel, full) for rel, full in walk_files(root, set()) if rel != MANIFEST]
    hashes = file_hashes([full for _, full in files])
    rows = []
    for rel, full in files:
        st = Stat.of(full)
        if st is not None and hashes[full] != ABSENT:
            row = {"path": rel, "size": st.size, "mtime_ns": st.mtime_ns, "blake2b": hashes[full]}
            rows.append(json.dumps(row))
    atomic_write_text(root / MANIFEST, "\n".join(rows) + "\n")
    return root / MANIFEST


def main(argv=None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m harness.rundir.fingerprint",
        description=f"Write a dataset's checksum manifest (ROOT/{MANIFEST}): a planner then need not hash its files.",
    )
    p.add_argument("root", help="the dataset root, e.g. /data/Stanford_Online_Products")
    args = p.parse_args(argv)
    if not Path(args.root).expanduser().is_dir():
        print(f"error: {args.root} is not a directory; give the dataset root", file=sys.stderr)
        return 2
    path = write_manifest(args.root)
    print(f"{path}: {sum(1 for _ in path.open())} files")
    return 0


if __name__ == "__main__":
    sys.exit(main())
