"""What the run calls on every experiment tracker, and the values every adapter shares.

An adapter (one per file in this package, selected by ``conf/logger/*.yaml``) wraps one tracker's own client.
The run calls, in this order::

    start(run_dir, config, tags, resumed_from_epoch)  # config: the resolved, redacted config as a dict;
                                                       # returns the last step it verifiably holds, or None
    log_epoch(row)                                     # exactly an epochs.jsonl row; its step is row["epoch"]
    log_record(record, logged)                         # record.json at the end (test metrics, diagnostics);
                                                       # logged: the keys the epoch rows already carry
    log_images(paths, step)                            # the run's pictures (PNG paths)
    finish(status)                                     # finished | failed | pruned

Adapters never decide what to log again after a restart and never catch their own errors:
:class:`~harness.tracking.trackers.Trackers` does both in one place (each step once; a failing tracker costs one
warning, never the run).
"""

from __future__ import annotations

import hashlib
import importlib.util
import numbers
from pathlib import Path

from harness.errors import ConfigError
from harness.redact import redact_text
from harness.tracking.naming import SweepContext, parse_overrides, run_label, swept

# Record keys that are not results: the config, package versions and the commit are in the config / tags.
NOT_A_RESULT = ("config/", "versions/", "git/")


class Tracker:
    """The interface of an experiment tracker adapter. Subclasses implement every method."""

    name = "tracker"

    def start(self, run_dir: Path, config: dict, tags: dict, resumed_from_epoch: int | None) -> int | None:
        """Open (or reopen) the tracker run of ``run_dir``. Return the last step the tracker is known to hold when
        it can tell (e.g. from its own files), else None: then Trackers' record of what was sent decides."""
        raise NotImplementedError

    def log_epoch(self, row: dict) -> None:
        raise NotImplementedError

    def log_record(self, record: dict, logged: frozenset = frozenset()) -> None:
        """``logged``: the keys the epoch rows carry (``val/*``, ``init/*``, ``test/*`` with test_every_epoch):
        a step-based tracker leaves them out, so that no series gets a second value."""
        raise NotImplementedError

    def log_images(self, paths: list, step: int) -> None:
        raise NotImplementedError

    def finish(self, status: str) -> None:
        raise NotImplementedError


def require(module: str, pip_name: str, logger: str) -> None:
    """A missing client is a configuration error named before anything is built."""
    if importlib.util.find_spec(module) is None:
        raise ConfigError(
            f"logger={logger} needs the {module} client: pip install {pip_name} "
            f"(or pip install 'dml-harness[trackers]' for every tracker)"
        )


def run_key(run_dir) -> str:
    """The tracker run id of a run directory: the same directory (a resumed or requeued run) -> the same id."""
    return hashlib.sha1(str(Path(run_dir).resolve()).encode()).hexdigest()[:16]


def is_number(value) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def metrics_of(row: dict) -> dict:
    """The numeric values of an epochs.jsonl row, without its step (``epoch``)."""
    return {k: float(v) for k, v in row.items() if k != "epoch" and is_number(v)}


def record_results(record: dict, leave_out=frozenset()) -> dict:
    """The numeric results of a record, without the keys in ``leave_out``."""
    return {
        k: float(v)
        for k, v in record.items()
        if is_number(v) and not k.startswith(NOT_A_RESULT) and k not in ("seed", "epochs") and k not in leave_out
    }


def result_step(record: dict) -> int:
    """The step of a record's results: the selected epoch (test metrics are measured there)."""
    step = record.get("selected_epoch")
    return int(step) if is_number(step) else int(record.get("epochs") or 0)


def run_tags(config: dict, overrides, commit: str | None, context: SweepContext | None = None) -> dict:
    """The tags a tracker groups and names runs by: ``sweep`` (the sweep file, or ``grid <time>`` for an inline
    multirun grid), Optuna ``study`` and ``trial``, ``seed``, ``git_commit``, ``arm`` (a paper comparison's method |
    baseline), ``swept`` (the values the sweep varies, ``k=v ...``; of a single run: every value its command chose)
    and ``name`` (``cub200 · proxy_anchor + antico_pair w=0.3 · seed 1``); all redacted. ``context``: where the
    run sits (by default, from Hydra and the launcher)."""
    context = SweepContext.current() if context is None else context
    tags = {}
    for key, value in parse_overrides(overrides):
        if key == "sweep" and value:
            tags["sweep"] = value
        if key == "arm" and value:
            tags["arm"] = value
    if "sweep" not in tags and context.multirun:
        tags["sweep"] = f"grid {context.multirun}"
    search = config.get("search") or {}
    if search.get("study") is not None:
        tags["study"] = str(search["study"])
    if search.get("trial") is not None:
        tags["trial"] = str(search["trial"])
    if config.get("seed") is not None:
        tags["seed"] = str(config["seed"])
    if commit:
        tags["git_commit"] = str(commit)
    values = swept(overrides, context.keys)
    if values:
        tags["swept"] = redact_text(" ".join(f"{k}={v}" for k, v in values.items()))
    tags["name"] = run_label(config, overrides, context.keys)
    return tags
