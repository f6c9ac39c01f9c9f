"""TensorBoard: event files in ``<run dir>/tensorboard/``, so ``tensorboard --logdir results/`` shows every run.

Scalars carry the epochs.jsonl keys as tags (``train/<term>``, ``val/*``, ``lr/<group>``, ``time/*``) with the epoch
as step; the record's results (``test/*``, ``diag/*``, ``raw/*``) are scalars at the selected epoch; the config and
the tags are text; pictures are images. At the end the run enters TensorBoard's HParams tab: its knobs (dataset,
loss, regularizer, backbone, seed, arm, sweep and every value its command swept) and its final metrics (``test/*``,
``val/*`` at the selected epoch), so the runs of a sweep compare there. A resumed run adds an event file to the same
directory (TensorBoard reads them as one run) and sends only the steps it has not sent before (see ``Trackers``).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import yaml
from PIL import Image

from harness.tracking.base import Tracker, metrics_of, record_results, require, result_step
from harness.tracking.naming import hparams

HPARAM_METRICS = ("test/", "val/")  # the record's results the HParams tab shows beside the knobs


class TensorBoardLogger(Tracker):
    name = "tensorboard"

    def __init__(self, subdir: str = "tensorboard", flush_secs: int = 30):
        require("tensorboard", "tensorboard", self.name)
        self.subdir, self.flush_secs = subdir, int(flush_secs)
        self.writer = None

    def start(self, run_dir, config, tags, resumed_from_epoch):
        # lazy: optional dependency (tensorboard, the trackers extra)
        from torch.utils.tensorboard import SummaryWriter

        self.log_dir = Path(run_dir) / self.subdir
        self.writer = SummaryWriter(log_dir=str(self.log_dir), flush_secs=self.flush_secs)
        self.hparams = hparams(config, tags)
        if resumed_from_epoch is None:
            text = yaml.safe_dump(config, sort_keys=False, default_flow_style=False)
            self.writer.add_text("config", "    " + text.replace("\n", "\n    "), 0)  # a Markdown code block
            table = "| tag | value |\n|---|---|\n" + "".join(f"| {k} | {v} |\n" for k, v in tags.items())
            self.writer.add_text("tags", table, 0)

    def log_epoch(self, row):
        step = int(row["epoch"])
        for key, value in metrics_of(row).items():
            self.writer.add_scalar(key, value, step)
        self.writer.flush()  # the step is on disk before the run goes on (a kill loses nothing it was sent)

    def log_record(self, record, logged=frozenset()):
        step = result_step(record)
        for key, value in record_results(record, leave_out=logged).items():
            self.writer.add_scalar(key, value, step)
        self.writer.add_text("status", str(record.get("status")), step)
        self.log_hparams(record)
        self.writer.flush()

    def log_hparams(self, record: dict) -> None:
        """The HParams plugin's three summaries in the run's own event files: its metrics are the scalars of the
        same tags (the record's results above, or the epoch rows' ``val/*``), read from this run."""
        # lazy: optional dependency (tensorboard, the trackers extra)
        from torch.utils.tensorboard.summary import hparams as hparams_summaries

        metrics = {k: v for k, v in record_results(record).items() if k.startswith(HPARAM_METRICS)}
        for summary in hparams_summaries(self.hparams, metrics):
            self.writer.file_writer.add_summary(summary, result_step(record))

    def log_images(self, paths, step):
        for path in paths:
            with Image.open(path) as img:
                pixels = np.asarray(img.convert("RGB"))
            self.writer.add_image(f"pictures/{Path(path).stem}", pixels, step, dataformats="HWC")
        self.writer.flush()

    def finish(self, status):
        if self.writer is not None:
            self.writer.close()
            self.writer = None
