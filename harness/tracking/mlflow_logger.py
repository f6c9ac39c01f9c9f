"""MLflow: a local file store under the results tree, or the tracking server of ``$MLFLOW_TRACKING_URI``.

``tracking_uri: null`` takes ``$MLFLOW_TRACKING_URI`` from the environment (credentials stay there: the URI is
never written into the run directory or the config) and else the file store ``local_store``
(``results/mlruns``: one folder per run, safe for parallel writers on a shared filesystem; browse it with
``MLFLOW_ALLOW_FILE_STORE=true mlflow ui --backend-store-uri results/mlruns``). MLflow 3 keeps the file store
in maintenance mode and asks for that opt-in, which this adapter sets for its own local store only.

A tracking server that does not answer costs a few seconds and one warning, never the run: it is asked once,
:data:`PROBE_S` seconds at most, before anything is sent (an unreachable ``$MLFLOW_TRACKING_URI`` otherwise blocks
for minutes in MLflow's own retries), and MLflow's own retries are bounded (:data:`HTTP_LIMITS`, unless the
environment sets them).

MLflow chooses its run ids, so the run is found again by the tag ``harness.run_key`` (derived from the run
directory): a resumed or requeued run continues the same MLflow run, even when another sweep resumes it (so
every sweep shares one experiment). A sweep is one thing in the UI: its runs are nested under a parent run
named for it (the sweep file, the Optuna study, or an inline grid's multirun), and carry ``sweep`` / ``study``
tags to filter by; a run's name says its dataset, losses and swept values
(``cub200 · proxy_anchor + antico_pair w=0.3 · seed 1``, redacted). Metric names are the epochs.jsonl keys
with the characters MLflow refuses replaced (``val/recall@1`` -> ``val/recall_at_1``); the config is logged
as flat parameters, the tags as tags, the record's results as metrics at the selected epoch and the pictures
as artifacts under ``pictures/``; with ``log_model: true`` the selected epoch's checkpoint
(``checkpoints/best.pt``) too, under ``checkpoint/``.
"""

from __future__ import annotations

import os
import re
import time
from pathlib import Path

from harness.rundir import records
from harness.rundir.checkpoint import BEST
from harness.tracking.base import Tracker, metrics_of, record_results, require, result_step, run_key
from harness.tracking.naming import group_of

KEY_TAG = "harness.run_key"
GROUP_TAG = "harness.group"  # on a sweep's parent run: the sweep, study or grid it stands for
PARENT_TAG = "mlflow.parentRunId"  # MLflow's own nesting tag
PROBE_S = 5.0  # the first question to a tracking server waits this long at most
HTTP_LIMITS = {  # MLflow's defaults: 7 retries, backoff factor 2, 120 s timeout: minutes on a server that is down
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2",
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "10",
}
STATUS = {"finished": "FINISHED", "pruned": "KILLED", "failed": "FAILED"}
_REFUSED = re.compile(r"[^/\w.\- ]")


def mlflow_key(key: str) -> str:
    return _REFUSED.sub("_", str(key).replace("@", "_at_"))


class MLflowLogger(Tracker):
    name = "mlflow"

    def __init__(
        self,
        experiment: str = "dml-harness",
        tracking_uri: str | None = None,
        local_store: str = "results/mlruns",
        log_model: bool = False,
    ):
        require("mlflow", "mlflow-skinny", self.name)
        self.experiment, self.tracking_uri, self.local_store = experiment, tracking_uri, local_store
        self.log_model = bool(log_model)
        self.client = self.run_id = self.run_dir = None

    def start(self, run_dir, config, tags, resumed_from_epoch):
        # lazy: optional dependency (the trackers extra)
        from mlflow.tracking import MlflowClient

        uri = self.tracking_uri or os.environ.get("MLFLOW_TRACKING_URI")
        if not uri:
            os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
            uri = Path(self.local_store).resolve().as_uri()
        elif uri.startswith(("http://", "https://")):
            probe(uri)
            for name, value in HTTP_LIMITS.items():
                os.environ.setdefault(name, value)
        self.client = MlflowClient(tracking_uri=uri)
        experiment_id = self._experiment_id()
        self.run_dir = Path(run_dir)
        key = run_key(run_dir)
        found = self.client.search_runs([experiment_id], filter_string=f"tags.`{KEY_TAG}` = '{key}'", max_results=1)
        if found:
            self.run_id = found[0].info.run_id
            self.client.update_run(self.run_id, status="RUNNING")
        else:
            run = self.client.create_run(
                experiment_id,
                run_name=tags.get("name") or Path(run_dir).name,
                tags={KEY_TAG: key, "run_dir": str(Path(run_dir).resolve())},
            )
            self.run_id = run.info.run_id
            self._log_params(config)
        # lazy: optional dependency (the trackers extra)
        from mlflow.entities import RunTag

        group = group_of(tags)
        nesting = {PARENT_TAG: self._parent(experiment_id, group, tags)} if group else {}
        run_tags = {k: str(v) for k, v in tags.items() if k != "name"} | nesting
        self.client.log_batch(self.run_id, tags=[RunTag(k, v) for k, v in run_tags.items()])

    def _parent(self, experiment_id: str, group: str, tags: dict) -> str:
        """The run that stands for the sweep ``group``: found by its tag, else created (named for the sweep).
        Jobs that start at once may each create one: all then take the oldest, and a job drops its own extra."""

        def parents():
            found = self.client.search_runs(
                [experiment_id], filter_string=f"tags.`{GROUP_TAG}` = '{group}'", max_results=50
            )
            return sorted(found, key=lambda r: (r.info.start_time, r.info.run_id))

        found = parents()
        if found:
            return found[0].info.run_id
        labels = {k: str(tags[k]) for k in ("sweep", "study") if tags.get(k)}
        mine = self.client.create_run(experiment_id, run_name=group, tags={GROUP_TAG: group, **labels})
        self.client.set_terminated(mine.info.run_id, "FINISHED")  # a container: its runs carry the status
        first = parents()[0].info.run_id
        if first != mine.info.run_id:
            self.client.delete_run(mine.info.run_id)
        return first

    def _experiment_id(self) -> str:
        found = self.client.get_experiment_by_name(self.experiment)
        if found is not None:
            return found.experiment_id
        try:
            return self.client.create_experiment(self.experiment)
        except Exception:  # another run created it in the meantime
            found = self.client.get_experiment_by_name(self.experiment)
            if found is None:
                raise
            return found.experiment_id

    def _log_params(self, config: dict) -> None:
        # lazy: optional dependency (the trackers extra)
        from mlflow.entities import Param

        params = [Param(mlflow_key(k), str(v)[:500]) for k, v in records.flatten(config).items()]
        for i in range(0, len(params), 100):  # MLflow takes at most 100 parameters per batch
            self.client.log_batch(self.run_id, params=params[i : i + 100])

    def _log_metrics(self, values: dict, step: int) -> None:
        # lazy: optional dependency (the trackers extra)
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        metrics = [Metric(mlflow_key(k), v, now, step) for k, v in values.items()]
        for i in range(0, len(metrics), 1000):
            self.client.log_batch(self.run_id, metrics=metrics[i : i + 1000])

    def log_epoch(self, row):
        self._log_metrics(metrics_of(row), int(row["epoch"]))

    def log_record(self, record, logged=frozenset()):
        self._log_metrics(record_results(record, leave_out=logged), result_step(record))
        best = self.run_dir / "checkpoints" / BEST
        if self.log_model and record.get("status") == "finished" and best.is_file():
            self.client.log_artifact(self.run_id, str(best), artifact_path="checkpoint")

    def log_images(self, paths, step):
        for path in paths:
            self.client.log_artifact(self.run_id, str(path), artifact_path="pictures")

    def finish(self, status):
        if self.client is not None and self.run_id is not None:
            self.client.set_terminated(self.run_id, STATUS.get(status, "FAILED"))
            self.run_id = None


def probe(uri: str, seconds: float = PROBE_S) -> None:
    """Whether a tracking server answers at all (any HTTP status) within ``seconds``; else one ConnectionError
    naming its host (never the URI: it may hold credentials)."""
    # lazy: MLflow's own HTTP client (requests, urllib3), installed with it (this adapter is optional)
    import requests
    from urllib3.util import parse_url

    try:
        requests.get(uri, timeout=seconds, allow_redirects=False)
    except requests.RequestException as err:
        where = parse_url(uri)
        raise ConnectionError(
            f"the MLflow tracking server {where.host}:{where.port or ''} does not answer within {seconds:g} s "
            f"({type(err).__name__}); check MLFLOW_TRACKING_URI"
        ) from None
