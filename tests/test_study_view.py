"""An Optuna study's runs read as a study (harness/tables/study.py): ranked trials, rounded knob values, the best
trial's test metrics, scatter plots, and importance only from 20 completed trials up."""

from __future__ import annotations

import re

import numpy as np
import pytest
from test_tables import write_run

from harness import tables


def study_runs(root, n_trials: int, pruned=()):
    """Trials of a study ``tune``: eps drives the objective (val MAP@R peaks at eps = 0.5), weight barely does."""
    rng = np.random.default_rng(0)
    for trial in range(n_trials):
        eps, weight = float(10 ** rng.uniform(-2, 1)), float(10 ** rng.uniform(-2, 0))
        value = 0.9 - 0.05 * np.log10(eps / 0.5) ** 2 + 0.001 * weight
        config = {"search.study": "tune", "search.trial": trial, "regularizer.antico_pair.eps": eps}
        config["regularizer.antico_pair.weight"] = weight
        status = "pruned" if trial in pruned else "finished"
        extra = {"val/map@r": value, "pruned_epoch": 2} if status == "pruned" else {"val/map@r": value}
        write_run(root, "ms", "antico_pair", 0, 0.9, status=status, config=config, extra=extra)
    return root


def test_a_study_is_ranked_with_rounded_knobs_scattered_and_without_importance_below_20_trials(tmp_path):
    root = study_runs(tmp_path / "results", 12, pruned=(3,))
    result = tables.make_tables([root], sweep="grid")
    text = result["texts"]["study.md"]
    assert "table.md" not in result["texts"] and not (result["out"] / "table.md").exists()
    study = result["study"]
    done = study.trials[study.trials["status"] == "finished"]
    assert done["val/map@r"].is_monotonic_decreasing  # ranked by the objective (maximize)
    assert study.trials.iloc[-1]["status"] == "pruned"  # no objective: last, unranked
    assert not re.search(r"\d\.\d{6,}", text)  # no 17-digit floats: 3 significant digits
    best = done.iloc[0]
    assert f"Best trial: {int(best['config/search.trial'])} (val/map@r {best['val/map@r'] * 100:.2f})" in text
    assert f"eps {best['config/regularizer.antico_pair.eps']:.3g}" in text and "R@1 90.00" in text
    assert "Parameter importance: not computed, 11 completed trials (fewer than 20)" in text
    plots = sorted(p.name for p in (result["out"] / "plots").glob("*.png"))
    assert plots == ["regularizer.antico_pair.eps.png", "regularizer.antico_pair.weight.png"]  # no search.trial
    assert "study tune: 12 trials, 11 completed" in result["line"]


def test_importance_from_20_completed_trials_ranks_the_knob_that_matters(tmp_path):
    root = study_runs(tmp_path / "results", 24)
    result = tables.make_tables([root], sweep="grid")
    line = result["texts"]["study.md"].strip().splitlines()[-1]
    found = dict(re.findall(r"(regularizer\.antico_pair\.\w+) (\d\.\d\d)", line))
    assert line.startswith("Parameter importance (fANOVA over 24 completed trials, seed 0)")
    assert float(found["regularizer.antico_pair.eps"]) > 0.8 > float(found["regularizer.antico_pair.weight"])
    assert (result["out"] / "plots" / "importance.png").exists()


def test_trials_of_two_studies_are_refused_in_one_line(tmp_path):
    root = study_runs(tmp_path / "results", 2)
    write_run(root, "ms", "none", 5, 0.9, config={"search.study": "other", "search.trial": 0})
    with pytest.raises(Exception, match="trials of 2 studies"):
        tables.make_tables([root], plots=False)
