"""CSV: the epoch rows as a table in ``<run dir>/metrics.csv`` (one row per epoch, one column per key) and the
record's results in ``<run dir>/results.csv`` (one row), for spreadsheets and pandas. Columns are the union
of the keys seen so far; the file is rewritten atomically when a row arrives (a run has at most a few
hundred epochs), so a killed run never leaves half a line.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path

from harness.io import atomic_write_text
from harness.tracking.base import Tracker, record_results


class CSVLogger(Tracker):
    name = "csv"

    def __init__(self, filename: str = "metrics.csv", results_filename: str = "results.csv"):
        self.filename, self.results_filename = filename, results_filename
        self.rows: list = []
        self.path = None

    def start(self, run_dir, config, tags, resumed_from_epoch):
        self.run_dir = Path(run_dir)
        self.path = self.run_dir / self.filename
        self.rows = read_rows(self.path)  # what earlier attempts wrote (Trackers sends only the rows after them)

    def log_epoch(self, row):
        self.rows = [r for r in self.rows if int(float(r["epoch"])) < int(row["epoch"])] + [row]
        write_rows(self.path, self.rows)

    def log_record(self, record, logged=frozenset()):
        write_rows(self.run_dir / self.results_filename, [{"status": record.get("status"), **record_results(record)}])

    def log_images(self, paths, step):
        pass  # the pictures are already files in the run directory

    def finish(self, status):
        pass


def read_rows(path: Path) -> list:
    if not path.exists():
        return []
    with open(path, newline="") as f:
        return [{k: v for k, v in row.items() if v != ""} for row in csv.DictReader(f)]


def write_rows(path: Path, rows: list) -> None:
    columns = list(dict.fromkeys(key for row in rows for key in row))
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=columns, restval="")
    writer.writeheader()
    writer.writerows(rows)
    atomic_write_text(path, out.getvalue())
