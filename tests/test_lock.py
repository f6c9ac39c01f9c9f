"""One writer per run directory (harness/rundir/lock.py), with real processes: a second one waits (or, with a
timeout, exits with one line naming the holder); a killed holder's lock is released by the kernel."""

import os
import signal
import socket
import subprocess
import sys
import time

import pytest

from harness.rundir.lock import RunLocked, holder, run_lock
from harness.rundir.run_dir import RunDir

# hold the lock of argv[1]; log "<tag> start" / "<tag> end" to argv[2]; stay until argv[3] exists
HOLDER = """
import sys, time, pathlib, logging
logging.basicConfig(level=logging.INFO, format="%(message)s")
from harness.rundir.lock import run_lock
run_dir, journal, go, tag = sys.argv[1:5]
timeout = None if sys.argv[5] == "none" else float(sys.argv[5])
from harness.cli import entry_point
with entry_point(), run_lock(run_dir, timeout=timeout, poll=0.05):
    with open(journal, "a") as f:
        f.write(f"{tag} start\\n"); f.flush()
        print("locked", flush=True)
        while not pathlib.Path(go).exists():
            time.sleep(0.05)
        f.write(f"{tag} end\\n")
"""


def start(tmp_path, tag, timeout="none"):
    return subprocess.Popen(
        [
            sys.executable,
            "-c",
            HOLDER,
            str(tmp_path / "run"),
            str(tmp_path / "journal"),
            str(tmp_path / "go"),
            tag,
            timeout,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def wait_locked(proc):
    assert proc.stdout.readline().strip() == "locked", proc.stderr.read()


def test_a_second_writer_waits_for_the_first_and_never_interleaves(tmp_path):
    first = start(tmp_path, "A")
    try:
        wait_locked(first)
        info = holder(tmp_path / "run")
        assert info["pid"] == first.pid and info["host"] == socket.gethostname() and info["started"]

        refused = start(tmp_path, "B", timeout="0")  # no waiting: one line naming the holder, exit 2
        out, err = refused.communicate(timeout=60)
        assert refused.returncode == 2 and out == ""
        assert err.strip().splitlines() == [err.strip()]
        assert f"pid {first.pid} on {socket.gethostname()}" in err and "wait for it to end" in err

        waiter = start(tmp_path, "C")  # the default: wait, saying once who holds the directory
        time.sleep(1.0)
        assert waiter.poll() is None and (tmp_path / "journal").read_text() == "A start\n"
        (tmp_path / "go").touch()
        assert first.wait(timeout=60) == 0
        out, err = waiter.communicate(timeout=60)
        assert waiter.returncode == 0 and f"it is being written by pid {first.pid}" in err
        assert (tmp_path / "journal").read_text() == "A start\nA end\nC start\nC end\n"
    finally:
        for p in (first,):
            if p.poll() is None:
                p.kill()


def test_the_lock_of_a_killed_writer_is_released_at_once(tmp_path):
    first = start(tmp_path, "A")
    try:
        wait_locked(first)
        with pytest.raises(RunLocked, match=f"pid {first.pid}"):
            with run_lock(tmp_path / "run", timeout=0):
                pass
        os.kill(first.pid, signal.SIGKILL)
        first.wait(timeout=60)
        t0 = time.monotonic()
        with run_lock(tmp_path / "run", timeout=5) as info:
            assert info["pid"] == os.getpid() and holder(tmp_path / "run")["pid"] == os.getpid()
        assert time.monotonic() - t0 < 2
    finally:
        if first.poll() is None:
            first.kill()


def test_a_wait_with_a_timeout_ends_in_one_line(tmp_path):
    with run_lock(tmp_path / "run"):
        other = start(tmp_path, "B", timeout="0.5")
        out, err = other.communicate(timeout=60)
    assert other.returncode == 2 and f"still being written by pid {os.getpid()}" in err.strip().splitlines()[-1]


@pytest.mark.slow
def test_the_same_command_twice_at_once_never_interleaves_a_run_directory(results):
    """Two `python run.py` of one config at once: the second waits for the first, then finds it finished."""
    from conftest import REPO, tiny

    from harness.rundir import records

    overrides = [
        "trainer.epochs=4",
        "sampler.batches_per_epoch=20",
        "eval.nmi=false",
        "eval.utilization=false",
        "trainer.progress=false",
    ]
    run_dir = RunDir.for_config(tiny(overrides, results, epochs=4)).path
    cmd = [sys.executable, "run.py", f"paths.results={results}", *overrides]
    first = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    second = None
    try:
        deadline = time.time() + 120
        while holder(run_dir).get("pid") != first.pid and time.time() < deadline and first.poll() is None:
            time.sleep(0.02)
        assert holder(run_dir).get("pid") == first.pid, "the first run never took its directory's lock"
        os.kill(first.pid, signal.SIGSTOP)  # hold the first inside its run while the second starts
        second = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        said = ""
        while "waiting for" not in said and second.poll() is None:
            said += second.stdout.readline()
        os.kill(first.pid, signal.SIGCONT)
        said += second.communicate(timeout=300)[0]
        out_first, _ = first.communicate(timeout=300)
    finally:
        for p in (first, second):
            if p is not None and p.poll() is None:
                os.kill(p.pid, signal.SIGCONT)
                p.kill()
    assert first.returncode == 0 and second.returncode == 0, out_first[-2000:] + said[-2000:]
    assert f"it is being written by pid {first.pid} on {socket.gethostname()}" in said
    assert "already finished, skipped" in said
    assert [r["epoch"] for r in records.read_epochs(run_dir)] == [0, 1, 2, 3, 4]  # written once, in order
    log = (run_dir / "run.log").read_text()
    assert log.count("epoch 1/4") == 1 and records.read_record(run_dir)["attempts"] == 1
