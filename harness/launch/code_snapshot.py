"""The code a SLURM job imports: a git clone of the submitted tree (commit + uncommitted changes), so editing
the tree while jobs wait in the queue does not change them. Used by the slurm launcher only.
"""

from __future__ import annotations

import logging
import shutil
import subprocess
import sys
from pathlib import Path

log = logging.getLogger(__name__)

REPO = Path(__file__).resolve().parents[2]  # harness/launch/ -> the repository


def snapshot_code(dest: Path, repo: Path = REPO) -> dict:
    """Freeze the code jobs will import: a git clone of HEAD at ``dest`` plus the tree's uncommitted changes.

    Jobs import ``harness`` from ``dest`` (see ``snapshot_env``), so edits made while they wait in the queue
    do not reach them, and each record's ``git/commit`` / ``git/dirty`` (read by the run inside ``dest``)
    name exactly what ran. Untracked files that git does not ignore are copied too. Needs git; without it,
    or outside a checkout, returns ``{}`` and jobs run the live tree (the records then say so).
    """
    dest = Path(dest)

    def git(*args, cwd=repo) -> str:
        return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, text=True).stdout

    try:
        head = git("rev-parse", "HEAD").strip()
        changed = [p for p in git("diff", "--name-only", "-z", "--no-renames", "HEAD").split("\0") if p]
        untracked = [p for p in git("ls-files", "-z", "--others", "--exclude-standard").split("\0") if p]
        dest.parent.mkdir(parents=True, exist_ok=True)
        git("clone", "--quiet", "--shared", "--no-checkout", str(repo), str(dest))
        git("checkout", "--quiet", "--detach", head, cwd=dest)
    except (OSError, subprocess.CalledProcessError) as err:
        detail = err.stderr.strip() if isinstance(err, subprocess.CalledProcessError) else str(err)
        log.warning("no code snapshot (%s): jobs will import the live tree %s", detail or err, repo)
        shutil.rmtree(dest, ignore_errors=True)
        return {}
    for rel in changed + untracked:
        src, dst = repo / rel, dest / rel
        if src.is_symlink() or src.exists():
            dst.parent.mkdir(parents=True, exist_ok=True)
            if dst.is_symlink() or dst.is_file():
                dst.unlink()
            shutil.copy2(src, dst, follow_symlinks=False)
        elif dst.is_symlink() or dst.exists():  # deleted in the tree
            dst.unlink()
    log.info(
        "code snapshot for the jobs: %s (commit %s%s)", dest, head[:12], ", with uncommitted changes" if changed else ""
    )
    return {"dir": str(dest), "commit": head, "dirty": bool(changed)}


def snapshot_env(snapshot_dir: str) -> list:
    """Shell lines that make a job's Python import from the snapshot (before the editable install's tree).

    ``PYTHONSAFEPATH`` (Python >= 3.11) keeps the job's working directory (often the repository itself) off
    ``sys.path``, so the working directory, and with it every relative path in the config, stays as it was.
    """
    return [f"export PYTHONPATH={snapshot_dir}${{PYTHONPATH:+:$PYTHONPATH}}", "export PYTHONSAFEPATH=1"]


def snapshot_supported() -> bool:
    return sys.version_info >= (3, 11)
