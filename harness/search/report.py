"""What a study leaves beside its storage: the best trial, every trial as a table, and plots.

    <study_dir>/best.yaml        the best trial: number, objective, parameters, test metrics, run directory
    <study_dir>/trials.csv       one row per trial (pandas): state, value, params_*, user attributes, whether
                                 it counts toward the total, the reason of a FAIL, the trial a retry carries on
    <study_dir>/history.png      the objective per trial and the best so far
    <study_dir>/importance.png   parameter importances (Optuna's fANOVA, seeded), from 20 completed trials up
                                 (MIN_TRIALS_FOR_IMPORTANCE: on fewer it ranks noise)
    <study_dir>/<param>.png      per numeric parameter: the objective and the test metrics against it (a scatter
                                 of the completed trials: they are no curve)

Written at the end of every search command and on demand: ``python -m harness.search <study_dir>``.
"""

from __future__ import annotations

import logging
import math
import re
from pathlib import Path

import optuna
import pandas as pd
import yaml
from matplotlib.figure import Figure
from optuna.distributions import CategoricalDistribution
from optuna.trial import TrialState

from harness.io import atomic_write_text
from harness.redact import redact
from harness.search.space import param_name
from harness.search.study import Search, counted, fail_reason, retry_root, storage_label, tally

log = logging.getLogger(__name__)

MIN_TRIALS_FOR_IMPORTANCE = 20  # fANOVA on fewer completed trials ranks noise (the tables' study view too)


def write_reports(study: optuna.Study, search: Search) -> dict:
    """Write best.yaml, trials.csv and the plots into the study directory; return the best trial's summary."""
    out = Path(search.study_dir)
    out.mkdir(parents=True, exist_ok=True)
    trials = study.get_trials(deepcopy=False)
    frame = trials_frame(trials)
    atomic_write_text(out / "trials.csv", frame.to_csv(index=False))
    best = best_summary(study, search)
    atomic_write_text(out / "best.yaml", yaml.safe_dump(redact(best), sort_keys=False))
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    plot_history(complete, search, out / "history.png")
    plot_importance(study, search, out / "importance.png")
    for key, dist in search.space.items():
        if not isinstance(dist, CategoricalDistribution):
            plot_against(complete, search, param_name(key), dist.log, out / f"{slug(param_name(key))}.png")
    log.info("%s", format_status(study, search, best))
    return best


def trials_frame(trials) -> pd.DataFrame:
    live = {t.number for t in counted(trials)}
    rows = []
    for t in trials:
        row = {
            "number": t.number,
            "state": t.state.name,
            "value": t.value,
            "counted": t.number in live,
            "retry_of": retry_root(t) if t.system_attrs.get("retry_history") else None,
            "last_step": t.last_step,
            "fail_reason": fail_reason(t),
            "datetime_start": t.datetime_start,
            "datetime_complete": t.datetime_complete,
            "duration_s": t.duration.total_seconds() if t.duration else None,
        }
        row.update({f"params_{k}": v for k, v in t.params.items()})
        row.update({f"user_attrs_{k}": v for k, v in t.user_attrs.items() if k != "fail_reason"})
        rows.append(redact(row))
    return pd.DataFrame(rows)


def best_summary(study: optuna.Study, search: Search) -> dict:
    counts = tally(study.get_trials(deepcopy=False))
    summary = {
        "study": search.study_name,
        "storage": storage_label(search),
        "objective": search.objective,
        "direction": search.direction,
        "n_trials": search.n_trials,
        "finished": {
            s.name: sum(t.state == s for t in counts.done)
            for s in (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)
        },
    }
    try:
        best = study.best_trial
    except ValueError:  # no COMPLETE trial yet
        summary["best"] = None
        return summary
    summary["best"] = {
        "number": best.number,
        "value": float(best.value),
        "params": dict(best.params),
        **{k: v for k, v in best.user_attrs.items() if k not in ("worker",)},
    }
    return summary


def format_status(study: optuna.Study, search: Search, best: dict) -> str:
    counts = tally(study.get_trials(deepcopy=False))
    lines = [
        f"study {search.study_name} ({storage_label(search)}): {len(counts.done)}/{search.n_trials} finished "
        f"({', '.join(f'{k.lower()} {v}' for k, v in best['finished'].items())}), {len(counts.running)} running"
    ]
    if best.get("best"):
        b = best["best"]
        params = ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in b["params"].items())
        tests = ", ".join(f"{k}={b[k]:.4f}" for k in search.record_keys if isinstance(b.get(k), (int, float)))
        lines.append(f"best: trial {b['number']}  {search.objective}={b['value']:.4f}  {params}  {tests}")
    lines.append(f"reports: {search.study_dir}/best.yaml, trials.csv, *.png")
    return "\n".join(lines)


# ----------------------------------------------------------------------------------------------- plots
def plot_history(complete, search: Search, path: Path) -> None:
    if not complete:
        return
    complete = sorted(complete, key=lambda t: t.number)
    values = [t.value for t in complete]
    pick = max if search.direction == "maximize" else min
    best = [pick(values[: i + 1]) for i in range(len(values))]
    fig = Figure(figsize=(5.5, 3.4), layout="constrained")
    ax = fig.subplots()
    ax.plot([t.number for t in complete], values, "o", alpha=0.7, label="trial")
    ax.step([t.number for t in complete], best, where="post", color="C3", label="best so far")
    ax.set(xlabel="trial", ylabel=search.objective, title=f"{search.study_name}: optimisation history")
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small")
    fig.savefig(path, dpi=110)


def plot_importance(study: optuna.Study, search: Search, path: Path) -> None:
    complete = sum(t.state == TrialState.COMPLETE for t in study.get_trials(deepcopy=False))
    if len(search.space) < 2 or complete < MIN_TRIALS_FOR_IMPORTANCE:
        path.unlink(missing_ok=True)  # an earlier, smaller study's plot must not stand for this one
        if len(search.space) >= 2:
            log.info("no parameter importance: %d completed trials, fewer than %d", complete, MIN_TRIALS_FOR_IMPORTANCE)
        return
    try:
        importances = optuna.importance.get_param_importances(
            study, evaluator=optuna.importance.FanovaImportanceEvaluator(seed=0)
        )
    except (ValueError, RuntimeError) as err:  # e.g. every completed trial has the same value
        log.info("no parameter importance plot: %s", err)
        return
    names = list(importances)[::-1]
    fig = Figure(figsize=(5.5, 0.5 + 0.45 * len(names)), layout="constrained")
    ax = fig.subplots()
    ax.barh(names, [importances[n] for n in names], color="C0")
    ax.set(xlabel="importance (fANOVA, seed 0)", title=f"{search.study_name}: {complete} completed trials")
    fig.savefig(path, dpi=110)


def plot_against(complete, search: Search, name: str, log_scale: bool, path: Path) -> None:
    """The objective and the test metrics of every completed trial against one parameter."""
    points = sorted((t for t in complete if name in t.params), key=lambda t: t.params[name])
    if not points:
        return
    keys = [search.objective] + [k for k in search.record_keys if any(_number(t.user_attrs.get(k)) for t in points)]
    fig = Figure(figsize=(4.2 * len(keys), 3.4), layout="constrained")
    axes = fig.subplots(1, len(keys), squeeze=False)[0]
    best = max(points, key=lambda t: t.value) if search.direction == "maximize" else min(points, key=lambda t: t.value)
    for ax, key in zip(axes, keys):
        ys = [t.value if key == search.objective else t.user_attrs.get(key) for t in points]
        xs = [t.params[name] for t, y in zip(points, ys) if _number(y)]
        ys = [y for y in ys if _number(y)]
        ax.scatter(xs, ys, s=18, alpha=0.8)
        y_best = best.value if key == search.objective else best.user_attrs.get(key)
        if _number(y_best):
            ax.plot([best.params[name]], [y_best], "*", color="C3", markersize=14, label=f"best trial {best.number}")
            ax.legend(fontsize="small")
        if log_scale:
            ax.set_xscale("log")
        ax.set(xlabel=name, ylabel=key)
        ax.grid(alpha=0.3)
    fig.suptitle(f"{search.study_name}: completed trials against {name}")
    fig.savefig(path, dpi=110)


def _number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def slug(text: str) -> str:
    return re.sub(r"[^\w.@=+-]+", "_", text).strip("_")[:120]
