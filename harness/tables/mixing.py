"""No silent mixing: a group of seeds whose runs differ in what their numbers depend on is split, and said.

Beyond the config, a run's numbers depend on the code on the numerical path (``code/numerical``, a hash of its
normalised syntax tree, harness/provenance/numerics.py), the arithmetic (``precision``: float32, or bf16 / fp16
under CUDA autocast), the device (``cpu (x86_64)``, a GPU's name; the thread count is left out), the data
(``data_fingerprint``) and the numerical libraries (``versions/torch`` ... normalised: ``2.14.1+cu130`` is
``2.14.1``; libraries that never touch a number, such as Hydra or Optuna, are left out). A group whose runs
differ in any of these is split into rows by it and listed in problems.md with the differing values;
``--allow-mixed KEY`` (code, precision, device, data, versions, or one library such as torch) keeps them
together and says so under the table. A record that predates a key (no ``code/numerical``) counts as
``unknown``, which differs from any known value.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import pandas as pd

from harness.errors import ConfigError

PREFIX = "mixed/"  # the normalised columns: mixed/code, mixed/torch, ...
SOURCES = {"code": "code/numerical", "precision": "precision", "device": "device", "data": "data_fingerprint"}
NOT_NUMERICAL = ("hydra", "omegaconf", "optuna", "submitit", "wandb", "mlflow", "tensorboard", "pandas", "matplotlib")
UNKNOWN = "unknown"


@dataclass(frozen=True)
class Mixed:
    group: str  # the group's row values, as text
    key: str  # code, precision, device, data, or a library
    values: str  # each value with its seeds
    action: str  # split into rows | kept together (--allow-mixed)


def normalise_version(version) -> str:
    """``2.14.1+cu130`` -> ``2.14.1`` (a local build label is the same release)."""
    if version is None or version != version:
        return UNKNOWN
    return str(version).split("+", 1)[0]


def normalise_device(device) -> str:
    """``cpu (x86_64, 2 threads)`` -> ``cpu (x86_64)``: the thread count changes no metric (tests/test_identity)."""
    if device is None or device != device:
        return UNKNOWN
    return re.sub(r",\s*\d+ threads?\)", ")", str(device))


def add_columns(runs: pd.DataFrame) -> list:
    """Add the normalised ``mixed/<key>`` columns to ``runs`` (in place); the keys, in order."""
    keys = []
    for key, source in SOURCES.items():
        if source not in runs:
            continue
        values = runs[source]
        if key == "device":
            values = values.map(normalise_device)
        runs[PREFIX + key] = values.astype(object).where(values.notna(), UNKNOWN).map(str)
        keys.append(key)
    for source in sorted(c for c in runs.columns if c.startswith("versions/")):
        name = source.removeprefix("versions/")
        if name.lower() in NOT_NUMERICAL:
            continue
        runs[PREFIX + name] = runs[source].map(normalise_version)
        keys.append(name)
    return keys


def check_allowed(allow, keys: list) -> set:
    """The --allow-mixed keys, checked against the ones the records have (``versions`` is every library)."""
    allowed = set()
    libraries = [k for k in keys if k not in SOURCES]
    for key in allow or ():
        key = key.removeprefix("versions/")
        if key == "versions":
            allowed.update(libraries)
        elif key in keys or key in SOURCES:
            allowed.add(key)
        else:
            raise ConfigError(f"--allow-mixed {key}: pick one of {', '.join(list(SOURCES) + ['versions'] + libraries)}")
    return allowed


def split_mixed(finished: pd.DataFrame, keys: list, mix_keys: list, allowed: set) -> tuple[list, list]:
    """(the ``mixed/<key>`` columns to add to the group keys, the :class:`Mixed` groups found)."""
    split, found = [], []
    if finished.empty:
        return split, found
    groups = finished.groupby(keys, dropna=False, sort=True) if keys else [((), finished)]
    for key in mix_keys:
        column = PREFIX + key
        for values, part in groups:
            if part[column].nunique(dropna=False) < 2:
                continue
            seeds = part.groupby(column)["seed"].agg(lambda s: ",".join(str(int(v)) for v in sorted(s)))
            text = "; ".join(f"{v} (seed{'s' * (',' in s)} {s})" for v, s in seeds.items())
            group = ", ".join(map(str, values if isinstance(values, tuple) else (values,)))
            action = "kept together (--allow-mixed)" if key in allowed else f"split into rows by {key}"
            found.append(Mixed(group, key, text, action))
            if key not in allowed and column not in split:
                split.append(column)
    return split, found


def mixed_notes(found: list) -> list:
    """The lines under a table whose rows average runs that --allow-mixed kept together."""
    return [
        f"--allow-mixed {m.key}: the row {m.group} averages runs of {m.values}"
        for m in found
        if m.action.startswith("kept")
    ]
