"""An Optuna study's runs as a study, not as an ablation: ``python -m harness.tables --sweep <study>``.

When every selected run is a trial (its config has ``search.study``), the tables write instead of the seed table:

    study.md  study.csv   trials ranked by the objective (the runs' selection metric, validation split), each
                          searched knob rounded to 3 significant digits, the test metrics beside (reported, never
                          used to choose), the best trial's test metrics in one line, and the knobs' importance
                          (fANOVA, seeded) only from 20 completed trials up; below that, a sentence says why not
    plots/<knob>.png      the objective and test MAP@R of every completed trial against each numeric knob: points,
                          not lines (the trials are not a curve); the best trial starred
    plots/importance.png  from 20 completed trials up

The searched knobs and their scales come from the study's ``search.yaml`` (``<results>/search/<study>/``) when it
is found; else the config values that vary across the trials are the knobs.
"""

from __future__ import annotations

import logging
import math
import warnings
from dataclasses import dataclass
from pathlib import Path

import optuna
import pandas as pd
from optuna.distributions import CategoricalDistribution, FloatDistribution

from harness.errors import ConfigError, HarnessError
from harness.search.driver import read_search
from harness.search.report import MIN_TRIALS_FOR_IMPORTANCE
from harness.search.space import param_name
from harness.tables.aggregate import NOT_A_KNOB
from harness.tables.build import is_percent, label
from harness.tables.layout import atomic_write_text
from harness.tables.render import MISSING, markdown_grid
from harness.tables.select import STUDY_KEY

log = logging.getLogger(__name__)

TRIAL_KEY = "config/search.trial"
SIGNIFICANT = 3


@dataclass
class Study:
    name: str
    objective: str  # a record column, e.g. val/map@r
    direction: str  # maximize | minimize
    knobs: dict  # record column -> optuna distribution (None when inferred without one)
    trials: pd.DataFrame  # one row per trial run (finished, pruned, failed), ranked


def significant(value, digits: int = SIGNIFICANT) -> str:
    """A knob value to ``digits`` significant digits (0.404, 6.74, 1.2e-05), text as it is."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return MISSING if value is None else str(value)
    if value != value:
        return MISSING
    if isinstance(value, int) or float(value).is_integer() and abs(value) < 10**digits:
        return str(int(value))
    return f"{value:.{digits}g}"


def knob_column(runs: pd.DataFrame, name: str) -> str | None:
    for candidate in (f"config/{name}", name):
        if candidate in runs:
            return candidate
    return None


def find_search(runs: pd.DataFrame, roots: list, name: str):
    """The study's Search (its search.yaml), from the results roots or the runs' paths.results; None if absent."""
    places = [Path(r) / "search" / name for r in roots]
    if "config/paths.results" in runs:
        places += [Path(p) / "search" / name for p in runs["config/paths.results"].dropna().unique()]
    for place in places:
        if (place / "search.yaml").is_file():
            try:
                return read_search(place)
            except ConfigError as err:
                log.warning("%s", err)
    return None


def build_study(runs: pd.DataFrame, roots: list) -> Study:
    recorded = runs[runs["status"] != "running"]
    names = recorded[STUDY_KEY].unique()
    if len(names) > 1:
        raise ConfigError(
            f"the selected runs are trials of {len(names)} studies ({', '.join(map(str, names))}); "
            f"select one with --where search.study=NAME"
        )
    name = str(names[0])
    search = find_search(recorded, roots, name)
    if search is not None:
        objective, direction = search.objective, search.direction
        knobs = {}
        for key, dist in search.space.items():
            column = knob_column(recorded, param_name(key))
            if column is not None:
                knobs[column] = dist
    else:
        objective = str(recorded["selection/metric"].dropna().iloc[0])
        mode = recorded["config/selection.mode"].dropna() if "config/selection.mode" in recorded else pd.Series()
        direction = "minimize" if len(mode) and mode.iloc[0] == "min" else "maximize"
        skip = NOT_A_KNOB + ("config/search.",)
        varying = [
            c
            for c in recorded.columns
            if c.startswith("config/") and not c.startswith(skip) and recorded[c].nunique(dropna=False) > 1
        ]
        knobs = {c: None for c in varying}
    trials = recorded.copy()
    trials["_value"] = trials[objective] if objective in trials else math.nan
    trials.loc[trials["status"] != "finished", "_value"] = math.nan
    trials = trials.sort_values("_value", ascending=direction == "minimize", na_position="last", kind="stable")
    return Study(name, objective, direction, knobs, trials.reset_index(drop=True))


def metric_text(value, metric: str, digits: int) -> str:
    if value is None or value != value:
        return MISSING
    return f"{value * 100:.{digits + 1}f}" if is_percent(metric) else f"{value:.4g}"


def study_table(study: Study, metrics: list, digits: int) -> tuple[list, list]:
    header = ["rank", "trial", "status", f"{study.objective} (objective)"]
    header += [param_name(c.removeprefix("config/")) for c in study.knobs] + [f"test {label(m)}" for m in metrics]
    body = []
    for rank, (_, t) in enumerate(study.trials.iterrows(), 1):
        status = (
            t["status"]
            if t["status"] != "pruned" or pd.isna(t.get("pruned_epoch"))
            else (f"pruned @ {int(t['pruned_epoch'])}")
        )
        body.append(
            [
                str(rank) if t["_value"] == t["_value"] else MISSING,
                str(int(t[TRIAL_KEY])) if pd.notna(t.get(TRIAL_KEY)) else MISSING,
                status,
                metric_text(t["_value"], study.objective, digits),
                *(significant(t[c]) for c in study.knobs),
                *(metric_text(t.get(m), m, digits) for m in metrics),
            ]
        )
    return header, body


def importances(study: Study) -> tuple[dict | None, str]:
    """fANOVA importances (seeded) from the completed trials, or None and the sentence that says why not."""
    done = study.trials[study.trials["_value"].notna()]
    if len(study.knobs) < 2:
        return None, "Parameter importance: one knob only, nothing to rank."
    if len(done) < MIN_TRIALS_FOR_IMPORTANCE:
        return None, (
            f"Parameter importance: not computed, {len(done)} completed trial{'s' * (len(done) != 1)} "
            f"(fewer than {MIN_TRIALS_FOR_IMPORTANCE}): fANOVA on so few trials ranks noise."
        )
    dists = {c: d or inferred(done[c]) for c, d in study.knobs.items()}
    verbosity = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)  # no "A new study created in memory" line
    try:
        shadow = optuna.create_study(direction=study.direction)
    finally:
        optuna.logging.set_verbosity(verbosity)
    for _, t in done.iterrows():
        params = {c: (t[c].item() if hasattr(t[c], "item") else t[c]) for c in dists}
        shadow.add_trial(optuna.trial.create_trial(params=params, distributions=dists, value=float(t["_value"])))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            found = optuna.importance.get_param_importances(
                shadow, evaluator=optuna.importance.FanovaImportanceEvaluator(seed=0)
            )
        except (ValueError, RuntimeError) as err:
            return None, f"Parameter importance: not computed ({err})."
    found = {param_name(k.removeprefix("config/")): v for k, v in found.items()}
    text = ", ".join(f"{k} {v:.2f}" for k, v in found.items())
    return found, f"Parameter importance (fANOVA over {len(done)} completed trials, seed 0): {text}."


def inferred(values: pd.Series):
    values = values.dropna()
    if pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values):
        low, high = float(values.min()), float(values.max())
        if low == high:
            raise HarnessError(f"{values.name} does not vary")
        return FloatDistribution(low, high, log=low > 0 and high / low >= 20)
    return CategoricalDistribution(sorted(map(str, values.unique())))


def study_markdown(study: Study, metrics: list, digits: int, importance_line: str) -> str:
    header, body = study_table(study, metrics, digits)
    counts = study.trials["status"].value_counts()
    states = ", ".join(f"{counts.get(s, 0)} {s}" for s in ("finished", "pruned", "failed"))
    lines = [
        f"*study {study.name}: {len(study.trials)} trials ({states}); objective {study.objective} "
        f"({study.direction}), validation split; ranked by it*",
        "",
    ]
    best = study.trials.iloc[0] if study.trials["_value"].notna().any() else None
    if best is not None:
        knobs = ", ".join(f"{param_name(c.removeprefix('config/'))} {significant(best[c])}" for c in study.knobs)
        tests = ", ".join(f"{label(m)} {metric_text(best.get(m), m, digits)}" for m in metrics)
        value = metric_text(best["_value"], study.objective, digits)
        lines += [
            f"Best trial: {int(best[TRIAL_KEY])} ({study.objective} {value}): {knobs}; "
            f"its test metrics (reported, never used to choose): {tests}.",
            "",
        ]
    lines += [markdown_grid(header, body, left=3), "", importance_line]
    return "\n".join(lines) + "\n"


def write_study(runs: pd.DataFrame, roots: list, out: Path, metrics, digits: int, plots: bool) -> dict:
    """The study view's files (see the module docstring); the texts and paths, as make_tables returns them."""
    # lazy: harness.tables.study_plots imports this module (circle)
    from harness.tables.study_plots import save_study_plots

    study = build_study(runs, roots)
    wanted = [m if "/" in m else f"test/{m}" for m in metrics] if metrics else ["test/map@r", "test/recall@1"]
    metrics = [m for m in wanted if m in runs]
    found, importance_line = importances(study)
    text = study_markdown(study, metrics, digits, importance_line)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "study.md", text)
    columns = [TRIAL_KEY, "status", study.objective, *study.knobs, *metrics, "path"]
    frame = study.trials[[c for c in dict.fromkeys(columns) if c in study.trials]]
    atomic_write_text(out / "study.csv", frame.to_csv(index=False))
    written = [out / "study.md", out / "study.csv"]
    if plots:
        written += save_study_plots(study, metrics, out / "plots", found)
    done = int(study.trials["_value"].notna().sum())
    line = f"study {study.name}: {len(study.trials)} trials, {done} completed; ranked by {study.objective}"
    return {"texts": {"study.md": text}, "line": line, "written": written, "out": out, "study": study}
