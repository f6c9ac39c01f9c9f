"""The statistics of the tables: what a difference between two arms of an ablation is worth.

Seeds are the unit of replication: the same seed gives both arms the same initialisation and batch order (the
split is fixed by ``dataset.seed``), so an arm is compared with its baseline **paired** over the seeds both
have:

* :func:`t_interval`       mean and the half-width of its 95% Student-t interval over seeds (n - 1 degrees of
                           freedom).
* :func:`paired_test`      the mean paired difference, its 95% t interval, the paired t-test's p-value (equal to
                           ``scipy.stats.ttest_rel``) and the exact sign-flip (permutation) p-value beside it,
                           which cannot go below 2 / 2^n (0.25 at 3 seeds); only the t-test's p drives a mark.
* :func:`holm`             Holm's step-down correction over one pre-declared family of p-values.
* :func:`min_detectable`   the smallest true paired difference a two-sided paired t-test at ``n`` seeds detects
                           with 80% power, and :func:`seeds_needed` the seeds a difference of a given size needs
                           (both from the noncentral t distribution).
* :func:`class_bootstrap`  the test-set interval of the mean paired difference of runs scored on the same test
                           set: whole test classes are resampled (queries of one class are correlated, so
                           resampling queries would understate the variance). It says how much the difference
                           could move on another draw of classes, not across trainings: shown, never a mark.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import optimize
from scipy import stats as st

CONFIDENCE = 0.95
POWER = 0.8
EXACT_SIGN_FLIP = 20  # up to this many pairs the sign-flip p enumerates all 2^n signs; beyond, 100,000 draws


def t_interval(values, confidence: float = CONFIDENCE) -> tuple[float, float, int]:
    """(mean, half-width of the two-sided Student-t interval, n) of the finite values; NaN half-width when n < 2."""
    x = np.asarray(values, dtype=float)
    x = x[np.isfinite(x)]
    n = len(x)
    if n == 0:
        return math.nan, math.nan, 0
    if n < 2:
        return float(x.mean()), math.nan, 1
    half = st.t.ppf(0.5 + confidence / 2, n - 1) * x.std(ddof=1) / math.sqrt(n)
    return float(x.mean()), float(half), n


@dataclass(frozen=True)
class Paired:
    """A paired comparison over ``n`` seeds (differences arm - baseline)."""

    n: int
    mean: float  # mean paired difference
    low: float  # its 95% t interval
    high: float
    sd: float  # standard deviation of the differences (ddof=1)
    p: float  # paired t-test, two-sided (NaN when n < 2 or every difference is the same)
    p_sign: float  # exact sign-flip p, two-sided
    p_floor: float  # the smallest p the sign-flip test can give at this n: 2 / 2^n


def paired_test(arm, baseline, confidence: float = CONFIDENCE) -> Paired:
    """The paired comparison of two arrays aligned by seed (NaN pairs are left out)."""
    a, b = np.asarray(arm, dtype=float), np.asarray(baseline, dtype=float)
    keep = np.isfinite(a) & np.isfinite(b)
    d = a[keep] - b[keep]
    n = len(d)
    if n == 0:
        return Paired(0, math.nan, math.nan, math.nan, math.nan, math.nan, math.nan, math.nan)
    mean = float(d.mean())
    floor = min(1.0, 2.0 / 2**n)
    if n < 2:
        return Paired(1, mean, math.nan, math.nan, math.nan, math.nan, 1.0, floor)
    sd = float(d.std(ddof=1))
    half = st.t.ppf(0.5 + confidence / 2, n - 1) * sd / math.sqrt(n)
    p = float(2 * st.t.sf(abs(mean) / (sd / math.sqrt(n)), n - 1)) if sd > 0 else math.nan
    return Paired(n, mean, mean - half, mean + half, sd, p, sign_flip_p(d), floor)


def sign_flip_p(diffs, draws: int = 100_000, seed: int = 0) -> float:
    """Two-sided exact permutation p of the mean difference under sign symmetry: the fraction of the 2^n sign
    patterns whose |mean| is at least the observed one (a seeded Monte Carlo estimate beyond 20 pairs)."""
    d = np.asarray(diffs, dtype=float)
    n = len(d)
    if n == 0:
        return math.nan
    observed = abs(d.sum())
    tolerance = 1e-12 * max(1.0, float(np.abs(d).sum()))
    if n <= EXACT_SIGN_FLIP:
        count = 0
        bits = np.arange(n)
        for start in range(0, 2**n, 1 << 16):  # chunks of 65,536 patterns keep memory small at n = 20
            codes = np.arange(start, min(2**n, start + (1 << 16)))[:, None]
            signs = 1 - 2 * ((codes >> bits) & 1)
            count += int((np.abs(signs @ d) >= observed - tolerance).sum())
        return count / 2**n
    rng = np.random.default_rng(seed)
    signs = rng.choice([-1.0, 1.0], size=(draws, n))
    return float((1 + (np.abs(signs @ d) >= observed - tolerance).sum()) / (draws + 1))


def holm(pvalues) -> np.ndarray:
    """Holm's step-down adjusted p-values over the family (NaN entries are no member and stay NaN)."""
    p = np.asarray(pvalues, dtype=float)
    out = np.full(p.shape, math.nan)
    members = np.flatnonzero(np.isfinite(p))
    m = len(members)
    if m == 0:
        return out
    order = members[np.argsort(p[members], kind="stable")]
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p[i]))
        out[i] = running
    return out


def power(effect: float, sd: float, n: int, alpha: float = 0.05) -> float:
    """The power of a two-sided paired t-test at n pairs against a true mean difference ``effect``."""
    if n < 2 or not sd > 0:
        return math.nan
    df = n - 1
    crit = st.t.ppf(1 - alpha / 2, df)
    nc = abs(effect) / sd * math.sqrt(n)
    lower = st.nct.cdf(-crit, df, nc)  # the wrong-sign tail: ~0, and NaN in scipy far out
    return float(min(1.0, st.nct.sf(crit, df, nc) + (lower if np.isfinite(lower) else 0.0)))


def min_detectable(sd: float, n: int, alpha: float = 0.05, target: float = POWER) -> float:
    """The smallest true paired difference detected with ``target`` power at n pairs (NaN when n < 2)."""
    if n < 2 or not sd > 0:
        return math.nan
    high = sd
    while power(high, sd, n, alpha) < target:
        high *= 2
    return float(optimize.brentq(lambda e: power(e, sd, n, alpha) - target, 0.0, high, xtol=1e-9 * sd))


def seeds_needed(effect: float, sd: float, alpha: float = 0.05, target: float = POWER, most: int = 10_000) -> int:
    """The fewest seeds for which a paired t-test detects ``effect`` with ``target`` power (``most`` + 1: more)."""
    if not sd > 0 or not abs(effect) > 0:
        return most + 1
    enough = lambda n: power(effect, sd, n, alpha) >= target  # noqa: E731 (power grows with n)
    if enough(2):
        return 2
    low, high = 2, 4
    while not enough(high):
        if high >= most:
            return most + 1
        low, high = high, min(2 * high, most)
    while high - low > 1:
        mid = (low + high) // 2
        low, high = (low, mid) if enough(mid) else (mid, high)
    return high


@dataclass(frozen=True)
class Bootstrap:
    """The class-resampling interval of the mean paired difference over runs on one test set."""

    mean: float  # the observed mean (over pairs) of the per-run mean differences
    low: float
    high: float
    resamples: int
    classes: int


def class_bootstrap(labels, diffs, resamples: int = 1000, confidence: float = CONFIDENCE, seed: int = 0) -> Bootstrap:
    """Resample whole test classes with replacement (``resamples`` times, seeded) and take the percentile interval
    of the mean paired difference.

    ``labels``: the class of each query (one test set); ``diffs``: per-query differences arm - baseline, one row
    per seed pair (shape pairs x queries, the queries in ``labels``' order). Each resample draws as many classes as
    the test set has; the statistic is the mean over pairs of each pair's mean over the drawn classes' queries."""
    labels = np.asarray(labels)
    d = np.atleast_2d(np.asarray(diffs, dtype=float))
    classes, index = np.unique(labels, return_inverse=True)
    c = len(classes)
    sums = np.zeros((len(d), c))  # per pair and class: the sum of its queries' differences
    for row in range(len(d)):
        sums[row] = np.bincount(index, weights=d[row], minlength=c)
    counts = np.bincount(index, minlength=c).astype(float)
    rng = np.random.default_rng(seed)
    draws = rng.integers(0, c, size=(resamples, c)) + c * np.arange(resamples)[:, None]
    weights = np.bincount(draws.ravel(), minlength=resamples * c).reshape(resamples, c).astype(float)
    stat = ((weights @ sums.T) / (weights @ counts)[:, None]).mean(axis=1)
    tail = (1 - confidence) / 2
    low, high = np.quantile(stat, [tail, 1 - tail])
    observed = float((sums.sum(axis=1) / counts.sum()).mean())
    return Bootstrap(observed, float(low), float(high), resamples, c)
