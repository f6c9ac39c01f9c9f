"""dml-harness: compose, train, evaluate and record deep metric learning runs."""

from harness.errors import ConfigError, DataError, HarnessError, NonFiniteLossError
from harness.redact import install_log_redaction

install_log_redaction()  # every log record is redacted when created, whatever handler writes it

__all__ = ["run", "load_run", "ConfigError", "DataError", "HarnessError", "NonFiniteLossError"]


def __getattr__(name):  # keep `import harness` light: torch loads on first use of run / load_run
    if name == "run":
        # lazy: keeps `import harness` light (torch loads on first use of run)
        from harness.training.task import run

        return run
    if name == "load_run":
        # lazy: as run above (torch)
        from harness.models.reload import load_run

        return load_run
    raise AttributeError(name)
