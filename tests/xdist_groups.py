"""Tests that must share one pytest-xdist worker, kept on one (``make test`` runs a worker per core).

pytest-xdist's ``--dist loadgroup`` keeps the tests marked ``xdist_group`` together by renaming their node ids on the
worker (``item._nodeid = ...@group``). pytest 9.2 reads a node's id from elsewhere, so the rename is lost, every
group is split, and each worker builds every session fixture for itself: two SLURM clusters running every sweep
twice, the ``make run`` grid trained twice (seen in the suite: about 250 CPU-s of 1085). Here the groups travel
beside the ids instead: each worker writes {node id: group} for the tests it collected, and the controller's
scheduler, pytest-xdist's own load-scope one, reads a test's scope from that map (a test without a group is its
own scope, so it goes wherever a worker is free). ``claim_for_one_worker`` turns a split group into a failure
that names this module, instead of a slower suite.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

import pytest
from xdist.scheduler import LoadScopeScheduling

GROUPS_DIR = "harness_worker_groups"  # the key in each worker's ``workerinput``


class GroupScheduling(LoadScopeScheduling):
    """pytest-xdist's load-scope scheduling, with a test's scope read from the groups its workers wrote."""

    def __init__(self, config, log=None, groups_dir: Path | None = None) -> None:
        super().__init__(config, log)
        self.groups_dir = groups_dir
        self.groups: dict | None = None

    def _split_scope(self, nodeid: str) -> str:  # private: pinned in tests/test_dependencies.py
        if self.groups is None:  # read once every worker has collected (the scheduler starts after that)
            self.groups = {}
            for path in sorted(Path(self.groups_dir).glob("*.json")):
                self.groups.update(json.loads(path.read_text()))
        group = self.groups.get(nodeid)
        return f"group:{group}" if group else nodeid


def make_scheduler(config, log) -> GroupScheduling | None:
    """The controller's scheduler for ``--dist loadgroup``; other modes keep pytest-xdist's."""
    return GroupScheduling(config, log, groups_dir=groups_dir(config)) if grouping(config) else None


def grouping(config) -> bool:
    return config.getvalue("dist") == "loadgroup"


def configure_worker(node) -> None:
    """On the controller, for each worker: where to write its groups (under ``--dist loadgroup`` only)."""
    if grouping(node.config):
        node.workerinput[GROUPS_DIR] = str(groups_dir(node.config))


def groups_dir(config) -> Path:
    """The controller's folder for the workers' maps: made once, removed at the end of the session."""
    if not hasattr(config, "_harness_groups_dir"):
        config._harness_groups_dir = Path(tempfile.mkdtemp(prefix="pytest-groups-"))
    return config._harness_groups_dir


def remove_groups_dir(config) -> None:
    """At the end of the controller's session."""
    if hasattr(config, "_harness_groups_dir"):
        shutil.rmtree(config._harness_groups_dir, ignore_errors=True)


def write_groups(config, items: list, group_of: Callable) -> None:
    """On a worker: {node id: group} for the tests it collected, where the controller reads it."""
    folder = getattr(config, "workerinput", {}).get(GROUPS_DIR)
    if not folder:
        return
    groups = {item.nodeid: group for item in items if (group := group_of(item))}
    path = Path(folder) / f"{config.workerinput['workerid']}.json"
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(groups))
    os.replace(tmp, path)


def claim_for_one_worker(name: str, request, tmp_path_factory) -> None:
    """A session fixture that must exist once per suite (a service, a shared grid) calls this first: on a second
    worker it fails, naming the cause, instead of quietly building it again (under ``--dist loadgroup``, where the
    groups should hold; another ``--dist`` mode may build it on every worker)."""
    worker = os.environ.get("PYTEST_XDIST_WORKER")
    if not worker or not getattr(request.config, "workerinput", {}).get(GROUPS_DIR):
        return
    claim = Path(tmp_path_factory.getbasetemp()).parent / f"{name}.claimed-by"  # the session's shared folder
    try:
        fd = os.open(claim, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
    except FileExistsError:
        pytest.fail(
            f"the session fixture {name!r} was asked for on {worker} after {claim.read_text()} built it: its tests "
            f"were split across workers (tests/xdist_groups.py's scheduler was not in effect)"
        )
    with os.fdopen(fd, "w") as f:
        f.write(worker)
