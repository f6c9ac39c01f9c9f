"""The Optuna search on a real PostgreSQL server (tests/postgres_server.py, started and stopped here): four
concurrent workers, one killed mid-trial; no trial lost, none left RUNNING, the URL's password nowhere on disk.
And a database URL whose driver is not installed: one line naming the pip package, nothing launched."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from urllib.parse import quote

import optuna
import pytest
from conftest import REPO
from optuna.trial import TrialState
from search_kill import kill_a_worker_mid_trial
from test_search import TINY

from harness.rundir import records
from harness.search.study import counted, tally

STUDY = "tune_eps"


@pytest.fixture(scope="module")
def postgres():
    from postgres_server import LocalPostgres, cannot_start_reason

    reason = cannot_start_reason()
    if reason:
        pytest.skip(f"no local PostgreSQL server: {reason}")
    root = Path(tempfile.mkdtemp(prefix="harness-pg-"))  # under /tmp: the server's user must reach it
    server = LocalPostgres(root)
    try:
        try:
            server.start()
        except (subprocess.CalledProcessError, OSError, RuntimeError) as err:
            pytest.skip(f"PostgreSQL did not start: {getattr(err, 'stderr', '') or err}"[:500])
        yield server
    finally:
        server.stop()
        shutil.rmtree(root, ignore_errors=True)


def secret_pieces(url: str) -> list:
    from postgres_server import PASSWORD

    return [url, PASSWORD, quote(PASSWORD, safe=""), "s3cr3t", "p%40ss"]


@pytest.mark.slow
def test_four_workers_on_postgresql_one_killed_lose_no_trial_and_leave_no_password(results, postgres, tmp_path):
    env = dict(os.environ, HARNESS_OPTUNA_STORAGE=postgres.url)
    cmd = [
        sys.executable,
        "run.py",
        "-m",
        "sweep=tune_eps",
        f"paths.results={results}",
        "hydra/launcher=submitit_local",
        *TINY,
        "trainer.epochs=4",
        "hydra.sweeper.n_trials=5",
        "hydra.sweeper.n_workers=4",
        "hydra.sweeper.storage=env",
        "hydra.sweeper.pruner=null",
    ]
    log = tmp_path / "driver.log"
    with open(log, "w") as out:
        driver = subprocess.Popen(cmd, cwd=REPO, stdout=out, stderr=subprocess.STDOUT, text=True, env=env)
        storage = optuna.storages.RDBStorage(postgres.url)
        try:
            victim = kill_a_worker_mid_trial(lambda: optuna.load_study(study_name=STUDY, storage=storage), driver)
            driver.wait(timeout=500)
        finally:
            if driver.poll() is None:
                driver.kill()
    assert driver.returncode == 0, log.read_text()[-4000:]
    trials = optuna.load_study(study_name=STUDY, storage=storage).get_trials()
    assert not [t for t in trials if t.state in (TrialState.RUNNING, TrialState.WAITING)]
    assert len(tally(trials).done) == 5 and len(counted(trials)) == 5  # no trial lost, none counted twice
    assert all(t.state == TrialState.COMPLETE for t in counted(trials))
    assert len({t.user_attrs["worker"] for t in trials}) >= 4  # four workers (and a fifth process for the retry)
    assert trials[victim.number].state == TrialState.FAIL
    retry = next(t for t in trials if t.system_attrs.get("retry_history") == [victim.number])
    assert retry.state == TrialState.COMPLETE and retry.user_attrs["run_dir"] == victim.user_attrs["run_dir"]
    for t in counted(trials):
        assert records.read_record(t.user_attrs["run_dir"])["status"] == "finished"

    files = [p for p in results.rglob("*") if p.is_file()] + [log]
    assert len(files) > 50
    leaks = [(p, s) for p in files for s in secret_pieces(postgres.url) if s.encode() in p.read_bytes()]
    assert not leaks, leaks[:5]
    assert "$HARNESS_OPTUNA_STORAGE" in (results / "search" / STUDY / "best.yaml").read_text()


def test_a_database_url_without_its_driver_is_one_line_naming_the_package(results):
    url = f"postgresql+pg8000://optuna:{quote('hunter@2', safe='')}@127.0.0.1:1/optuna"
    proc = subprocess.run(
        [
            sys.executable,
            "run.py",
            "-m",
            "sweep=tune_eps",
            f"paths.results={results}",
            *TINY,
            "hydra.sweeper.storage=env",
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
        env=dict(os.environ, HARNESS_OPTUNA_STORAGE=url),
    )
    assert proc.returncode == 2, proc.stderr[-3000:]
    line = proc.stderr.strip().splitlines()[-1]
    assert line == (
        "error: the postgresql+pg8000 storage in $HARNESS_OPTUNA_STORAGE needs the database driver "
        "'pg8000', which is not installed: pip install pg8000"
    )
    assert "Traceback" not in proc.stderr and "hunter" not in proc.stderr + proc.stdout
    assert not (results / "runs").exists()
