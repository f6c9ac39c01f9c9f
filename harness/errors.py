"""Errors a user can fix. Each message is one line that names the fix; `run.py` prints it and exits 2."""


class HarnessError(Exception):
    """Base class: bad input the user can correct (printed as one line, non-zero exit)."""


class ConfigError(HarnessError):
    """An invalid or incompatible configuration, detected before any training step."""


class DataError(HarnessError):
    """A missing, incomplete or unusable dataset."""


class ResultsDiskError(HarnessError):
    """The results folder cannot be written: read-only, full, or forbidden (the message names the folder)."""


class NonFiniteLossError(HarnessError):
    """A loss term became NaN or infinite; the message names the step and the terms."""


class RunPruned(Exception):
    """Raised by an ``on_evaluate`` callback (e.g. an Optuna pruner) to stop a run early.

    Not a user error: the run's record is written with status ``pruned`` and the epoch.
    """

    def __init__(self, epoch: int, message: str = ""):
        super().__init__(message or f"pruned at epoch {epoch}")
        self.epoch = epoch
