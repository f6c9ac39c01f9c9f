"""Each arm against its baseline, paired over the seeds both finished (harness.tables.stats does the arithmetic).

An arm is a row whose ``regularizer`` is not ``none``; its baseline is the ``none`` row with the same other row
keys (the base loss, a split-off library version, ...) and the same column keys (the dataset). Seeds both have
are paired; the others are named and left out. A knob outside the row keys that differs between the two (say
``trainer.epochs`` 30 against 20) does not stop the comparison but marks it ≠ and is named under the table: the
Δ is then not the regularizer's alone. A knob that is absent from one side's records and at its neutral default
on the other (harness.rundir.identity.NEUTRAL_DEFAULTS) is the same knob.

The family of tests is one metric (``--family``, MAP@R by default) across every comparison of the table; Holm's
correction runs over it and its corrected p alone marks a Δ (bold). The other metrics' Δ are shown, not tested.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from harness.evaluation.per_query import RECORD_KEY, load_per_query
from harness.tables.aggregate import NOT_A_KNOB
from harness.tables.layout import NEUTRAL_DEFAULTS
from harness.tables.stats import Bootstrap, Paired, class_bootstrap, holm, min_detectable, paired_test, seeds_needed

log = logging.getLogger(__name__)

PER_QUERY = {"test/map@r": "ap_at_r", "test/recall@1": "hit_at_1"}  # metrics a test-set bootstrap can resample
ARM_KEY = "regularizer"
BASELINE = "none"


@dataclass
class Comparison:
    arm: tuple  # the arm's row key values
    base: tuple  # its baseline's
    column: tuple  # the column key values (dataset, ...)
    metric: str  # a record column, e.g. test/map@r
    paired: Paired
    seeds: list  # the paired seeds
    unpaired: str = ""  # "arm 3; baseline 4": seeds only one side finished
    differs: list = field(default_factory=list)  # "trainer.epochs 30 vs 20"
    p_holm: float = math.nan
    mde: float = math.nan  # detectable with 80% power at this n (the pair's sd)
    needed: int | None = None  # seeds a claim of the observed size needs
    bootstrap: Bootstrap | None = None
    bootstrap_note: str = ""  # why there is no test-set interval


def is_arm_key(key: str) -> bool:
    return key == ARM_KEY or str(key).startswith("config/regularizer")


def compare(
    finished: pd.DataFrame,
    rows: list,
    cols: list,
    metrics: list,
    family: str,
    alpha: float = 0.05,
    resamples: int = 1000,
) -> list:
    """Every (arm, baseline, column, metric) comparison of the table; Holm over ``family``'s."""
    if ARM_KEY not in rows or finished.empty:
        return []
    keys = rows + cols
    shared = [i for i, k in enumerate(keys) if not is_arm_key(k)]
    level = rows.index(ARM_KEY)
    groups = {as_tuple(k): part for k, part in finished.groupby(keys, dropna=False, sort=False)}
    bases = {tuple(k[i] for i in shared): k for k in groups if k[level] == BASELINE}
    knobs = [
        c for c in finished.columns if c.startswith("config/") and not c.startswith(NOT_A_KNOB) and not is_arm_key(c)
    ]
    knobs = [c for c in knobs if c not in keys and not c.startswith("config/search.")]
    found = []
    for key, arm in groups.items():
        if key[level] == BASELINE or tuple(key[i] for i in shared) not in bases:
            continue
        base_key = bases[tuple(key[i] for i in shared)]
        base = groups[base_key]
        differs = differing_knobs(arm, base, knobs)
        for metric in metrics:
            a, b = per_seed(arm, metric), per_seed(base, metric)
            common = sorted(set(a.index) & set(b.index))
            unpaired = ", ".join(
                f"{side} {','.join(str(s) for s in sorted(only))}"
                for side, only in (("arm", set(a.index) - set(b.index)), ("baseline", set(b.index) - set(a.index)))
                if only
            )
            paired = paired_test(a.loc[common].to_numpy(), b.loc[common].to_numpy())
            c = Comparison(key[: len(rows)], base_key[: len(rows)], key[len(rows) :], metric, paired, common, unpaired)
            c.differs = differs
            if paired.n >= 2:
                c.mde = min_detectable(paired.sd, paired.n, alpha)
                c.needed = seeds_needed(paired.mean, paired.sd, alpha)
            if metric == family:
                c.bootstrap, c.bootstrap_note = test_set_interval(arm, base, common, metric, resamples)
            found.append(c)
    tested = [c for c in found if c.metric == family]
    for c, p in zip(tested, holm([c.paired.p for c in tested])):
        c.p_holm = float(p)
    return found


def as_tuple(key) -> tuple:
    return key if isinstance(key, tuple) else (key,)


def per_seed(runs: pd.DataFrame, metric: str) -> pd.Series:
    """The metric by seed (the mean, should a group hold two runs of a seed that --allow-mixed kept together)."""
    values = runs[["seed", metric]].dropna()
    return values.groupby(values["seed"].astype(int))[metric].mean()


def comparable(value):
    return "absent" if value is None or (isinstance(value, float) and math.isnan(value)) else str(value)


def differing_knobs(arm: pd.DataFrame, base: pd.DataFrame, knobs: list) -> list:
    """``knob arm-values vs baseline-values`` for each config value that differs between the two groups."""
    out = []
    for col in knobs:
        default = NEUTRAL_DEFAULTS.get(col.removeprefix("config/"))
        values = []
        for part in (arm, base):
            seen = {comparable(v) for v in part[col]}
            if default is not None and "absent" in seen:
                seen = (seen - {"absent"}) | {str(default)}
            values.append(seen)
        if values[0] != values[1]:
            out.append(f"{col.removeprefix('config/')} {'/'.join(sorted(values[0]))} vs {'/'.join(sorted(values[1]))}")
    return out


def test_set_interval(arm: pd.DataFrame, base: pd.DataFrame, seeds: list, metric: str, resamples: int):
    """(the class bootstrap of the paired runs' per-query differences, or None and why not)."""
    field_name = PER_QUERY.get(metric)
    if field_name is None:
        return None, f"no per-query values of {metric}"
    if len(seeds) == 0:
        return None, "no paired seeds"
    labels, diffs = None, []
    for seed in seeds:
        pair = []
        for part in (arm, base):
            run = part[part["seed"].astype(int) == seed].iloc[0]
            if str(run.get("protocol", "")).startswith("reality_check"):  # a model of k fold runs: no one file
                return None, "Reality Check models (their fold runs' files are not the model's)"
            name = run.get(RECORD_KEY)
            if not isinstance(name, str):
                return None, "runs without per-query files (recorded before they were written)"
            try:
                pair.append(load_per_query(Path(run["path"]) / name))
            except (OSError, ValueError) as err:
                log.warning("per-query file of %s not read: %s", run["path"], err)
                return None, f"a per-query file cannot be read ({run['path']})"
        if not np.array_equal(pair[0].label, pair[1].label) or (
            labels is not None and not np.array_equal(labels, pair[0].label)
        ):
            return None, "the runs were not scored on the same test queries"
        labels = pair[0].label
        diffs.append(getattr(pair[0], field_name).astype(float) - getattr(pair[1], field_name).astype(float))
    return class_bootstrap(labels, np.stack(diffs), resamples=resamples), ""
