"""A real PostgreSQL server in a temporary directory, for the search tests (Optuna's RDB storage on a server).

    python tests/postgres_server.py install      # apt-get Debian's postgresql (root; no-op when present)
    python tests/postgres_server.py up DIR       # initdb + start on a free port; prints the URL's variable
    python tests/postgres_server.py down DIR     # stop it

``initdb`` makes a private cluster in DIR (owned by the user that runs the server: PostgreSQL refuses to run
as root, so under root it runs as the ``postgres`` system user the Debian package creates, or ``nobody``).
The server listens on 127.0.0.1 at a free port and on a socket in DIR; password authentication
(scram-sha-256) is on for TCP, so the test's URL carries a real password. Nothing under /etc is touched.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import sys
from pathlib import Path
from urllib.parse import quote

PACKAGES = ("postgresql",)
USER = "harness"
PASSWORD = "p@ss:w/rd s3cr3t"  # '@', ':', '/' and a space: the URL must percent-encode it, redaction must catch it


def bin_dir() -> Path | None:
    """Debian keeps initdb / pg_ctl in /usr/lib/postgresql/<version>/bin (not on PATH); newest version first."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(Path(p).parts[-3]), reverse=True)
    if found:
        return Path(found[0]).parent
    on_path = shutil.which("initdb")
    return Path(on_path).resolve().parent if on_path else None


def install_packages() -> str | None:
    """apt-get install postgresql when it is missing and we are root; returns why not, else None."""
    if bin_dir() is not None:
        return None
    if os.geteuid() != 0:
        return "PostgreSQL is not installed (no initdb) and installing it needs root"
    if shutil.which("apt-get") is None:
        return "PostgreSQL is not installed and there is no apt-get to install it"
    from slurm_cluster import apt_get_install

    failed = apt_get_install(PACKAGES)
    if failed:
        return failed
    return None if bin_dir() is not None else "installed postgresql but initdb is still missing"


def server_user() -> pwd.struct_passwd | None:
    """Who runs the server: ourselves, or (as root) the postgres / nobody system user."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "nobody"):
        try:
            return pwd.getpwnam(name)
        except KeyError:
            continue
    raise RuntimeError("running as root and there is no postgres or nobody user to run the server as")


def cannot_start_reason() -> str | None:
    reason = install_packages()
    if reason:
        return reason
    try:
        import psycopg  # noqa: F401
    except ImportError:
        return "the PostgreSQL driver is not installed: pip install -e '.[test]' (psycopg[binary])"
    return None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LocalPostgres:
    def __init__(self, root: Path):
        self.root = Path(root)
        self.data = self.root / "data"
        self.port = None
        self.user = server_user()

    @property
    def url(self) -> str:
        return f"postgresql+psycopg://{USER}:{quote(PASSWORD, safe='')}@127.0.0.1:{self.port}/postgres"

    def _run(self, args, **kw):
        demote = None
        if self.user is not None:
            uid, gid = self.user.pw_uid, self.user.pw_gid

            def demote():
                os.setgid(gid)
                os.setuid(uid)

        return subprocess.run(
            [str(bin_dir() / args[0]), *args[1:]],
            preexec_fn=demote,
            capture_output=True,
            text=True,
            check=True,
            cwd="/",
            **kw,
        )

    def start(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        pwfile = self.root / "pw"
        pwfile.write_text(PASSWORD + "\n")
        if self.user is not None:
            os.chmod(self.root, 0o700)
            for p in (self.root, pwfile):
                os.chown(p, self.user.pw_uid, self.user.pw_gid)
        self._run(
            [
                "initdb",
                "-D",
                str(self.data),
                f"--username={USER}",
                f"--pwfile={pwfile}",
                "--auth-host=scram-sha-256",
                "--auth-local=trust",
                "--encoding=UTF8",
                "--no-sync",
            ]
        )
        pwfile.unlink()
        self.port = free_port()
        opts = f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=100"
        self._run(
            ["pg_ctl", "-D", str(self.data), "-l", str(self.root / "server.log"), "-o", opts, "-w", "-t", "60", "start"]
        )

    def stop(self) -> None:
        if self.data.exists():
            try:
                self._run(["pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "-t", "60", "stop"])
            except subprocess.CalledProcessError:
                pass

    def log(self) -> str:
        path = self.root / "server.log"
        return path.read_text(errors="replace")[-3000:] if path.exists() else ""


def main(argv) -> int:
    if not argv or argv[0] not in ("install", "up", "down"):
        print(__doc__, file=sys.stderr)
        return 2
    if argv[0] == "install":
        reason = install_packages()
        if reason:
            print(f"postgresql: {reason}", file=sys.stderr)  # the tests skip with this reason; make test goes on
        return 0
    server = LocalPostgres(Path(argv[1] if len(argv) > 1 else "/tmp/harness-postgres"))
    if argv[0] == "up":
        server.start()
        print(f"export HARNESS_OPTUNA_STORAGE='{server.url}'")
    else:
        server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
