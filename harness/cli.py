"""Command-line glue shared by run.py and the module entry points."""

from __future__ import annotations

import sys
from contextlib import contextmanager

from harness.errors import HarnessError
from harness.io import DISK_ERRORS, disk_line
from harness.redact import redact_text


def in_multirun() -> bool:
    try:
        from hydra.core.hydra_config import HydraConfig
        from hydra.types import RunMode

        return HydraConfig.get().mode == RunMode.MULTIRUN
    except Exception:
        return False


@contextmanager
def exit_on_user_error(disk_fix: str | None = None):
    """A user error (bad config, missing data, NaN loss) becomes one line on stderr and exit code 2; a crash
    inside a run whose traceback is in its error.txt becomes one line naming that file and exit code 1.
    ``disk_fix``: a command that writes outside a run (tables, pictures) says a read-only or full disk in one
    line ending with this fix, exit code 2.

    In a multirun the error propagates instead, so the launcher marks that job failed and goes on.
    """
    try:
        yield
    except HarnessError as err:
        if in_multirun():
            raise
        print(f"error: {redact_text(str(err))}", file=sys.stderr)
        raise SystemExit(2) from None
    except Exception as err:  # a crash inside a run: its traceback is in the run's error.txt, not on the console
        if disk_fix is not None and isinstance(err, OSError) and err.errno in DISK_ERRORS and not in_multirun():
            print(f"error: {redact_text(disk_line(err, disk_fix))}", file=sys.stderr)
            raise SystemExit(2) from None
        if in_multirun() or not getattr(err, "error_file", None):
            raise
        message = " ".join(f"{type(err).__name__}: {err}".split())[:300]
        print(f"error: {redact_text(message)} (traceback: {err.error_file})", file=sys.stderr)
        raise SystemExit(1) from None
