"""The run directory: the one owner of a run's on-disk contract (identity, record, epoch log, lock, checkpoints)."""
