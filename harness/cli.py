"""Command-line glue shared by run.py and the module entry points."""

from __future__ import annotations

import sys
from contextlib import contextmanager

from harness.errors import HarnessError
from harness.redact import redact_text


def in_multirun() -> bool:
    try:
        from hydra.core.hydra_config import HydraConfig
        from hydra.types import RunMode

        return HydraConfig.get().mode == RunMode.MULTIRUN
    except Exception:
        return False


@contextmanager
def exit_on_user_error():
    """A user error (bad config, missing data, NaN loss) becomes one line on stderr and exit code 2; a crash
    inside a run whose traceback is in its error.txt becomes one line naming that file and exit code 1.

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
        if in_multirun() or not getattr(err, "error_file", None):
            raise
        message = " ".join(f"{type(err).__name__}: {err}".split())[:300]
        print(f"error: {redact_text(message)} (traceback: {err.error_file})", file=sys.stderr)
        raise SystemExit(1) from None
