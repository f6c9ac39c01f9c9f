"""The console: how every entry point fails (one line, one exit code), and a run's result at a glance.

Every entry point (run.py, ``python -m harness.tables | search | inspect | evaluate | rundir``, the launchers and
the sweeper) runs inside :func:`entry_point` or calls :func:`fail`, so bad input always ends the same way:

    error: <one redacted line naming the fix>      exit 2   a user error (HarnessError: config, data, disk)
    error: <the exception> (traceback: <file>)     exit 1   a crash: the run's error.txt, else a file in the temp dir
    error: interrupted; run the same command ...   exit 130 Ctrl-C (a run's record says failed; it resumes)

In a multirun the exception propagates instead, so that the launcher marks that job failed and goes on. SystemExit
passes untouched: submitit's requeue on SIGTERM / SIGUSR1 and Hydra's own exits are never intercepted.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
import traceback
from contextlib import contextmanager
from typing import NoReturn

from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode

from harness.errors import HarnessError
from harness.io import DISK_ERRORS, disk_line
from harness.redact import redact_text

USER_ERROR, CRASH, INTERRUPTED = 2, 1, 130


def in_multirun() -> bool:
    return HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN


def fail(message: str, code: int = USER_ERROR) -> NoReturn:
    """Print ``error: <message>`` as one redacted line on stderr and exit with ``code``."""
    print(f"error: {redact_text(' '.join(str(message).split()))}", file=sys.stderr)
    raise SystemExit(code)


@contextmanager
def entry_point(disk_fix: str | None = None, where: str | None = None):
    """The one way an entry point fails (see the module docstring). ``disk_fix``: a command that writes outside a
    run directory (tables, pictures) says a read-only or full disk in one line (exit 2) ending with this fix;
    ``where``: the folder it writes, named when the error does not name a file."""
    try:
        yield
    except HarnessError as err:
        if in_multirun():
            raise
        fail(str(err), USER_ERROR)
    except KeyboardInterrupt:
        if in_multirun():
            raise
        fail("interrupted; run the same command to resume (a run goes on from its last checkpoint)", INTERRUPTED)
    except Exception as err:
        if in_multirun():
            raise
        if disk_fix is not None and isinstance(err, OSError) and err.errno in DISK_ERRORS:
            fail(disk_line(err, disk_fix, where), USER_ERROR)
        where = getattr(err, "error_file", None) or traceback_file(err)
        fail(f"{type(err).__name__}: {str(err)[:300]} (traceback: {where})", CRASH)


class ArgumentParser(argparse.ArgumentParser):
    """argparse with its errors in the one-line form (``error: ... (prog --help)``, exit 2) of every entry point."""

    def error(self, message: str) -> NoReturn:
        fail(f"{message} ({self.prog} --help)", USER_ERROR)


def traceback_file(err: BaseException) -> str:
    """A crash outside a run directory: its traceback, redacted, in a file of the temp dir (named on the console)."""
    text = redact_text("".join(traceback.format_exception(err)))
    with tempfile.NamedTemporaryFile("w", prefix=f"harness-error-{time.strftime('%Y%m%d-%H%M%S')}-", suffix=".txt",
                                     delete=False) as f:  # fmt: skip
        f.write(text)
    return f.name


SUMMARY_METRICS = ("recall@1", "recall@2", "recall@4", "recall@8", "map@r", "r_precision", "nmi")


def format_summary(record: dict) -> str:
    """The result at a glance: trained test metrics beside the untrained network and raw inputs."""
    keys = [k for k in SUMMARY_METRICS if f"test/{k}" in record]
    rows = [("raw inputs", "raw/test"), ("untrained net", "init/test"), ("trained (selected)", "test")]
    selection = record["selection/metric"]
    lines = [
        f"{record['dataset']} | loss={record['loss']} | regularizer={record['regularizer']} | seed={record['seed']} | "
        f"selected epoch {record['selected_epoch']} by {selection}={record.get(selection, float('nan')):.4f}",
        f"{'test split':<20}" + "".join(f"{k:>12}" for k in keys),
    ]
    for label, prefix in rows:
        if f"{prefix}/{keys[0]}" in record:
            lines.append(f"{label:<20}" + "".join(f"{record[f'{prefix}/{k}']:>12.4f}" for k in keys))
    lines.append(f"record: {record['run_dir']}/record.json")
    return "\n".join(lines)
