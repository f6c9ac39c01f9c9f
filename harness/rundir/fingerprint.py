"""The data a run reads, as a short fingerprint that enters the run's identity (not the path it lives at).

* A dataset read from disk (any ``root`` key of the dataset config): the sorted list of every file under the
  root, as (relative path, size). Another tree at the same path, a file added, removed, renamed or rewritten
  with another size, gives another fingerprint; the same tree copied elsewhere (another cluster's
  ``paths.data``) gives the same. Dot-files (``.DS_Store``, editors' locks) are left out. Cost: one ``stat``
  per file (about a second for SOP's 120k images on a local disk), once per process and root.
* A dataset built in memory (no root; e.g. scikit-learn's digits): the bytes of every split's inputs and labels.

A root that does not exist is fingerprinted as absent (the dataset's own loader then says what to do).
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
from pathlib import Path

import numpy as np

LENGTH = 12


def data_fingerprint(dataset: dict, build=None) -> str:
    """The fingerprint of the data a dataset config reads (see the module docstring).

    ``dataset`` is the resolved dataset config as plain data; ``build()`` returns the built data and is called
    only for in-memory datasets (those without a root).
    """
    roots = sorted(find_roots(dataset))
    h = hashlib.sha1()
    if roots:
        for where, root in roots:
            h.update(f"{where}\0{tree_fingerprint(str(root))}\0".encode())
    elif build is not None:
        h.update(arrays_fingerprint(build()).encode())
    else:
        return "none"
    return h.hexdigest()[:LENGTH]


def find_roots(node, where: str = "dataset") -> list:
    """(dotted key, path) of every ``root`` / ``*_root`` string in a config node."""
    out = []
    if isinstance(node, dict):
        for key, value in node.items():
            here = f"{where}.{key}"
            if isinstance(value, str) and (key == "root" or str(key).endswith("_root")):
                out.append((here, value))
            else:
                out.extend(find_roots(value, here))
    elif isinstance(node, (list, tuple)):
        for i, value in enumerate(node):
            out.extend(find_roots(value, f"{where}[{i}]"))
    return out


@functools.lru_cache(maxsize=64)
def tree_fingerprint(root: str) -> str:
    """sha1 of the sorted (relative path, size) of every file under ``root`` (a file root: its name and size)."""
    path = Path(root)
    h = hashlib.sha1()
    if not path.exists():
        return "absent"
    if path.is_file():
        h.update(f"{path.name}\0{path.stat().st_size}\n".encode())
        return h.hexdigest()
    seen = set()
    for rel, size in sorted(walk_files(path, seen)):
        h.update(f"{rel}\0{size}\n".encode())
    return h.hexdigest()


def walk_files(root: Path, seen: set, prefix: str = ""):
    """(relative path, size) of the files under ``root``, following symlinks once (no loops), dot-files left out."""
    try:
        st = root.stat()
    except OSError:
        return
    if (st.st_dev, st.st_ino) in seen:
        return
    seen.add((st.st_dev, st.st_ino))
    try:
        entries = list(os.scandir(root))
    except OSError:
        return
    for entry in entries:
        if entry.name.startswith("."):
            continue
        rel = f"{prefix}{entry.name}"
        try:
            if entry.is_dir():
                yield from walk_files(Path(entry.path), seen, rel + "/")
            elif entry.is_file():
                yield rel, entry.stat().st_size
        except OSError:  # a dangling link or a file removed while walking: not part of the data
            continue


def arrays_fingerprint(data) -> str:
    """sha1 of every split's inputs and labels of a built :class:`~harness.data.base.DMLData` (in-memory data)."""
    h = hashlib.sha1()
    for name, split in splits(data):
        inputs = getattr(split, "inputs", None)
        labels = getattr(split, "labels", None)
        h.update(name.encode())
        for array in (inputs, labels):
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


@functools.lru_cache(maxsize=16)
def _file_digest(path: str, size: int, mtime_ns: int) -> str:
    h = hashlib.sha1()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()[:LENGTH]


def file_digest(path: str) -> str:
    """sha1 of a file's content (a weights file: files of one architecture all have the same size), cached."""
    try:
        st = os.stat(path)
    except OSError:
        return "absent"
    return _file_digest(str(path), st.st_size, st.st_mtime_ns)
