"""A SLURM job whose requeues are used up ends, wherever submitit's signal handler raises its refusal.

The failure this guards against was seen in the suite (1 full run in 6): the time-limit job's second USR2 landed
while logging was writing, logging's ``handleError`` ate submitit's ``UncompletedJobError`` ("--- Logging error
---"), the job trained on until SLURM killed it, and the sweep waited for a result that never came. Here the
signal is raised inside a log handler's write, the same spot, on purpose.
"""

import io
import logging
import signal

import pytest
from submitit.core.utils import UncompletedJobError

from hydra_plugins.harness_launchers.out_of_time import ends_when_out_of_time

REFUSAL = "Job not requeued because: timed-out too many times."


def refuses(signum, frame) -> None:
    """What submitit's ``checkpoint_and_try_requeue`` does once ``max_num_timeout`` is used up."""
    raise UncompletedJobError(REFUSAL)


class SignalledWhileWriting(io.StringIO):
    def write(self, text: str) -> int:
        signal.raise_signal(signal.SIGUSR2)  # the handler runs here, inside logging's try/except Exception
        return super().write(text)


@pytest.fixture
def log_that_is_signalled():
    logger = logging.getLogger("tests.out_of_time")
    handler = logging.StreamHandler(SignalledWhileWriting())
    logger.addHandler(handler)
    logger.propagate, logger.level = False, logging.INFO
    before = signal.signal(signal.SIGUSR2, refuses)
    yield logger
    signal.signal(signal.SIGUSR2, before)
    logger.removeHandler(handler)


def test_logging_eats_the_refusal_when_it_is_raised_as_submitit_raises_it(log_that_is_signalled, capsys):
    log_that_is_signalled.info("epoch 7")  # returns: the job would train on
    assert "--- Logging error ---" in capsys.readouterr().err


def test_the_job_ends_with_submitit_s_error_wherever_the_refusal_lands(log_that_is_signalled, capsys):
    with pytest.raises(UncompletedJobError, match="timed-out too many times"):
        with ends_when_out_of_time(signal.SIGUSR2):
            log_that_is_signalled.info("epoch 7")
            pytest.fail("the job went on after submitit refused to requeue it")
    assert "Logging error" not in capsys.readouterr().err
    assert signal.getsignal(signal.SIGUSR2) is refuses  # submitit's handler is back


def test_a_requeue_still_exits_as_submitit_exits(log_that_is_signalled):
    """The other outcome of the handler, ``sys.exit`` after ``scontrol requeue``, passes through unchanged."""

    def requeues(signum, frame) -> None:
        raise SystemExit(-1)

    signal.signal(signal.SIGUSR2, requeues)
    with pytest.raises(SystemExit):
        with ends_when_out_of_time(signal.SIGUSR2):
            log_that_is_signalled.info("epoch 7")
