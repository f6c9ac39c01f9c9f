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
    """A user error (bad config, missing data, NaN loss) becomes one line on stderr and exit code 2.

    In a multirun the error propagates instead, so the launcher marks that job failed and goes on.
    """
    try:
        yield
    except HarnessError as err:
        if in_multirun():
            raise
        print(f"error: {redact_text(str(err))}", file=sys.stderr)
        raise SystemExit(2) from None
