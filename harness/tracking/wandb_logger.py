"""Weights & Biases: offline by default, so runs on clusters without network lose nothing.

``mode: null`` takes ``$WANDB_MODE`` and else ``offline``: the run is written to ``<run dir>/wandb/offline-run-*``
and uploaded later with ``wandb sync <run dir>/wandb/offline-run-*`` (the files of a resumed run are synced into one
run, in order). The W&B run id is derived from the run directory, so a resumed or requeued run continues the same
W&B run; its name says the dataset, losses and swept values (``cub200 · proxy_anchor + antico_pair w=0.3 · seed 1``)
and its job type is the comparison's arm (method | baseline). An attempt killed before wandb-core flushed its buffer
loses rows from its offline file: the next attempt reads what the earlier files hold (``wandb_file``) and sends the
rest again. The group is the sweep, the Optuna study, or an inline grid's multirun (every multirun is one group);
the tags name the sweep, study, trial, seed and git commit. History rows are the epochs.jsonl rows with the epoch as
step; the record's results go into the run summary; pictures are logged as images (at the step after the last epoch:
W&B steps only go forward); with ``log_model: true`` the selected epoch's checkpoint (``checkpoints/best.pt``) is a
``model`` artifact. The API key comes from the environment only (``WANDB_API_KEY`` or ``wandb login``), never from
the config.
"""

from __future__ import annotations

import os
from pathlib import Path

from harness.rundir.checkpoint import BEST
from harness.tracking.base import Tracker, metrics_of, record_results, require, run_key
from harness.tracking.naming import group_of
from harness.tracking.wandb_file import last_step, offline_runs

NOT_A_TAG = ("name", "swept")  # said by the run's name and config; W&B tags hold at most 64 characters

# What W&B may capture by itself, all off: the config it receives is already redacted, but its metadata record
# (the command line with every override in clear, the program, host, user, e-mail, the git remote URL with any
# token in it), a code snapshot, a git diff and `pip freeze` (a VCS requirement can hold a token) are written to
# the offline run file untouched, and `wandb sync` would upload them (tests/test_redact.py scans every file).
SETTINGS = dict(
    console="off",
    silent=True,
    x_disable_meta=True,  # no metadata record: args, program, host, username, email, git remote/commit, executable
    disable_git=True,
    disable_code=True,
    save_code=False,
    x_save_requirements=False,
)


class WandbLogger(Tracker):
    name = "wandb"

    def __init__(
        self,
        project: str = "dml-harness",
        entity: str | None = None,
        mode: str | None = None,
        group: str | None = None,
        log_model: bool = False,
    ):
        require("wandb", "wandb", self.name)
        self.project, self.entity, self.mode, self.group = project, entity, mode, group
        self.log_model = bool(log_model)
        self.run = self.run_dir = None

    def start(self, run_dir, config, tags, resumed_from_epoch):
        # lazy: optional dependency (the trackers extra)
        import wandb

        run_dir = self.run_dir = Path(run_dir)
        self.run = wandb.init(
            project=self.project,
            entity=self.entity,
            id=run_key(run_dir),
            resume="allow",
            name=tags.get("name") or run_dir.name,
            dir=str(run_dir),
            mode=self.mode or os.environ.get("WANDB_MODE") or "offline",
            config=config,
            group=self.group or group_of(tags),
            job_type=tags.get("arm", "method"),
            tags=[f"{k}={v}"[:64] for k, v in tags.items() if k not in NOT_A_TAG],
            reinit="finish_previous",
            settings=wandb.Settings(**SETTINGS),
        )
        if self.run.offline:  # the steps earlier attempts' files really hold (a killed process loses its buffer)
            mine = Path(self.run.dir).parent
            return last_step([f for f in offline_runs(run_dir, run_key(run_dir)) if f.parent != mine])
        if self.run.resumed:  # online: the server's next step
            return int(self.run.step) - 1
        return None

    def log_epoch(self, row):
        self.run.log(metrics_of(row), step=int(row["epoch"]), commit=True)

    def log_record(self, record, logged=frozenset()):
        self.run.summary.update({**record_results(record), "status": record.get("status")})  # all: the summary
        best = self.run_dir / "checkpoints" / BEST
        if self.log_model and record.get("status") == "finished" and best.is_file():
            # lazy: optional dependency (the trackers extra)
            import wandb

            epoch = record.get("selected_epoch")
            artifact = wandb.Artifact(f"model-{self.run.id}", type="model", metadata={"epoch": epoch})
            artifact.add_file(str(best), name=BEST)
            self.run.log_artifact(artifact, aliases=["best", f"epoch-{epoch}"])

    def log_images(self, paths, step):
        # lazy: optional dependency (the trackers extra)
        import wandb

        self.run.log(
            {f"pictures/{Path(p).stem}": wandb.Image(str(p)) for p in paths}, step=max(int(step), self.run.step)
        )

    def finish(self, status):
        if self.run is not None:
            # lazy: optional dependency (the trackers extra)
            import wandb

            self.run.finish(exit_code=1 if status == "failed" else 0)
            self.run = None
            wandb.teardown()  # waits for wandb-core to write the run file: run.finish() alone may return before
