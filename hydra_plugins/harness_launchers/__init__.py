"""Hydra launchers of the harness: ``hydra/launcher=local`` (default), ``slurm`` and ``submitit_local``.

Hydra only instantiates launchers defined under the ``hydra_plugins`` package, so the classes are here and
the shared logic is in harness/launch/sweep.py. Imports stay light (Hydra imports plugin modules at start-up).
"""
