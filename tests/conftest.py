"""Shared test helpers: compose the real config (hydra.compose) and shrink it for CPU."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig, open_dict
from xdist_groups import claim_for_one_worker, configure_worker, make_scheduler, remove_groups_dir, write_groups

REPO = Path(__file__).resolve().parents[1]
CONF = REPO / "conf"
SHARED_DATA = REPO.parent / "shared" / "data"


# The session's first test: it starts the SLURM sweeps, which then run in the background (see tests/test_slurm.py).
FIRST = "tests/test_slurm.py::test_slurm_sweeps_are_submitted_as_job_arrays"


def pytest_collection_modifyitems(config, items):
    items.sort(key=lambda item: item.nodeid != FIRST)  # stable: every other test keeps its place
    write_groups(config, items, worker_group)  # read by the controller's scheduler (tests/xdist_groups.py)


@pytest.hookimpl(optionalhook=True)
def pytest_configure_node(node):  # pytest-xdist's controller, for each worker
    configure_worker(node)


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config, log):
    return make_scheduler(config, log)


def pytest_unconfigure(config):
    remove_groups_dir(config)


def worker_group(item) -> str | None:
    """Which tests share a pytest-xdist worker (``make test`` runs one per core, ``--dist loadgroup``): those of a
    session-wide service together (the SLURM cluster and its sweeps, the `make run` grid), a file's tests when they
    share a module fixture (built once), and any other test wherever a worker is free. A group runs in collection
    order on one worker: the SLURM one starts first."""
    names = set(item.fixturenames)
    if item.nodeid.startswith("tests/test_slurm.py") or "slurm" in names:  # names: every fixture it reaches
        return "slurm"
    if "digits_ablation" in names:
        return "digits_ablation"
    scopes = {defs[-1].scope for defs in item._fixtureinfo.name2fixturedefs.values() if defs}
    if scopes & {"module", "class", "package"}:
        return item.nodeid.split("::")[0].removeprefix("tests/").removesuffix(".py")
    return None


def group_options(group: str) -> list:
    """Every file of a config group: parametrizing over it gives each new YAML a test for free."""
    return sorted(p.stem for p in (CONF / group).glob("*.yaml"))


def paper_presets() -> list:
    """The experiment files that claim a paper's setting (they name its published numbers, ``published:``);
    the others (experiment=omniglot) are the harness's own recipes."""
    return [p for p in group_options("experiment") if "published:" in (CONF / "experiment" / f"{p}.yaml").read_text()]


def compose_cfg(overrides=(), results: Path | None = None) -> DictConfig:
    overrides = list(overrides)
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose(config_name="config", overrides=overrides)
    if results is not None:
        with open_dict(cfg):
            cfg.paths.results = str(results)
            if not any("picture_map" in o for o in overrides):  # UMAP's first call compiles for ~25 s: runs in
                cfg.eval.picture_map = "pca"  # tests map with PCA (test_inspect draws UMAP)
    return cfg


def tiny(overrides=(), results: Path | None = None, epochs: int = 1) -> DictConfig:
    """The digits default, shrunk: a fast run for integration tests."""
    base = [f"trainer.epochs={epochs}", "trainer.progress=false"]
    return compose_cfg(base + list(overrides), results)


@pytest.fixture(scope="session")
def digits_ablation(request, tmp_path_factory) -> Path:
    """`make run`'s grid (sweeps/digits_ablation.yaml: 2 losses x {none, antico_pair} x 3 seeds, 30 epochs on
    digits), run once for the whole suite through the command a user types; every test that reads those runs shares
    it. Returns its results folder."""
    import subprocess
    import sys

    claim_for_one_worker("digits_ablation", request, tmp_path_factory)
    results = tmp_path_factory.mktemp("digits_ablation") / "results"
    command = [sys.executable, "run.py", "-m", "sweep=digits_ablation", f"paths.results={results}"]
    proc = subprocess.run(command, cwd=REPO, capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    return results


def exit_code(main, argv) -> int:
    """An entry point's exit code, called in this process (it exits through harness.cli.fail)."""
    try:
        return main(argv) or 0
    except SystemExit as done:
        return done.code


@pytest.fixture
def results(tmp_path) -> Path:
    path = tmp_path / "results"
    path.mkdir()
    return path


@pytest.fixture(scope="session", autouse=True)
def _every_record_carries_its_directory_digest(tmp_path_factory):
    """After the whole suite: every run directory it wrote (identity.json at the current version, and a record)
    carries one digest: record.json's config_hash = identity.json's digest[:8] = the hash in the directory's name."""
    yield
    from harness.rundir import identity, records

    wrong = []
    for path in Path(tmp_path_factory.getbasetemp()).rglob(identity.FILE):
        try:
            stored, record = records.load_json(path), records.read_record(path.parent)
        except (OSError, records.Corrupt):
            continue
        if not isinstance(stored, dict) or stored.get("version") != identity.VERSION or not record:
            continue
        named = identity.parse_dir_name(path.parent).get("config_hash")
        if not record.get("config_hash") == str(stored.get("digest"))[:8] == (named or record.get("config_hash")):
            wrong.append(f"{path.parent}: record {record.get('config_hash')}, identity {stored.get('digest')}")
    assert not wrong, f"{len(wrong)} run directories whose record, identity and name disagree: {wrong[:3]}"


@pytest.fixture(autouse=True)
def _no_stray_results(monkeypatch, tmp_path):
    # a test that forgets to pass its results dir still never writes into the repository's results/
    monkeypatch.setenv("HARNESS_RESULTS", str(tmp_path / "results-env"))


@pytest.fixture(scope="session", autouse=True)
def _hash_cache(tmp_path_factory):
    # the data's file hashes are cached in the session's temporary folder, never in the user's ~/.cache
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HARNESS_HASH_CACHE", str(tmp_path_factory.mktemp("hash-cache") / "hashes.sqlite3"))
        yield


@pytest.fixture(scope="session")
def slurm(request, tmp_path_factory):
    """One one-node SLURM cluster on localhost for the whole session (tests/slurm_cluster.py), stopped after it."""
    from slurm_cluster import LocalSlurm, cannot_start_reason

    claim_for_one_worker("slurm", request, tmp_path_factory)
    reason = cannot_start_reason()
    if reason:
        pytest.skip(f"no local SLURM cluster: {reason}")
    root = Path(tempfile.mkdtemp(prefix="harness-slurm-"))  # short: munge's socket path must fit in 108 bytes
    cluster = LocalSlurm(root)
    saved = os.environ.get("SLURM_CONF")
    try:
        cluster.start()
        os.environ.update(cluster.env)  # scancel / scontrol from the tests
        yield cluster
    finally:
        cluster.client(["scancel", "--user", str(os.getuid())], check=False)
        cluster.stop()
        if saved is None:
            os.environ.pop("SLURM_CONF", None)
        else:
            os.environ["SLURM_CONF"] = saved
        shutil.rmtree(root, ignore_errors=True)
