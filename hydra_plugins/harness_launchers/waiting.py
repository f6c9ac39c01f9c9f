"""How the submitting command waits for its submitit jobs: one line per job and state change, submitit's own
per-poll noise quieted, and a job that SLURM lost given up instead of waited for.

A lost job: SLURM no longer lists it, submitit cannot read its state (UNKNOWN, on a cluster without accounting:
no ``sacct``) and it left no result. A job killed before it could report does that (``scancel``, a node that died,
a signal that came before submitit's handler was in place); submitit would wait for it forever.
"""

import contextlib
import logging
import time
from collections.abc import Callable

log = logging.getLogger(__name__)

POLL_S = 2.0  # seconds between looks at the jobs' states (submitit rate-limits its own sacct calls further)
QUEUE_EVERY_S = 30.0  # seconds between looks at SLURM's queue, asked only while a job's state is UNKNOWN
LOST_AFTER_S = 120.0  # a job out of the queue, without a state or a result for this long, is lost


def wait_for_jobs(
    submitted: list,
    in_queue: Callable[[], dict | None] | None = None,
    lost_after_s: float = LOST_AFTER_S,
    poll_s: float = POLL_S,
) -> dict:
    """Wait until every submitted ``(job, submitit job)`` is done or lost, printing one line per job and state
    change (PENDING, RUNNING, COMPLETED, ...) instead of submitit's per-poll output. ``in_queue()``: the job ids
    SLURM still lists, or None when it could not be asked (then nobody is given up that time); with no
    ``in_queue`` (not SLURM) no job is ever given up. Returns {job idx: why} for the lost jobs."""
    states: dict = {}
    gone_since: dict = {}
    lost: dict = {}
    pending = list(submitted)
    looked = 0.0
    while pending:
        unknown = []
        for job, sub in list(pending):
            done = sub.done()
            state = sub.state
            if state != states.get(job.idx):
                states[job.idx] = state
                log.info("job %s (#%d): %s", sub.job_id, job.idx, state)
            if done:
                pending.remove((job, sub))
            elif state == "UNKNOWN":
                unknown.append((job, sub))
        if unknown and in_queue is not None and time.time() - looked >= min(QUEUE_EVERY_S, lost_after_s / 2):
            looked = time.time()
            listed = in_queue()
            for job, sub in unknown if listed is not None else []:
                if sub.job_id in listed:
                    gone_since.pop(job.idx, None)
                elif looked - gone_since.setdefault(job.idx, looked) >= lost_after_s:
                    lost[job.idx] = (
                        f"job {sub.job_id} left SLURM's queue without a result and its state cannot be read "
                        f"(no sacct): killed before it could report; its log: {job.log}"
                    )
                    log.error("job %s (#%d): lost (%s)", sub.job_id, job.idx, lost[job.idx])
                    pending.remove((job, sub))
        if pending:
            time.sleep(poll_s)
    return lost


class OnceFilter(logging.Filter):
    """Lets the first record holding ``text`` through and drops the repeats, counting them: submitit warns
    "Bypassing sacct error" at every poll where SLURM has no accounting (36 lines for one grid)."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.text, self.seen = text, 0

    def filter(self, record: logging.LogRecord) -> bool:
        if self.text not in record.getMessage():
            return True
        self.seen += 1
        return self.seen == 1


class QuietSacct:
    """``subprocess`` as submitit's status poll sees it, with ``sacct``'s stderr dropped: on a cluster without
    accounting every poll printed "Slurm accounting storage is disabled" (the failure itself is still raised,
    and submitit's warning about it is kept once)."""

    def __init__(self, real) -> None:
        self.real = real

    def __getattr__(self, name):
        return getattr(self.real, name)

    def check_output(self, command, *args, **kwargs):
        if list(command)[:1] == ["sacct"]:
            kwargs.setdefault("stderr", self.real.DEVNULL)
        return self.real.check_output(command, *args, **kwargs)


@contextlib.contextmanager
def quiet_submitit():
    """While the launcher waits: submitit's records once, through Hydra's console handler only (submitit adds two
    handlers of its own: each record printed three times), its sacct warning once with the count of repeats at
    the end, sacct's own stderr dropped."""
    from submitit.core import core

    once = OnceFilter("Bypassing sacct error")
    logger = logging.getLogger("submitit")
    handlers, logger.handlers = logger.handlers, []
    logger.addFilter(once)
    real, core.subprocess = core.subprocess, QuietSacct(core.subprocess)  # private: pinned, tests/test_dependencies
    try:
        yield once
    finally:
        core.subprocess = real
        logger.removeFilter(once)
        logger.handlers = handlers
        if once.seen > 1:
            log.info("sacct failed %d times (SLURM without accounting): states may read UNKNOWN", once.seen)
