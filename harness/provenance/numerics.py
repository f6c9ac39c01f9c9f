"""What a run's numbers depend on besides its config and data: the code on the numerical path, the precision.

Recorded in every record (``code/numerical``, ``precision``) so that the tables never average runs whose numbers
came from different code or arithmetic (harness.tables.mixing):

* ``code/numerical``: a hash of the modules a run's numbers depend on (data, models, losses, regularizers,
  evaluation, distributed, the training step and loop, runtime), each normalised as its syntax tree without
  docstrings and printed back (``ast.unparse``): a formatting, comment or docs commit changes nothing; a changed
  expression changes the hash. The git commit stays in the record as provenance, but two commits with the same
  numerical code are one code.
* ``precision``: the arithmetic the run trained in: ``float32``, or ``bf16`` / ``fp16`` under CUDA autocast
  (``trainer.amp=auto`` is float32 on a CPU and bf16 on a GPU under one config).
"""

from __future__ import annotations

import ast
import functools
import hashlib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]  # the harness package
# the packages and modules on the numerical path, relative to the harness package
NUMERICAL = (
    "data",
    "models",
    "losses",
    "regularizers",
    "evaluation",
    "distributed",
    "training/build.py",
    "training/fit.py",
    "training/step.py",
    "runtime/device.py",
)
# modules under those packages that never touch a number (reloading, console lines, faiss's install advice)
OFF_PATH = ("models/reload.py", "evaluation/faiss_build.py", "evaluation/per_query.py")


def numerical_modules() -> list[Path]:
    files = []
    for entry in NUMERICAL:
        path = ROOT / entry
        files.extend(sorted(path.rglob("*.py")) if path.is_dir() else [path])
    return [f for f in files if f.relative_to(ROOT).as_posix() not in OFF_PATH]


def normalised_source(source: str) -> str:
    """The module as its syntax tree prints it back, docstrings left out (comments and layout never reach it)."""
    tree = ast.parse(source)
    for node in ast.walk(tree):
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
                if isinstance(body[0].value.value, str):
                    node.body = body[1:] or [ast.Pass()]
    return ast.unparse(tree)


def code_hash(files: list[Path], root: Path) -> str:
    digest = hashlib.blake2b(digest_size=8)
    for f in files:
        digest.update(f.relative_to(root).as_posix().encode() + b"\0")
        digest.update(normalised_source(f.read_text()).encode() + b"\0")
    return digest.hexdigest()


@functools.cache
def numerical_code_hash() -> str:
    """The hash of this installation's numerical code (computed once per process)."""
    return code_hash(numerical_modules(), ROOT)


def effective_precision(device, amp: str) -> str:
    """The arithmetic of training: autocast runs only on CUDA (harness.runtime.autocast_for)."""
    if getattr(device, "type", str(device)) != "cuda" or amp in (None, "off", False):
        return "float32"
    return str(amp)


def numerics(device, amp: str) -> dict:
    """The record's keys."""
    return {"code/numerical": numerical_code_hash(), "precision": effective_precision(device, amp)}
