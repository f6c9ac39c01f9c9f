"""Experiment trackers: the ``logger`` config group (``logger=tensorboard``, ``logger=[tensorboard,wandb]``).

Every tracker receives exactly what ``epochs.jsonl`` and ``record.json`` hold (same keys), the resolved config
(secrets redacted), the run's tags (sweep, Optuna study and trial, seed, git commit) and its pictures. The JSON
files stay the source of truth: a tracker that fails costs one warning, never the run. One adapter per file:

    tensorboard_logger.py   TensorBoard event files in <run dir>/tensorboard/
    wandb_logger.py         Weights & Biases, offline unless $WANDB_MODE says otherwise
    mlflow_logger.py        MLflow, $MLFLOW_TRACKING_URI or a file store under results/mlruns
    csv_logger.py           metrics.csv and results.csv in the run directory
"""

from harness.tracking.base import Tracker, run_key, run_tags
from harness.tracking.trackers import Trackers, build_trackers

__all__ = ["Tracker", "Trackers", "build_trackers", "run_key", "run_tags"]
