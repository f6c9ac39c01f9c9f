"""Which runs: a column by its name or config key, the runs of one sweep, ``key=value`` filters."""

from __future__ import annotations

import pandas as pd

from harness.errors import ConfigError

KEY_COLUMNS = ("dataset", "backbone", "loss", "regularizer")


def resolve_column(runs: pd.DataFrame, name: str) -> str:
    """A column by its name or its config key (``optimizer.lr`` -> ``config/optimizer.lr``)."""
    for candidate in (name, f"config/{name}", f"config/regularizer.{name}"):
        if candidate in runs.columns:
            return candidate
    close = [c for c in runs.columns if name.split(".")[-1] in c][:5]
    raise ConfigError(f"no column {name!r} in the records; pick one of {close or list(KEY_COLUMNS)}")


def select_runs(runs: pd.DataFrame, sweep: str | None = None, where=()) -> pd.DataFrame:
    """The runs of one sweep (launched with ``sweep=<name>``; ``a,b``: of either) and/or matching ``key=value``
    filters."""
    if sweep:
        overrides = runs["overrides"].fillna("") if "overrides" in runs else pd.Series("", index=runs.index)
        names = [name for name in str(sweep).split(",") if name]
        runs = runs[overrides.map(lambda text: any(f'"sweep={name}"' in text for name in names))]
    for condition in where:
        key, sep, value = condition.partition("=")
        if not sep:
            raise ConfigError(f"--where {condition!r} must read key=value, e.g. --where loss=proxy_anchor")
        col = resolve_column(runs, key)
        runs = runs[matches(runs[col], value)]
    return runs


def matches(column: pd.Series, value: str) -> pd.Series:
    if pd.api.types.is_bool_dtype(column) or column.dtype == object:
        return column.map(lambda v: str(v).lower() == value.lower())
    if pd.api.types.is_numeric_dtype(column):
        try:
            return column == float(value)
        except ValueError:
            return pd.Series(False, index=column.index)
    return column == value
