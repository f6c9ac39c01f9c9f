"""The run's log file, ``run.log``: every log line of the attempt, and Python warnings as one line each."""

from __future__ import annotations

import logging
import re
import warnings
from contextlib import contextmanager
from pathlib import Path

# Third-party warnings that carry no action for the user, by message: never shown. (faiss's k-means sample-count
# warning is not a Python warning; harness.evaluation.clustering keeps faiss from printing it.)
QUIET_WARNINGS = (
    r"n_jobs value \d+ overridden to 1 by setting random_state",  # umap-learn: the harness seeds UMAP on purpose
    r"Tensorflow not installed; ParametricUMAP will be unavailable",
)


class OneLineWarning(logging.Filter):
    """A Python warning as one log line: ``UserWarning: message (file.py:12)`` instead of two with the source."""

    PATTERN = re.compile(r"(?P<where>.+?:\d+): (?P<what>\w+: .*)")

    def filter(self, record: logging.LogRecord) -> bool:
        first = (record.getMessage().splitlines() or [""])[0]
        found = self.PATTERN.match(first)
        record.msg, record.args = (f"{found['what']} ({Path(found['where']).name})" if found else first), ()
        return True


@contextmanager
def logging_to(path: Path):
    """Also log to ``path`` (the run's run.log) while the block runs. Python warnings raised meanwhile are logged
    too (console and run.log), each once per run and on one line; the known ones without an action are dropped."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handler = RunLogHandler(path)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.addHandler(handler)
    if root.level > logging.INFO or root.level == logging.NOTSET:
        root.setLevel(logging.INFO)
    one_line = OneLineWarning()
    logging.getLogger("py.warnings").addFilter(one_line)
    try:
        with warnings.catch_warnings():  # new filters: every warning is shown again, once, in this run
            for message in QUIET_WARNINGS:
                warnings.filterwarnings("ignore", message=message)
            logging.captureWarnings(True)
            try:
                yield
            finally:
                logging.captureWarnings(False)
    finally:
        logging.getLogger("py.warnings").removeFilter(one_line)
        root.removeHandler(handler)
        handler.close()


class RunLogHandler(logging.FileHandler):
    """run.log: when the disk refuses a line (full, read-only), the log stops there quietly; the run's own
    error then says what happened, in one line, instead of logging's traceback per line."""

    def handleError(self, record: logging.LogRecord) -> None:
        self.close()
        logging.getLogger().removeHandler(self)
