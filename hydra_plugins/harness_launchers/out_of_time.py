"""How a submitit job ends once submitit will not requeue it, on the job's node.

On the pre-emption / time-out signal submitit's handler either requeues the job and exits (``SystemExit``) or,
once ``max_num_timeout`` is used up, raises ``UncompletedJobError``, which its ``process_job`` turns into the
job's result (an error) for the waiting sweep. That exception is raised from a signal handler, so wherever the
main thread happens to be, and any ``except Exception`` there eats it: ``logging.Handler.handleError`` did (the
suite saw "--- Logging error ---" in the job's log; the job trained on until SLURM killed it, left no result,
and the sweep waited for it). Here the refusal becomes ``OutOfTime``, a ``BaseException`` that no ``except
Exception`` stops: it unwinds the run (whose record says failed, and why) up to the job function, which turns it
back into submitit's error where nothing else can catch it.
"""

import contextlib
import signal
from collections.abc import Callable, Iterator

from submitit.core.utils import UncompletedJobError


class OutOfTime(BaseException):
    """submitit refused to requeue the job; the message says why (e.g. "timed-out too many times")."""


def unswallowable(handler: Callable) -> Callable:
    """``handler`` (submitit's), with its ``UncompletedJobError`` raised as ``OutOfTime``."""

    def on_signal(signum, frame) -> None:
        try:
            handler(signum, frame)
        except UncompletedJobError as err:
            raise OutOfTime(str(err)) from err

    return on_signal


@contextlib.contextmanager
def ends_when_out_of_time(signum: int) -> Iterator[None]:
    """Around the job's work, after submitit installed its handler for ``signum``: the job ends with submitit's
    ``UncompletedJobError`` when that handler refuses a requeue, wherever the signal lands."""
    handler = signal.getsignal(signum)
    if callable(handler):
        signal.signal(signum, unswallowable(handler))
    try:
        yield
    except OutOfTime as err:
        raise UncompletedJobError(str(err)) from err
    finally:
        if callable(handler):
            signal.signal(signum, handler)
