"""Launching sweeps and surviving interruptions: exact resume on CPU, the local launcher, and SLURM through
submitit on a real one-node cluster (munged + slurmctld + slurmd on localhost, tests/slurm_cluster.py).

The SLURM tests submit every sweep of this module at once, so the cluster runs them side by side (the time-out
test alone takes most of a minute: two attempts stopped by USR2 and SLURM's requeue delay), and each test then
waits for its own. The first test submits them, so they run while the CPU tests do; any test also runs alone.
They skip, saying why, only where a cluster cannot start: not root, or no packages and no way to install them.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from conftest import REPO, tiny

import harness
from harness.launch import sweep as launching
from harness.rundir import checkpoint as ckpt
from harness.rundir import records
from harness.rundir.run_dir import RunDir

# One run that is interrupted and must end exactly as the uninterrupted one: 8 epochs of digits, seconds on CPU.
RESUMED = ["seed=3"]
RESUMED_EPOCHS = 8


def metrics(record: dict) -> dict:
    """What a run computed (timings, host and attempts aside)."""
    computed = ("test", "val", "diag", "init")
    return {k: v for k, v in record.items() if k == "selected_epoch" or k.split("/")[0] in computed}


def epoch_rows(run_dir: Path) -> list:
    return [{k: v for k, v in row.items() if not k.startswith("time/")} for row in records.read_epochs(run_dir)]


def checkpointed_epoch(run_dir: Path) -> int:
    return json.loads(ckpt.load(run_dir / "checkpoints" / ckpt.LAST)["state"])["epoch"]


def trained_epochs(run_dir: Path) -> int:
    try:
        return max((row["epoch"] for row in records.read_epochs(run_dir)), default=0)
    except (json.JSONDecodeError, KeyError):  # a line being written
        return 0


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """The uninterrupted run: its record and its per-epoch rows."""
    cfg = tiny(RESUMED, tmp_path_factory.mktemp("reference"), epochs=RESUMED_EPOCHS)
    record = harness.run(cfg)
    assert record["status"] == "finished" and record["attempts"] == 1
    return record, epoch_rows(RunDir.for_config(cfg).path)


def assert_same_run(record: dict, run_dir: Path, reference) -> None:
    ref_record, ref_rows = reference
    assert record["status"] == "finished"
    assert metrics(record) == metrics(ref_record)  # exactly: same floats, not approximately
    assert epoch_rows(run_dir) == ref_rows


@pytest.mark.slurm
def test_slurm_sweeps_are_submitted_as_job_arrays(sweeps):
    """Also starts the SLURM sweeps (session fixture): the first test of the session, so that they run while the
    rest of the suite does."""
    for name, sweep in sweeps.items():
        wait_for(lambda: list(sweep.sweep_dir.glob(".submitit/*/*_submission.sh")), sweep, f"{name}'s submission")  # noqa: B023
    [grid] = sweeps["grid"].sweep_dir.glob(".submitit/*/*_submission.sh")
    script = grid.read_text()
    assert "#SBATCH --array=0-2%" in script and "#SBATCH --signal=USR2@120" in script
    assert "export PYTHONSAFEPATH=1" in script  # the code snapshot
    [limited] = sweeps["time_limit"].sweep_dir.glob(".submitit/*/*_submission.sh")
    assert "#SBATCH --time=2\n" in limited.read_text() and "#SBATCH --signal=USR2@30" in limited.read_text()


# ----------------------------------------------------------------------------------------------- CPU: exact resume
class Interrupted(Exception):
    pass


@pytest.mark.slow
def test_run_interrupted_mid_training_resumes_exactly(results, reference):
    cfg = tiny(RESUMED, results, epochs=RESUMED_EPOCHS)
    run_dir = RunDir.for_config(cfg).path

    def interrupt_at_epoch_4(epoch, val):
        if epoch == 4:
            raise Interrupted("pre-empted")

    with pytest.raises(Interrupted):
        harness.run(cfg, on_evaluate=interrupt_at_epoch_4)
    failed = records.read_record(run_dir)
    assert failed["status"] == "failed" and "Interrupted" in (run_dir / "error.txt").read_text()
    assert checkpointed_epoch(run_dir) == 3  # interrupted in epoch 4, before its checkpoint

    record = harness.run(cfg)  # the same command again: resumes from epoch 3
    assert record["attempts"] == 2
    assert_same_run(record, run_dir, reference)


# The child dies by SIGKILL half-way through writing last.pt for the KILL_AT-th time, as a node losing power would.
KILL_WHILE_SAVING = """
import os, runpy, signal, sys
import harness.rundir.checkpoint as checkpoint
real_write, saves = checkpoint.write_file, []
def write_and_die(path, data):
    if ".last.pt." in os.path.basename(str(path)):  # atomic_save's temporary file for last.pt
        saves.append(path)
        if len(saves) == {kill_at}:
            real_write(path, data)
            os.truncate(path, os.path.getsize(path) // 2)
            os.kill(os.getpid(), signal.SIGKILL)
    return real_write(path, data)
checkpoint.write_file = write_and_die
sys.argv = ["run.py", *sys.argv[1:]]
runpy.run_path("run.py", run_name="__main__")
"""


@pytest.mark.slow
def test_run_killed_while_writing_a_checkpoint_resumes_from_the_previous_one(results, reference):
    overrides = [*RESUMED, f"trainer.epochs={RESUMED_EPOCHS}", f"paths.results={results}", "trainer.progress=false"]
    child = subprocess.run(
        [sys.executable, "-c", KILL_WHILE_SAVING.format(kill_at=3), *overrides],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert child.returncode == -9, child.stderr[-2000:]
    run_dir = RunDir.for_config(tiny(RESUMED, results, epochs=RESUMED_EPOCHS)).path
    assert list((run_dir / "checkpoints").glob(".last.pt.*.tmp")), "the kill did not land inside a checkpoint write"
    assert checkpointed_epoch(run_dir) == 2  # the previous checkpoint is intact
    assert records.read_record(run_dir) is None  # killed: no record at all, certainly not a finished one
    assert trained_epochs(run_dir) == 3

    record = harness.run(tiny(RESUMED, results, epochs=RESUMED_EPOCHS))
    assert record["attempts"] == 2
    assert "resumed from epoch 2" in (run_dir / "run.log").read_text()
    assert_same_run(record, run_dir, reference)


# ----------------------------------------------------------------------------------------------- the local launcher
def sweep_command(overrides: list, results: Path, sweep_dir: Path) -> list:
    return [
        sys.executable,
        "run.py",
        "-m",
        f"paths.results={results}",
        f"hydra.sweep.dir={sweep_dir}",
        "trainer.progress=false",
        *overrides,
    ]


def run_sweep(overrides: list, results: Path, sweep_dir: Path, env: dict | None = None, timeout: float = 300):
    return subprocess.run(
        sweep_command(overrides, results, sweep_dir), cwd=REPO, capture_output=True, text=True, timeout=timeout, env=env
    )


@pytest.mark.slow
def test_local_launchers_go_on_after_a_failed_run_and_skip_finished_ones(tmp_path):
    results = tmp_path / "results"
    grid = ["trainer.epochs=1", "optimizer.lr=1e-3,1e30"]  # lr=1e30: a NaN loss at the first step
    first = run_sweep(grid, results, tmp_path / "sweep1")
    assert first.returncode != 0  # a failed run fails the sweep, after every run was tried
    summary = read_summary(tmp_path / "sweep1")
    assert summary["launcher"] == "local" and summary["counts"] == {"finished": 1, "failed": 1}
    failed = next(job for job in summary["jobs"] if job["status"] == "failed")
    assert "NonFiniteLossError" in failed["error"]
    assert failed["error_file"] == str(Path(failed["run_dir"]) / "error.txt")
    assert "Traceback" in Path(failed["error_file"]).read_text()
    assert f"error: {failed['error_file']}" in first.stdout + first.stderr  # the path is printed too

    # again, as parallel local processes through submitit: only the failed run is launched
    again = run_sweep(["hydra/launcher=submitit_local", *grid], results, tmp_path / "sweep2")
    summary = read_summary(tmp_path / "sweep2")
    assert summary["launcher"] == "submitit_local", again.stdout[-2000:]
    assert summary["counts"] == {"skipped": 1, "failed": 1}
    failed = next(job for job in summary["jobs"] if job["status"] == "failed")
    assert "NonFiniteLossError" in Path(failed["error_file"]).read_text() and Path(failed["log"]).exists()


# ----------------------------------------------------------------------------------------------- SLURM
ON_LOCAL_CLUSTER = [
    "hydra/launcher=slurm",
    "hydra.launcher.gpus_per_node=null",
    "hydra.launcher.cpus_per_task=1",
    "hydra.launcher.mem_gb=null",
]
SWEEPS = {
    "interrupted": [*RESUMED, f"trainer.epochs={RESUMED_EPOCHS}"],
    "grid": ["trainer.epochs=2", "seed=0,1,2"],
    "raises": ["trainer.epochs=2", "optimizer.lr=1e-3,1e30"],
    # never finishes; USR2 comes 60-90 s in (SLURM sends it once less than signal_delay_s plus its 30-s check
    # interval is left), late enough for submitit's handler to be in place: the handler is installed only after the
    # job's pickle is loaded (torch imported), which took over 30 s under a load of 2 beside the suite, and a USR2
    # before it kills the job (a 1-minute limit sent it 0-30 s in)
    "time_limit": [
        "trainer.epochs=100000",
        "hydra.launcher.timeout_min=2",
        "hydra.launcher.signal_delay_s=30",  # 30 s for submitit to requeue before the limit, on a busy machine too
        "hydra.launcher.max_num_timeout=1",
    ],
    # the interrupted run again, as one job of 2 tasks (2 processes, gloo), pre-empted mid-training too
    "two_tasks": [*RESUMED, f"trainer.epochs={RESUMED_EPOCHS}", "trainer.devices=2"],
    # cancelled (scancel) as soon as it is submitted: it leaves no result, and this cluster keeps no accounting
    "cancelled": ["trainer.epochs=100000", "seed=5", "hydra.launcher.lost_after_s=10"],
}


@dataclass
class Sweep:
    """A ``run.py -m hydra/launcher=slurm`` command running in the background."""

    proc: subprocess.Popen
    results: Path
    sweep_dir: Path
    log: Path
    note: dict = field(default_factory=dict)  # what a test's helper thread did to it

    def wait(self, timeout: float = 420) -> tuple:
        try:
            rc = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            raise AssertionError(f"the sweep did not end within {timeout:.0f}s:\n{self.output()[-3000:]}") from None
        return rc, read_summary(self.sweep_dir), self.output()

    def output(self) -> str:
        return self.log.read_text(errors="replace")


def start_sweep(name: str, overrides: list, base: Path, env: dict) -> Sweep:
    results, sweep_dir, log = base / name / "results", base / name / "sweep", base / f"{name}.log"
    results.mkdir(parents=True)
    with open(log, "w") as out:
        proc = subprocess.Popen(
            sweep_command([*ON_LOCAL_CLUSTER, *overrides], results, sweep_dir),
            cwd=REPO,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    return Sweep(proc, results, sweep_dir, log)


@pytest.fixture(scope="session")
def sweeps(slurm, tmp_path_factory):
    """The SLURM sweeps, started by the session's first test (tests/conftest.py puts it first) and run in the
    background while the rest of the suite runs: their jobs wait on SLURM's clock (the time-limit job alone needs
    two rounds of 60-90 s), which would otherwise be minutes of an idle suite."""
    base = tmp_path_factory.mktemp("slurm")
    env = dict(os.environ, **slurm.env)
    started = {name: start_sweep(name, overrides, base, env) for name, overrides in SWEEPS.items()}
    run_dir = RunDir.for_config(tiny(RESUMED, started["interrupted"].results, epochs=RESUMED_EPOCHS)).path
    interrupter = threading.Thread(
        target=preempt_mid_training, args=(started["interrupted"], run_dir, slurm), daemon=True
    )
    interrupter.start()
    two_dir = RunDir.for_config(tiny(SWEEPS["two_tasks"], started["two_tasks"].results)).path
    two_interrupter = threading.Thread(
        target=preempt_mid_training, args=(started["two_tasks"], two_dir, slurm), daemon=True
    )
    two_interrupter.start()
    duplicate = threading.Thread(
        target=rerun_while_queued, daemon=True, args=(started["time_limit"], base / "time_limit_again", env)
    )
    duplicate.start()
    canceller = threading.Thread(target=cancel_once_submitted, args=(started["cancelled"], slurm), daemon=True)
    canceller.start()
    yield started
    for sweep in started.values():
        if sweep.proc.poll() is None:
            sweep.proc.kill()
            sweep.proc.wait()
    interrupter.join(timeout=10)
    two_interrupter.join(timeout=10)
    duplicate.join(timeout=10)
    canceller.join(timeout=10)


def preempt_mid_training(sweep: Sweep, run_dir: Path, slurm) -> None:
    """Once the run has trained 2 of its epochs, do what SLURM does to a pre-empted job (submitit's
    ``job._interrupt()``: SIGTERM, then USR2), then wait for SLURM to count the requeue (read now: SLURM forgets a
    finished job after MinJobAge, before the suite reaches the test). Runs beside the other sweeps; the test reads
    ``sweep.note``."""
    import submitit

    try:
        wait_for(lambda: trained_epochs(run_dir) >= 2, sweep, "second epoch")
        [job_id] = job_ids(sweep)
        submitit.SlurmJob(folder=sweep.sweep_dir / ".submitit" / "%j", job_id=job_id)._interrupt()
        at_epoch = trained_epochs(run_dir)

        def restarts() -> str:
            shown = slurm.client(["scontrol", "show", "job", job_id], check=False).stdout
            return (re.findall(r"Restarts=(\d+)", shown) or ["?"])[0]

        wait_for(lambda: restarts() not in ("0", "?"), sweep, "SLURM's count of the requeue", sweep_may_end=True)
        sweep.note = {"job_id": job_id, "at_epoch": at_epoch, "restarts": restarts()}
    except BaseException as err:  # reported by the test
        sweep.note = {"error": f"{type(err).__name__}: {err}"}


def rerun_while_queued(sweep: Sweep, sweep_dir: Path, env: dict) -> None:
    """Type the sweep's command again while its job is still in SLURM: nothing may be submitted twice."""
    try:
        wait_for(lambda: list(sweep.results.glob(f"runs/*/*/{launching.JOB_FILE}")), sweep, "submission")
        again = run_sweep([*ON_LOCAL_CLUSTER, *SWEEPS["time_limit"]], sweep.results, sweep_dir, env=env)
        sweep.note = {
            "rc": again.returncode,
            "summary": read_summary(sweep_dir),
            "submitted": (sweep_dir / ".submitit").exists(),
            "still_running": sweep.proc.poll() is None,
        }
    except BaseException as err:
        sweep.note = {"error": f"{type(err).__name__}: {err}"}


def cancel_once_submitted(sweep: Sweep, slurm) -> None:
    """``scancel`` the sweep's job as soon as its run names it, queued or starting."""
    try:
        wait_for(lambda: list(sweep.results.glob(f"runs/*/*/{launching.JOB_FILE}")), sweep, "submission")
        [job_file] = sweep.results.glob(f"runs/*/*/{launching.JOB_FILE}")
        job_id = json.loads(job_file.read_text())["job_id"]
        slurm.client(["scancel", job_id])
        sweep.note = {"job_id": job_id}
    except BaseException as err:
        sweep.note = {"error": f"{type(err).__name__}: {err}"}


def wait_for(condition, sweep: Sweep, what: str, timeout: float = 300, sweep_may_end: bool = False) -> None:
    """Poll ``condition`` until it holds; fail when the sweep ends first (unless ``sweep_may_end``: a condition that
    stays readable after it ends) or after ``timeout`` seconds."""
    deadline = time.time() + timeout
    while not condition():
        if sweep.proc.poll() is not None and not sweep_may_end:
            raise AssertionError(f"the sweep ended before {what}:\n{sweep.output()[-3000:]}")
        if time.time() > deadline:
            raise AssertionError(f"no {what} within {timeout:.0f}s:\n{sweep.output()[-3000:]}")
        time.sleep(0.1)


def job_ids(sweep: Sweep) -> list:
    """The SLURM ids of the sweep's jobs that started (submitit's folder per job holds its log)."""
    return sorted({log.parent.name for log in (sweep.sweep_dir / ".submitit").glob("*/*_log.out")})


@pytest.mark.slow
@pytest.mark.slurm
def test_slurm_preempted_run_is_requeued_and_resumes_exactly(sweeps, slurm, reference):
    sweep = sweeps["interrupted"]
    rc, summary, output = sweep.wait()
    assert rc == 0, output[-3000:]
    assert summary["counts"] == {"finished": 1}
    assert "job_id" in sweep.note, sweep.note
    run_dir = Path(summary["jobs"][0]["run_dir"])
    record = records.read_record(run_dir)
    assert record["attempts"] == 2, f"the interruption did not land mid-training: {sweep.note}"
    assert_same_run(record, run_dir, reference)
    job_log = Path(summary["jobs"][0]["log"]).read_text()
    assert "this job is preempted" in job_log and "Requeued job" in job_log
    assert sweep.note["restarts"] == "1", sweep.note  # read by the helper while SLURM still knew the job


@pytest.mark.slow
@pytest.mark.slurm
def test_slurm_grid_leaves_a_record_per_run_and_rerunning_submits_nothing(sweeps, slurm):
    sweep = sweeps["grid"]
    rc, summary, output = sweep.wait()
    assert rc == 0, output[-3000:]
    assert summary["counts"] == {"finished": 3} and len(job_ids(sweep)) == 3
    runs = [records.read_record(Path(job["run_dir"])) for job in summary["jobs"]]
    assert sorted(r["seed"] for r in runs) == [0, 1, 2] and {r["status"] for r in runs} == {"finished"}
    # a quiet console: submitit's sacct warning at most once, no faiss loader lines, one line per job state change
    assert output.count("Bypassing sacct error") <= 1, output[-3000:]
    assert "Loading faiss" not in output and "Successfully loaded faiss" not in output
    assert "Slurm accounting storage is disabled" not in output
    for job_id in job_ids(sweep):
        states = re.findall(rf"job {job_id} \(#\d+\): (\w+)", output)
        assert states and all(a != b for a, b in zip(states, states[1:])), (job_id, states)
    # the jobs ran a snapshot of the submitted tree, and each record names its commit
    code = summary["code"]
    assert {r["git/commit"] for r in runs} == {code["commit"]}
    assert f"runs the harness code in {code['dir']}/harness" in Path(summary["jobs"][0]["log"]).read_text()

    again_dir = sweep.sweep_dir.parent / "sweep_again"  # the same command again, the same results
    again = run_sweep([*ON_LOCAL_CLUSTER, *SWEEPS["grid"]], sweep.results, again_dir, env=dict(os.environ, **slurm.env))
    assert again.returncode == 0, again.stdout[-3000:]
    assert read_summary(again_dir)["counts"] == {"skipped": 3}
    assert not (again_dir / ".submitit").exists()  # nothing was submitted


@pytest.mark.slow
@pytest.mark.slurm
def test_slurm_run_that_raises_is_reported_with_its_traceback_and_others_finish(sweeps):
    rc, summary, output = sweeps["raises"].wait()
    assert rc != 0
    assert summary["counts"] == {"finished": 1, "failed": 1}
    failed = next(job for job in summary["jobs"] if job["status"] == "failed")
    assert "NonFiniteLossError" in failed["error"]
    assert failed["error_file"] == str(Path(failed["run_dir"]) / "error.txt")
    assert "Traceback" in Path(failed["error_file"]).read_text() and Path(failed["log"]).exists()
    assert f"error: {failed['error_file']}" in output


@pytest.mark.slow
@pytest.mark.slurm
def test_slurm_time_limit_requeues_up_to_max_num_timeout_then_fails(sweeps):
    rc, summary, output = sweeps["time_limit"].wait()
    assert rc != 0
    [job] = summary["jobs"]
    assert job["status"] == "failed" and "timed-out too many times" in job["error"], job
    job_log = Path(job["log"]).read_text()
    signals = set(re.findall(r"submitit WARNING \((.+?)\) - Caught signal SIGUSR2 .*: this job is timed-out", job_log))
    requeues = set(re.findall(r"submitit INFO \((.+?)\) - Requeued job", job_log))
    assert len(signals) == 2 and len(requeues) == 1  # max_num_timeout=1: one requeue, then failed
    assert "UncompletedJobError" in Path(job["error_file"]).read_text()
    assert "Logging error" not in job_log  # the refusal was not eaten where the signal landed (test_out_of_time.py)
    record = records.read_record(Path(job["run_dir"]))  # none if the signals came before the run dir was opened
    assert record is None or (record["status"] == "failed" and "timed-out too many times" in record["error"])

    # the same command, typed again while the job was in SLURM, submitted nothing and said why
    again = sweeps["time_limit"].note
    assert again.get("still_running"), again
    assert again["rc"] == 0 and again["summary"]["counts"] == {"queued": 1} and not again["submitted"]
    assert again["summary"]["jobs"][0]["job_id"] == job["job_id"]


@pytest.mark.slurm
def test_slurm_job_cancelled_without_a_result_is_failed_as_lost_not_waited_for(sweeps):
    """SLURM without accounting (no sacct, as this cluster) cannot say what became of a job that left its queue;
    the sweep fails it after ``hydra.launcher.lost_after_s`` instead of waiting forever."""
    sweep = sweeps["cancelled"]
    rc, summary, output = sweep.wait()
    assert rc != 0 and "job_id" in sweep.note, sweep.note
    [job] = summary["jobs"]
    assert job["status"] == "failed" and job["job_id"] == sweep.note["job_id"], job
    assert job["error"].startswith("LostJob: job ") and "left SLURM's queue without a result" in job["error"], job
    assert f"job {job['job_id']} (#0): lost" in output
    record = records.read_record(Path(job["run_dir"]))  # none if cancelled before it started
    assert record is None or record["status"] != "finished"


@pytest.fixture(scope="module")
def reference_two(tmp_path_factory):
    """The 2-task run uninterrupted, started by run.py itself on this machine (2 processes, gloo)."""
    results = tmp_path_factory.mktemp("reference_two")
    done = run_sweep([*SWEEPS["two_tasks"], "hydra/launcher=local"], results, results / "sweep")
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    run_dir = RunDir.for_config(tiny(SWEEPS["two_tasks"], results)).path
    return records.read_record(run_dir), epoch_rows(run_dir)


@pytest.mark.slow
@pytest.mark.slurm
def test_slurm_two_task_run_is_requeued_and_resumes_exactly(sweeps, slurm, reference_two):
    """One run as one job of 2 SLURM tasks (trainer.devices=2), pre-empted mid-training: it resumes exactly as the
    uninterrupted 2-process run, as a 1-process job does."""
    sweep = sweeps["two_tasks"]
    [script] = sweep.sweep_dir.glob(".submitit/*/*_submission.sh")
    assert "#SBATCH --ntasks-per-node=2\n" in script.read_text() and "--gpus" not in script.read_text()
    rc, summary, output = sweep.wait()
    assert rc == 0, output[-3000:]
    assert summary["counts"] == {"finished": 1} and "job_id" in sweep.note, sweep.note
    run_dir = Path(summary["jobs"][0]["run_dir"])
    record = records.read_record(run_dir)
    assert record["processes"] == 2
    assert record["attempts"] == 2, f"the interruption did not land mid-training: {sweep.note}"
    assert_same_run(record, run_dir, reference_two)
    logs = sorted(p.name for p in Path(summary["jobs"][0]["log"]).parent.glob("*_log.out"))
    assert [name.rsplit("_", 2)[1] for name in logs] == ["0", "1"]  # a log per task
    job_log = Path(summary["jobs"][0]["log"]).read_text()
    assert "this job is preempted" in job_log and "Requeued job" in job_log


def test_slurm_job_asking_for_more_gpus_than_processes_fails_at_submission(tmp_path):
    if shutil.which("sbatch") is None:
        pytest.skip("no sbatch on this machine")
    out = run_sweep(
        ["hydra/launcher=slurm", "hydra.launcher.gpus_per_node=4", "trainer.devices=2"],
        tmp_path / "r",
        tmp_path / "sweep",
        env=dict(os.environ, SLURM_CONF="/nonexistent"),
    )
    assert out.returncode == 2
    assert out.stderr.strip().splitlines()[-1] == (
        "error: hydra.launcher.gpus_per_node=4 asks for 4 GPUs per node but trainer.devices=2 starts 2 processes per "
        "node, one GPU each: 2 would sit idle; set trainer.devices=4 (or ask for 2 GPUs)"
    )
    assert not (tmp_path / "sweep" / ".submitit").exists()  # nothing submitted


def read_summary(sweep_dir: Path) -> dict:
    return json.loads((Path(sweep_dir) / "summary.json").read_text())
