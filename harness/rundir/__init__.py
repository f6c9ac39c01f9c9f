"""The run directory: the one owner of a run's on-disk contract.

    results/runs/<dataset>/<loss>__<regularizers>__<backbone>__<hash8>__seed<N>/
        identity.json   the identity: version, full digest, data fingerprint, keys, semantic config (identity.py)
        config.yaml     the resolved config, completed and redacted          overrides.txt   the command's overrides
        epochs.jsonl    one row per epoch (records.py)                        record.json     the final record
        checkpoints/    last.pt (resume), best.pt (the selected epoch)        error.txt       a failure's traceback
        run.log         the attempt's log                                      .lock           the one writer's lock

:class:`RunDir` is the only code that names, parses, reads or writes these files; an attempt at a run goes through
``RunDir.attempt`` (attempt.py). Records of an earlier identity version are renamed by
``python -m harness.rundir migrate RESULTS`` (migrate.py).
"""

from harness.rundir.records import Corrupt

__all__ = ["Attempt", "Corrupt", "RunDir"]


def __getattr__(name):  # lazy: RunDir and Attempt bring torch and the trackers; the tables read records without them
    if name == "RunDir":
        # lazy: see __getattr__ (torch, the trackers)
        from harness.rundir.run_dir import RunDir

        return RunDir
    if name == "Attempt":
        # lazy: see __getattr__ (torch, the trackers)
        from harness.rundir.attempt import Attempt

        return Attempt
    raise AttributeError(name)
