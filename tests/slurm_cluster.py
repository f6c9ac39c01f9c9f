"""A real one-node SLURM cluster on localhost, for the SLURM tests and for trying the launcher by hand.

    python tests/slurm_cluster.py install        # apt-get the Debian packages (root; no-op when present)
    python tests/slurm_cluster.py up [DIR]       # start munged, slurmctld, slurmd; prints `export SLURM_CONF=...`
    python tests/slurm_cluster.py down [DIR]     # stop what `up` started (the pids it wrote in DIR/pids)

Everything lives in one private directory (default /tmp/harness-slurm): the munge key and socket, slurm.conf,
state, spool, logs and pid files. Nothing under /etc is touched; the SLURM client commands (sbatch, squeue,
scontrol, and submitit through them) find this cluster through the ``SLURM_CONF`` environment variable.
The node line comes from ``slurmd -C``; process tracking is ``proctrack/linuxproc`` and ``task/none`` (no
cgroups needed), so it runs as root inside a container or VM without systemd. There is no accounting
database (no ``sacct``): submitit then learns that a job ended from its result file, which every job of the
tests writes (a job killed before writing one would be waited for until the test's own timeout). Two settings
differ from a production cluster to keep the tests short: a requeued job may restart after 11 s instead of
121 s (``cred_expire``), and pending jobs are looked at every 2 s (``sched_interval``).
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

PACKAGES = ("slurmctld", "slurmd", "slurm-client", "munge")
BINARIES = ("munged", "slurmctld", "slurmd", "sbatch", "squeue", "scontrol", "scancel", "srun", "sinfo")
DEFAULT_DIR = Path("/tmp/harness-slurm")
SBIN = ("/usr/sbin", "/sbin")  # where Debian puts the daemons; a non-login root shell may not have them on PATH


def which(name: str) -> str | None:
    return shutil.which(name, path=os.pathsep.join([os.environ.get("PATH", ""), *SBIN]))


def missing_binaries() -> list:
    return [b for b in BINARIES if which(b) is None]


def install_packages() -> str | None:
    """Install the Debian packages when they are missing and we are root with apt; returns why not, else None."""
    if not missing_binaries():
        return None
    if os.geteuid() != 0:
        return f"SLURM is not installed ({', '.join(missing_binaries())} missing) and installing it needs root"
    if shutil.which("apt-get") is None:
        return "SLURM is not installed and there is no apt-get to install " + " ".join(PACKAGES)
    failed = apt_get_install(PACKAGES)
    if failed:
        return failed
    missing = missing_binaries()
    return f"installed {' '.join(PACKAGES)} but {', '.join(missing)} still missing" if missing else None


def apt_get_install(packages) -> str | None:
    """apt-get update + install (no recommends, non-interactive); why it failed, else None."""
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    print(f"installing {' '.join(packages)} (apt-get)", file=sys.stderr)
    try:
        subprocess.run(["apt-get", "update", "-q"], env=env, check=True, capture_output=True, text=True)
        subprocess.run(
            ["apt-get", "install", "-y", "-q", "--no-install-recommends", *packages],
            env=env,
            check=True,
            capture_output=True,
            text=True,
        )
    except subprocess.CalledProcessError as err:
        return f"apt-get failed to install {' '.join(packages)}: {(err.stderr or '').strip()[-500:]}"
    return None


def cannot_start_reason() -> str | None:
    """Why a local cluster cannot start here (None: it can, installing the packages first if needed)."""
    if os.geteuid() != 0:
        return "slurmctld/slurmd must run as root (SlurmUser=root) to start a local cluster; run the tests as root"
    return install_packages()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def node_line() -> str:
    """`slurmd -C`'s description of this machine (NodeName=<host> CPUs=... RealMemory=...)."""
    out = subprocess.run([which("slurmd"), "-C"], capture_output=True, text=True, check=True).stdout
    return out.splitlines()[0].strip()


def slurm_conf(root: Path, host: str, node: str, ctld_port: int, slurmd_port: int) -> str:
    return f"""\
# written by tests/slurm_cluster.py: a one-node cluster on localhost
ClusterName=harness
SlurmctldHost={host}(127.0.0.1)
SlurmctldPort={ctld_port}
SlurmdPort={slurmd_port}
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
# cred_expire also delays a requeued job's restart (default 120 s)
AuthInfo=socket={root}/munge.socket,cred_expire=10
StateSaveLocation={root}/state
SlurmdSpoolDir={root}/spool
SlurmctldPidFile={root}/slurmctld.pid
SlurmdPidFile={root}/slurmd.pid
SlurmctldLogFile={root}/slurmctld.log
SlurmdLogFile={root}/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
MpiDefault=none
SwitchType=switch/none
SchedulerType=sched/builtin
# look at pending jobs (a requeued one) every 2 s instead of 60
SchedulerParameters=sched_interval=2
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
ReturnToService=2
KillWait=5
MinJobAge=600
InactiveLimit=0
{node} NodeAddr=127.0.0.1 State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP OverSubscribe=FORCE:4
"""


class LocalSlurm:
    """munged + slurmctld + slurmd on localhost, all state under ``root``; ``stop()`` ends exactly what started."""

    def __init__(self, root: Path = DEFAULT_DIR):
        self.root = Path(root).resolve()
        self.conf = self.root / "slurm.conf"

    @property
    def env(self) -> dict:
        """Environment for client commands (sbatch, squeue, submitit) to reach this cluster."""
        return {"SLURM_CONF": str(self.conf)}

    def start(self, timeout: float = 60) -> LocalSlurm:
        if (self.root / "pids").exists():
            raise RuntimeError(f"a cluster seems to run from {self.root} already; stop it first (down {self.root})")
        for sub in ("state", "spool"):
            (self.root / sub).mkdir(parents=True, exist_ok=True)
        self.root.chmod(0o700)
        key = self.root / "munge.key"
        if not key.exists():
            key.write_bytes(os.urandom(1024))
        key.chmod(0o400)
        host = socket.gethostname().split(".")[0]
        self.conf.write_text(slurm_conf(self.root, host, node_line(), free_port(), free_port()))

        env = dict(os.environ, **self.env)
        self._spawn(
            "munged",
            [
                which("munged"),
                "-F",
                "--force",
                f"--key-file={key}",
                f"--socket={self.root}/munge.socket",
                f"--pid-file={self.root}/munged.pid",
                f"--log-file={self.root}/munged.log",
                f"--seed-file={self.root}/munged.seed",
            ],
            env,
        )
        self._wait(lambda: (self.root / "munge.socket").exists(), timeout, "munged did not create its socket")
        self._spawn("slurmctld", [which("slurmctld"), "-D", "-i", "-f", str(self.conf)], env)
        self._spawn("slurmd", [which("slurmd"), "-D", "-f", str(self.conf)], env)
        self._wait(self.node_is_idle, timeout, "the node did not become idle")
        return self

    def stop(self) -> None:
        """Cancel the cluster's jobs, then end the daemons it started (pids in ``root/pids``, slurmd first) and
        any job process left behind (those whose environment names this cluster's slurm.conf)."""
        pids_file = self.root / "pids"
        if not pids_file.exists():
            return
        self.client(["scancel", "--partition", "debug"], check=False)
        deadline = time.time() + 20
        while time.time() < deadline and self.client(["squeue", "-h"], check=False).stdout.strip():
            time.sleep(0.2)
        started = [line.split() for line in pids_file.read_text().splitlines() if line.strip()]
        for _name, pid in reversed(started):
            end_process(int(pid))
        for pid in self.job_processes():
            end_process(pid, sig=signal.SIGKILL)
        pids_file.unlink()

    def job_processes(self) -> list:
        """This cluster's slurmstepd processes (their environment names its slurm.conf) and all they started."""
        marker, parents, steps = f"SLURM_CONF={self.conf}".encode(), {}, []
        for proc in Path("/proc").glob("[0-9]*"):
            try:
                parents[int(proc.name)] = int((proc / "stat").read_text().rsplit(")", 1)[1].split()[1])
                if (proc / "comm").read_text().strip() == "slurmstepd" and marker in (
                    proc / "environ"
                ).read_bytes().split(b"\0"):
                    steps.append(int(proc.name))
            except (OSError, ValueError, IndexError):
                continue
        found, frontier = list(steps), list(steps)
        while frontier:
            children = [pid for pid, ppid in parents.items() if ppid in frontier]
            found += children
            frontier = children
        return found[::-1]  # children before their slurmstepd

    def node_is_idle(self) -> bool:
        out = self.client(["sinfo", "-h", "-o", "%T"], check=False)
        return out.returncode == 0 and out.stdout.strip().rstrip("*") in ("idle", "mixed", "allocated")

    def client(self, cmd: list, check: bool = True) -> subprocess.CompletedProcess:
        return subprocess.run(cmd, env=dict(os.environ, **self.env), capture_output=True, text=True, check=check)

    def log_tail(self, lines: int = 30) -> str:
        out = []
        for name in ("munged", "slurmctld", "slurmd"):
            path = self.root / f"{name}.log"
            if path.exists():
                out.append(f"--- {path}\n" + "\n".join(path.read_text(errors="replace").splitlines()[-lines:]))
        return "\n".join(out)

    def _spawn(self, name: str, cmd: list, env: dict) -> None:
        log = open(self.root / f"{name}.out", "ab")
        proc = subprocess.Popen(
            cmd, env=env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True
        )  # survives the starting process (`make slurm-up`)
        log.close()
        with open(self.root / "pids", "a") as f:
            f.write(f"{name} {proc.pid}\n")
        time.sleep(0.2)
        if proc.poll() is not None:
            raise RuntimeError(
                f"{name} exited at start (code {proc.returncode}):\n{self.log_tail()}\n"
                f"{(self.root / f'{name}.out').read_text(errors='replace')}"
            )

    def _wait(self, ready, timeout: float, what: str) -> None:
        deadline = time.time() + timeout
        while time.time() < deadline:
            if ready():
                return
            time.sleep(0.2)
        raise RuntimeError(f"{what} within {timeout:.0f}s:\n{self.log_tail()}")


def end_process(pid: int, sig=signal.SIGTERM, wait: float = 15) -> None:
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        return
    deadline = time.time() + wait
    while time.time() < deadline and pid_alive(pid):
        time.sleep(0.1)
    if pid_alive(pid):
        os.kill(pid, signal.SIGKILL)


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie child of ours counts as gone
        return os.waitpid(pid, os.WNOHANG) == (0, 0)
    except ChildProcessError:
        return True


def main(argv: list) -> int:
    if not argv or argv[0] not in ("install", "up", "down"):
        print(__doc__, file=sys.stderr)
        return 2
    root = Path(argv[1]) if len(argv) > 1 else DEFAULT_DIR
    if argv[0] == "install":
        reason = install_packages()
        if reason:
            print(f"slurm not installed: {reason}", file=sys.stderr)
        return 0
    if argv[0] == "down":
        LocalSlurm(root).stop()
        print(f"stopped the cluster in {root}")
        return 0
    reason = cannot_start_reason()
    if reason:
        print(f"error: {reason}", file=sys.stderr)
        return 1
    cluster = LocalSlurm(root).start()
    print(f"one-node SLURM cluster up in {root}; use it with:\n  export SLURM_CONF={cluster.conf}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
