"""The tables' statistics (harness/tables/stats.py) against known answers and scipy, and the record's numerical
provenance (harness/provenance/numerics.py): the code hash sees expressions, not docstrings, comments or layout."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats as st

from harness.provenance.numerics import code_hash, effective_precision, normalised_source
from harness.tables.stats import (
    class_bootstrap,
    holm,
    min_detectable,
    paired_test,
    power,
    seeds_needed,
    sign_flip_p,
    t_interval,
)


def test_the_paired_interval_and_p_equal_scipys_paired_t_test():
    rng = np.random.default_rng(3)
    base = rng.normal(0.5, 0.05, size=6)
    arm = base + rng.normal(0.01, 0.02, size=6)
    ours = paired_test(arm, base)
    theirs = st.ttest_rel(arm, base)
    ci = theirs.confidence_interval(0.95)
    assert ours.n == 6 and ours.mean == pytest.approx(np.mean(arm - base), rel=1e-12)
    assert (ours.low, ours.high) == (pytest.approx(ci.low, rel=1e-12), pytest.approx(ci.high, rel=1e-12))
    assert ours.p == pytest.approx(theirs.pvalue, rel=1e-10)
    mean, half, n = t_interval(arm)
    low, high = st.t.interval(0.95, n - 1, loc=arm.mean(), scale=st.sem(arm))
    assert (mean - half, mean + half) == (pytest.approx(low, rel=1e-12), pytest.approx(high, rel=1e-12))


def test_pairs_with_a_missing_value_are_left_out():
    paired = paired_test([0.6, 0.7, np.nan, 0.9], [0.5, 0.65, 0.7, np.nan])
    assert paired.n == 2 and paired.mean == pytest.approx(0.075)


def test_the_sign_flip_p_is_exact_and_cannot_go_below_two_over_two_to_the_n():
    assert sign_flip_p([1.0, 2.0, 3.0]) == 0.25  # all same sign: 2 of the 8 patterns reach |sum| 6
    assert sign_flip_p([1.0, -2.0, 3.0]) == 0.75  # |sum| 2: reached by 6 of 8 patterns
    assert paired_test([3.0, 4.0, 5.0], [0.0, 0.0, 0.0]).p_floor == 0.25
    rng = np.random.default_rng(0)
    d = rng.normal(0.3, 1.0, size=9)
    scipy_exact = st.permutation_test(
        (d,), lambda x: np.mean(x), permutation_type="samples", n_resamples=np.inf, alternative="two-sided"
    )
    assert sign_flip_p(d) == pytest.approx(scipy_exact.pvalue, abs=1e-12)


def test_holm_adjusts_step_down_and_leaves_non_members_out():
    adjusted = holm([0.01, 0.04, 0.03, 0.005, np.nan])
    # sorted 0.005 x4 = 0.02, 0.01 x3 = 0.03, 0.03 x2 = 0.06, 0.04 x1 = 0.04 -> monotone 0.06
    assert adjusted[:4] == pytest.approx([0.03, 0.06, 0.06, 0.02]) and math.isnan(adjusted[4])
    assert holm([0.9, 0.8])[0] == 1.0  # capped at 1


def test_power_mde_and_seeds_needed_agree_with_each_other_and_with_gpower():
    assert power(1.0, 1.0, 10) == pytest.approx(0.8031, abs=1e-3)  # G*Power: paired t, dz = 1, n = 10
    mde = min_detectable(1.0, 10)
    assert power(mde, 1.0, 10) == pytest.approx(0.8, abs=1e-6)
    n = seeds_needed(0.5, 1.0)
    assert power(0.5, 1.0, n) >= 0.8 > power(0.5, 1.0, n - 1)
    assert min_detectable(1.0, 3) > min_detectable(1.0, 10) and seeds_needed(0.0, 1.0) > 10_000


def test_the_class_bootstrap_is_seeded_and_covers_the_true_difference():
    """Classes drawn from a population whose per-class differences average 0.01: the class bootstrap's 95%
    interval covers 0.01 in about 95% of test sets; resampling queries (ignoring the classes) covers it far
    less often, the understatement the class bootstrap exists to avoid."""
    rng = np.random.default_rng(7)
    classes, per_class, sims, truth = 40, 15, 400, 0.01
    labels = np.repeat(np.arange(classes), per_class)
    covered, naive = 0, 0
    for sim in range(sims):
        class_effect = rng.normal(truth, 0.05, size=classes)
        diffs = class_effect[labels] + rng.normal(0, 0.05, size=(2, len(labels)))  # two seed pairs
        boot = class_bootstrap(labels, diffs, resamples=300, seed=1)
        covered += boot.low <= truth <= boot.high
        if sim < 100:  # every query its own "class": the interval that ignores the clustering
            queries = class_bootstrap(np.arange(len(labels)), diffs, resamples=300, seed=1)
            naive += queries.low <= truth <= queries.high
    assert 0.9 <= covered / sims <= 0.98  # 0.93 here: the percentile interval at 40 classes
    assert naive / 100 < 0.7  # 0.4 here
    again = class_bootstrap(labels, diffs, resamples=300, seed=1)
    other = class_bootstrap(labels, diffs, resamples=300, seed=2)
    assert (again.low, again.high) == (boot.low, boot.high) and (other.low, other.high) != (boot.low, boot.high)
    assert boot.mean == pytest.approx(diffs.mean())


def test_the_code_hash_ignores_docstrings_comments_and_layout_but_not_an_expression(tmp_path):
    module = tmp_path / "loss.py"

    def hashed(source: str) -> str:
        module.write_text(source)
        return code_hash([module], tmp_path)

    base = hashed('def f(x):\n    """Doc."""\n    return x * 2  # twice\n')
    assert hashed("def f(x):\n    return (x*2)\n") == base
    assert hashed('"""A module doc."""\n\n\ndef f(x):\n    """Other words."""\n    return x * 2\n') == base
    assert hashed("def f(x):\n    return x * 3\n") != base
    assert "Doc" not in normalised_source('def f():\n    """Doc."""\n')


def test_the_effective_precision_is_float32_off_cuda():
    assert effective_precision("cpu", "bf16") == "float32"  # autocast runs on CUDA only (harness.runtime)
    assert effective_precision("cuda", "bf16") == "bf16"
    assert effective_precision("cuda", "off") == "float32"


@pytest.mark.parametrize("gallery", [False, True])
def test_per_query_values_average_to_the_metrics_and_survive_their_file(tmp_path, gallery):
    from harness.evaluation import score_embeddings
    from harness.evaluation.per_query import load_per_query, save_per_query

    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(6), 5)
    query = rng.normal(size=(30, 8)).astype(np.float32) + labels[:, None] * 0.3
    args = (query, labels, query[::2], labels[::2]) if gallery else (query, labels)
    metrics, per_query = score_embeddings(*args, k_list=(1, 2), with_nmi=False)
    assert per_query.ap_at_r.mean() == pytest.approx(metrics["map@r"], abs=1e-15)
    assert per_query.hit_at_1.mean() == pytest.approx(metrics["recall@1"], abs=1e-15)
    assert len(per_query.label) == metrics["num_queries"]
    assert save_per_query(tmp_path, per_query) == {"per_query_file": "per_query_test.npz"}
    back = load_per_query(tmp_path / "per_query_test.npz")
    assert np.array_equal(back.ap_at_r, per_query.ap_at_r) and np.array_equal(back.label, per_query.label)
    assert not list(tmp_path.glob(".*.tmp"))  # written atomically: no temporary file left
