"""The search space in Hydra's sweeper syntax, as Optuna distributions, and trial values back as overrides.

    interval(0.01, 2.0)              FloatDistribution(0.01, 2.0)
    tag(log, interval(1e-4, 1e-1))   FloatDistribution(1e-4, 1e-1, log=True)
    int(interval(16, 256))           IntDistribution(16, 256)          (tag(log, int(interval(...))) too)
    range(1, 10, 3)                  IntDistribution(1, 7, step=3)     (Hydra's range: the stop is excluded)
    range(0.1, 1.0, 0.2)             FloatDistribution(0.1, 0.9, step=0.2)
    choice(a, b, 3) / a,b,3          CategoricalDistribution(("a", "b", 3))   (scalars; a config group too: loss=a,b)
    0.5                              not searched: a fixed override of every trial

A trial's values become ordinary Hydra overrides (``key=value``), so a parameter may be any config value or
a config group choice, exactly as on the command line.
"""

from __future__ import annotations

import math

from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import ChoiceSweep, IntervalSweep, Override, RangeSweep
from hydra.errors import HydraException
from optuna.distributions import BaseDistribution, CategoricalDistribution, FloatDistribution, IntDistribution

from harness.errors import ConfigError

SCALARS = (str, int, float, bool)


def parse_search_space(params: dict) -> tuple[dict, list]:
    """``{key: "tag(log, interval(1e-3, 1))", other: 3}`` -> ({key: distribution}, ["other=3"])."""
    lines = [f"{key}={value}" for key, value in (params or {}).items()]
    return split_overrides(lines)


def split_overrides(lines: list) -> tuple[dict, list]:
    """Command-line style overrides -> (search space of the sweep-syntax ones, the plain ones unchanged)."""
    space, fixed = {}, []
    for line in lines:
        override = parse_override(line)
        if override.is_sweep_override():
            space[override.get_key_element()] = distribution_for(override, line)  # "+key" adds a new key
        else:
            fixed.append(line)
    return space, fixed


def parse_override(line: str) -> Override:
    try:
        return OverridesParser.create().parse_override(line)
    except HydraException as err:
        raise ConfigError(
            f"cannot parse search parameter '{line}': {err}; use Hydra's sweep syntax, e.g. "
            f"key=tag(log, interval(0.01, 2.0))"
        ) from None


def distribution_for(override: Override, line: str) -> BaseDistribution:
    value = override.value()
    tags = set(getattr(value, "tags", set()) or set())
    if tags - {"log"}:
        raise ConfigError(
            f"'{line}': unknown tag {sorted(tags - {'log'})}; the only tag is log, e.g. tag(log, interval(1e-4, 1e-1))"
        )
    log = "log" in tags
    if isinstance(value, IntervalSweep):
        low, high = value.start, value.end
        if not low < high:
            raise ConfigError(f"'{line}': the interval needs low < high")
        if log and low <= 0:
            raise ConfigError(f"'{line}': a log interval needs low > 0")
        if isinstance(low, int) and isinstance(high, int):
            return IntDistribution(low, high, log=log)
        return FloatDistribution(float(low), float(high), log=log)
    if log:
        raise ConfigError(f"'{line}': tag(log, ...) applies to interval(...) only")
    if isinstance(value, RangeSweep) and not value.shuffle:
        values = list(override.sweep_iterator())
        if not values:
            raise ConfigError(f"'{line}': the range is empty (Hydra's range excludes its stop)")
        if all(isinstance(v, int) for v in values):
            return IntDistribution(values[0], values[-1], step=int(value.step))
        return FloatDistribution(float(values[0]), float(values[-1]), step=float(value.step))
    if isinstance(value, (ChoiceSweep, RangeSweep)):
        choices = list(override.sweep_iterator())
        if not all(isinstance(c, SCALARS) for c in choices):
            raise ConfigError(
                f"'{line}': choice values must be scalars (str, int, float, bool), got "
                f"{[type(c).__name__ for c in choices]}"
            )
        return CategoricalDistribution(choices)
    raise ConfigError(
        f"'{line}': {type(value).__name__} is not supported; use interval, tag(log, interval), "
        f"int(interval), range or choice"
    )


def param_name(key: str) -> str:
    """The Optuna parameter name of an override key (``+regularizer.x.gam1`` -> ``regularizer.x.gam1``)."""
    return key.lstrip("+")


def suggest(trial, key: str, distribution: BaseDistribution):
    """Ask the trial for a value of one parameter (a retried trial returns its fixed value)."""
    name = param_name(key)
    if isinstance(distribution, FloatDistribution):
        return trial.suggest_float(
            name, distribution.low, distribution.high, log=distribution.log, step=distribution.step
        )
    if isinstance(distribution, IntDistribution):
        return trial.suggest_int(
            name, distribution.low, distribution.high, log=distribution.log, step=distribution.step
        )
    return trial.suggest_categorical(name, distribution.choices)


def format_override(key: str, value) -> str:
    """One trial value as a Hydra override that parses back to exactly that value."""
    if isinstance(value, bool):
        text = "true" if value else "false"
    elif isinstance(value, float):
        if not math.isfinite(value):
            raise ConfigError(f"{key}: non-finite value {value}")
        text = repr(value)
    elif isinstance(value, int):
        text = str(value)
    elif isinstance(value, str):
        text = "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"
    else:
        raise ConfigError(f"{key}: cannot write {type(value).__name__} {value!r} as an override")
    return f"{key}={text}"
