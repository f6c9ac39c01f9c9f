"""The comparisons (harness.tables.compare) as views: the paired Δ table, the family's tests, and their CSV.

delta      each arm's mean paired difference to its baseline ± the half-width of its 95% t interval, per
           metric; bold: the family metric's Holm-corrected p < α; † fewer paired seeds than expected;
           ≠ the arms differ in a knob besides the regularizer (named under the table)
tests      the family metric: n paired, Δ, its 95% CI over seeds, p (paired t), p (sign-flip, exact),
           p (Holm), the minimum detectable effect, the seeds a claim of the observed size needs, and the
           test-set interval (class bootstrap; shown, never a mark); unpaired seeds named
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from harness.tables.build import is_percent, label, sort_key
from harness.tables.render import MISSING, Grid, Table, display_name
from harness.tables.stats import min_detectable

MUSGRAVE = "Musgrave et al. (ECCV 2020) used 10 runs"
STAT_COLUMNS = [  # after the row keys: the tests' columns (right-aligned)
    "n",
    "Δ",
    "95% CI (seeds)",
    "p (t)",
    "p (sign-flip)",
    "p (Holm)",
    "MDE",
    "seeds needed",
    "95% CI (test classes)",
    "unpaired seeds",
]


def scale(metric: str) -> float:
    return 100.0 if is_percent(metric) else 1.0


def build_paired_delta(
    comparisons: list, rows: list, cols: list, family: str, alpha: float, expected: int, digits, scope
):
    """The Δ view (a :class:`Table`), or None without comparisons."""
    if not comparisons:
        return None
    index = sorted(dict.fromkeys(c.arm for c in comparisons), key=lambda t: [sort_key(v) for v in t])
    metrics = list(dict.fromkeys(c.metric for c in comparisons))
    columns = sorted(dict.fromkeys(c.column for c in comparisons), key=lambda t: [sort_key(v) for v in t])
    columns = pd.MultiIndex.from_tuples([(*col, label(m)) for col in columns for m in metrics])
    frame = pd.DataFrame(np.nan, index=pd.MultiIndex.from_tuples(index, names=rows), columns=columns)
    mean, half = frame.copy(), frame.copy()
    bold = pd.DataFrame(False, index=frame.index, columns=columns)
    flagged, marks = bold.copy(), pd.DataFrame("", index=frame.index, columns=columns, dtype=object)
    for c in comparisons:
        at = (c.arm, (*c.column, label(c.metric)))
        mean.loc[at] = c.paired.mean * scale(c.metric)
        half.loc[at] = (c.paired.high - c.paired.mean) * scale(c.metric)
        bold.loc[at] = c.p_holm < alpha
        flagged.loc[at] = c.paired.n < expected
        marks.loc[at] = "≠" if c.differs else ""
    keep = [col for col in columns if mean[col].notna().any()]
    col_digits = {col: digits if is_percent_label(col[-1], comparisons) else 3 for col in keep}
    notes = delta_notes(comparisons, family, alpha, expected)
    caption = (
        f"Δ vs. no regularizer, paired over the seeds both finished: mean paired difference ± 95% CI "
        f"(Student t), {scope}"
    )
    table = Table(mean[keep], half[keep], bold[keep], flagged[keep], col_digits, None, caption, notes, signed=True)
    table.marks = marks[keep]
    return table


def is_percent_label(name: str, comparisons: list) -> bool:
    return any(is_percent(c.metric) for c in comparisons if label(c.metric) == name)


def delta_notes(comparisons: list, family: str, alpha: float, expected: int) -> list:
    tested = [c for c in comparisons if c.metric == family]
    notes = [
        f"bold: {label(family)}'s paired t-test p, Holm-corrected over the {len(tested)} comparison"
        f"{'s' * (len(tested) != 1)} on {label(family)} (the pre-declared family), is below α = {alpha:g}; "
        f"the other metrics' Δ are shown, not tested"
    ]
    if any(c.paired.n < expected for c in comparisons):
        notes.append(f"† fewer than {expected} paired seeds")
    for c in tested:
        if c.differs:
            notes.append(f"≠ {describe(c.arm)} vs. {describe(c.base)}: the arms differ in {'; '.join(c.differs)}")
    return notes


def describe(key: tuple) -> str:
    return "/".join(str(v) for v in key)


def p_text(p: float) -> str:
    if p is None or not p == p:
        return MISSING
    return "<0.001" if p < 0.001 else f"{p:.3f}"


def signed(value: float, digits: int) -> str:
    if value is None or not value == value:
        return MISSING
    return f"{round(value, digits) + 0.0:+.{digits}f}"


def interval(low: float, high: float, digits: int) -> str:
    if not (low == low and high == high):
        return MISSING
    return f"[{signed(low, digits)}, {signed(high, digits)}]"


def build_tests(comparisons: list, rows: list, cols: list, family: str, alpha: float, digits: int):
    """The family's tests, one row per comparison (a :class:`Grid`), and the column values every test shares (for
    the caption, as the main table puts them); (None, "") without tests."""
    tested = sorted(
        (c for c in comparisons if c.metric == family),
        key=lambda c: [sort_key(v) for v in (*c.column, *c.arm)],
    )
    if not tested:
        return None, ""
    shown = [i for i in range(len(cols)) if len({c.column[i] for c in tested}) > 1]
    title = ", ".join(str(tested[0].column[i]) for i in range(len(cols)) if i not in shown)
    k = scale(family)
    d = digits if is_percent(family) else 3
    body = []
    for c in tested:
        p = c.paired
        boot = c.bootstrap
        delta = signed(p.mean * k, d) + (" ≠" if c.differs else "")
        body.append(
            [
                *map(str, c.arm),
                *(str(c.column[i]) for i in shown),
                str(p.n),
                f"**{delta}**" if c.p_holm < alpha else delta,
                interval(p.low * k, p.high * k, d),
                p_text(p.p),
                p_text(p.p_sign),
                p_text(c.p_holm),
                f"{c.mde * k:.{d}f}" if c.mde == c.mde else MISSING,
                needed_text(c.needed),
                interval(boot.low * k, boot.high * k, d) if boot else MISSING,
                c.unpaired or MISSING,
            ]
        )
    header = [display_name(r) for r in rows] + [display_name(cols[i]) for i in shown] + STAT_COLUMNS
    return Grid(header, body, tests_notes(tested, family, alpha, digits)), title


def needed_text(n) -> str:
    if n is None:
        return MISSING
    return f">{n - 1}" if n > 10_000 else str(n)


def tests_notes(tested: list, family: str, alpha: float, digits: int) -> list:
    name = label(family)
    ns = sorted({c.paired.n for c in tested if c.paired.n > 0})
    floors = ", ".join(f"{2 / 2**n:.3g} at {n} seeds" for n in ns)
    short = [n for n in ns if 2 / 2**n >= alpha]
    never = f", so at {' or '.join(map(str, short))} seeds it can never reach α = {alpha:g}" if short else ""
    notes = [
        f"Family: {name} across the table's {len(tested)} comparison{'s' * (len(tested) != 1)}; "
        f"bold Δ: Holm-corrected paired t-test p < α = {alpha:g}. n: the seeds both arms finished (the same seed "
        f"gives both the same initialisation and batch order); Δ: their mean paired difference.",
        "95% CI (seeds): Student t over the paired differences (n - 1 degrees of freedom): how far Δ could move "
        "with other trainings; the marks come from this test alone. p (t): the paired t-test, two-sided. "
        f"p (sign-flip): the exact permutation test over the 2^n sign patterns, beside it; it cannot go below "
        f"2/2^n ({floors}){never}.",
        "MDE: the smallest true Δ the paired t-test detects at this n with 80% power at α (from the pair's own "
        f"spread); seeds needed: the seeds a claim of the observed size needs at 80% power ({MUSGRAVE}).",
    ]
    boot = [c for c in tested if c.bootstrap is not None]
    if boot:
        b = boot[0].bootstrap
        notes.append(
            f"95% CI (test classes): the same paired runs' per-query values, {b.resamples} bootstrap resamples of "
            f"whole test classes ({b.classes} classes, seeded): how far Δ could move on another draw of test "
            f"classes with these trained models. Shown, never used for a mark."
        )
    why = sorted({c.bootstrap_note for c in tested if c.bootstrap is None and c.bootstrap_note})
    if why:
        notes.append(f"No test-class interval where: {'; '.join(why)}.")
    sds = [c.paired.sd for c in tested if c.paired.n >= 2 and c.paired.sd == c.paired.sd]
    if sds and ns:
        pooled = math.sqrt(float(np.mean(np.square(sds))))
        n = max(ns)
        k = scale(family)
        d = digits if is_percent(family) else 3
        notes.append(
            f"At {n} seeds the paired test detects (80% power, α = {alpha:g}) a {name} difference of "
            f"{min_detectable(pooled, n, alpha) * k:.{d}f} (pooled sd of the paired differences "
            f"{pooled * k:.{d}f}); at 10 seeds, {min_detectable(pooled, 10, alpha) * k:.{d}f}."
        )
    unpaired = [c for c in tested if c.unpaired]
    if unpaired:
        notes.append("Unpaired seeds (finished by one arm only) are left out of every test.")
    return notes


def tests_frame(comparisons: list) -> pd.DataFrame:
    """Every comparison as numbers (significance.csv): the metric in its own unit (fractions, not percent)."""
    rows = []
    for c in comparisons:
        p, b = c.paired, c.bootstrap
        rows.append(
            {
                "arm": describe(c.arm),
                "baseline": describe(c.base),
                "column": describe(c.column),
                "metric": c.metric,
                "n": p.n,
                "seeds": ",".join(map(str, c.seeds)),
                "delta": p.mean,
                "ci_low": p.low,
                "ci_high": p.high,
                "sd": p.sd,
                "p_t": p.p,
                "p_sign_flip": p.p_sign,
                "p_sign_flip_floor": p.p_floor,
                "p_holm": c.p_holm,
                "mde": c.mde,
                "seeds_needed": c.needed,
                "test_ci_low": b.low if b else math.nan,
                "test_ci_high": b.high if b else math.nan,
                "unpaired": c.unpaired,
                "differs": "; ".join(c.differs),
            }
        )
    return pd.DataFrame(rows)
