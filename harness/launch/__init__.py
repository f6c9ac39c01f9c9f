"""Launching: the jobs of a sweep (planned, skipped, summarised), the processes of one run, SLURM job shapes.

Training code never imports submitit or optuna; the Hydra launchers (hydra_plugins/) build on this package."""
