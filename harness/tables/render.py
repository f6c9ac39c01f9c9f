"""Tables as text: Markdown (a pipe table readable as plain text), LaTeX (booktabs) and the long CSV."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import pandas as pd

MISSING = "—"


@dataclass
class Table:
    """Aligned frames (index: row keys; columns: (column-key values..., metric label)) ready to render."""

    mean: pd.DataFrame
    std: pd.DataFrame
    bold: pd.DataFrame
    flagged: pd.DataFrame
    digits: dict  # column -> decimals
    seeds: pd.Series | None = None  # per row: "3", or "2/3" when short
    caption: str = ""
    notes: list = field(default_factory=list)
    signed: bool = False  # deltas: +1.2 / -0.4
    marks: pd.DataFrame | None = None  # text after a cell's value (e.g. ≠: the arms differ in a knob)


@dataclass
class Grid:
    """A table already in texts: the header, the body rows, the footnotes."""

    header: list
    body: list
    notes: list = field(default_factory=list)


def format_value(mean, std, digits: int, signed: bool = False) -> str:
    if mean is None or (isinstance(mean, float) and math.isnan(mean)):
        return MISSING
    mean = round(float(mean), digits) + 0.0  # never print -0.0
    text = f"{mean:+.{digits}f}" if signed else f"{mean:.{digits}f}"
    if std == std and std is not None:  # not NaN: at least two seeds
        text += f" ± {std:.{digits}f}"
    return text


def display_name(key: str) -> str:
    return str(key).removeprefix("config/").removeprefix("mixed/").removeprefix("regularizer.")


def to_csv(summary: pd.DataFrame, keys: list) -> str:
    """The long, numeric table: a row per group; mean, std and seed counts per metric."""
    return summary.rename(columns={k: display_name(k) for k in keys}).to_csv(index=False)


def constant_levels(table: Table) -> tuple:
    """Column levels (e.g. the dataset) that have one value across the table go into the caption."""
    levels = table.mean.columns.nlevels
    constant = [i for i in range(levels - 1) if table.mean.columns.get_level_values(i).nunique() == 1]
    shown = [i for i in range(levels) if i not in constant]
    title = ", ".join(str(table.mean.columns[0][i]) for i in constant)
    return shown, title


def cells(table: Table, bold, dagger: str, escape=str) -> list:
    """The body's cell texts: value (± its interval), the short-seeds mark, other marks, bold where marked."""
    mean, std = table.mean.to_numpy(dtype=float), table.std.to_numpy(dtype=float)
    flagged, best = table.flagged.to_numpy(dtype=bool), table.bold.to_numpy(dtype=bool)
    marks = table.marks.to_numpy(dtype=object) if table.marks is not None else None
    digits = [table.digits[col] for col in table.mean.columns]
    out = []
    for r in range(len(mean)):
        line = []
        for c, d in enumerate(digits):
            text = escape(format_value(mean[r, c], std[r, c], d, table.signed)) + (dagger if flagged[r, c] else "")
            if marks is not None and marks[r, c]:
                text += escape(f" {marks[r, c]}")
            line.append(bold(text) if best[r, c] else text)
        out.append(line)
    return out


def to_markdown(table: Table) -> str:
    shown, title = constant_levels(table)
    names = [display_name(n) for n in table.mean.index.names]
    header = (
        names
        + (["seeds"] if table.seeds is not None else [])
        + [" ".join(str(col[i]) for i in shown) for col in table.mean.columns]
    )
    body = [
        [str(v) for v in key] + ([table.seeds.iloc[r]] if table.seeds is not None else []) + line
        for r, (key, line) in enumerate(zip(table.mean.index, cells(table, lambda t: f"**{t}**", " †")))
    ]
    caption = f"{title}: {table.caption}" if title else table.caption
    grid = markdown_grid(header, body, left=len(names))
    return "\n".join([f"*{caption}*", "", grid, *(f"\n{n}" for n in table.notes)]) + "\n"


def markdown_grid(header: list, body: list, left: int = 1) -> str:
    """A pipe table padded to be readable as plain text too; the first ``left`` columns left-aligned."""
    widths = [max(len(str(x)) for x in column) for column in zip(header, *body)]
    line = lambda cells: "| " + " | ".join(str(c).ljust(w) for c, w in zip(cells, widths)) + " |"  # noqa: E731
    rule = "|" + "|".join("-" * (w + 2) if i < left else "-" * (w + 1) + ":" for i, w in enumerate(widths)) + "|"
    return "\n".join([line(header), rule, *map(line, body)])


LATEX_SPECIAL = {
    "\\": r"\textbackslash{}",
    "&": r"\&",
    "%": r"\%",
    "$": r"\$",
    "#": r"\#",
    "_": r"\_",
    "{": r"\{",
    "}": r"\}",
    "~": r"\textasciitilde{}",
    "^": r"\textasciicircum{}",
    "±": r"$\pm$",
    "†": r"$^\dagger$",
    "‡": r"$^\ddagger$",
    "Δ": r"$\Delta$",
    "≠": r"$\neq$",
    "≥": r"$\geq$",
    "α": r"$\alpha$",
    "—": "--",
    "<": r"$<$",
    ">": r"$>$",
}


def escape_latex(text) -> str:
    return "".join(LATEX_SPECIAL.get(ch, ch) for ch in str(text))


def to_latex(table: Table, label_name: str = "tab:ablation") -> str:
    """A booktabs table (needs ``\\usepackage{booktabs}``): grouped column headers with \\cmidrule, the
    first row key printed once per block, \\midrule between blocks."""
    shown, title = constant_levels(table)
    names = [escape_latex(display_name(n)) for n in table.mean.index.names]
    lead = len(names)
    columns = [tuple(col[i] for i in shown) for col in table.mean.columns]
    lines = [
        r"\begin{table}[t]",
        r"\centering",
        f"\\caption{{{escape_latex((title + ': ' if title else '') + table.caption)}}}",
        f"\\label{{{label_name}}}",
        f"\\begin{{tabular}}{{{'l' * lead}{'c' * len(columns)}}}",
        r"\toprule",
    ]
    for level in range(len(shown) - 1):  # grouped headers: \multicolumn over each run of equal values
        spans, rules, start = [], [], 0
        values = [c[level] for c in columns]
        while start < len(values):
            end = start
            while end + 1 < len(values) and columns[end + 1][: level + 1] == columns[start][: level + 1]:
                end += 1
            spans.append(f"\\multicolumn{{{end - start + 1}}}{{c}}{{{escape_latex(values[start])}}}")
            rules.append(f"\\cmidrule(lr){{{lead + start + 1}-{lead + end + 1}}}")
            start = end + 1
        lines += [" & ".join([""] * lead + spans) + r" \\", " ".join(rules)]
    lines += [" & ".join(names + [escape_latex(c[-1]) for c in columns]) + r" \\", r"\midrule"]
    body = cells(table, lambda t: f"\\textbf{{{t}}}", r"$^\dagger$", escape_latex)
    previous = None
    for key, line in zip(table.mean.index, body):
        first = key[0]
        if previous is not None and first != previous and lead > 1:
            lines.append(r"\midrule")
        keys = [escape_latex(v) for v in key]
        if first == previous and lead > 1:
            keys[0] = ""
        lines.append(" & ".join(keys + line) + r" \\")
        previous = first
    lines += [r"\bottomrule", r"\end{tabular}"]
    lines += notes_latex(table.notes)
    lines.append(r"\end{table}")
    return "\n".join(lines) + "\n"


def grid_to_markdown(grid: Grid, caption: str, left: int) -> str:
    return (
        "\n".join([f"*{caption}*", "", markdown_grid(grid.header, grid.body, left), *(f"\n{n}" for n in grid.notes)])
        + "\n"
    )


def grid_to_latex(grid: Grid, caption: str, label_name: str, left: int | None = None) -> str:
    """A booktabs table of a :class:`Grid`; the first ``left`` columns left-aligned, the rest right (all left
    when ``left`` is None)."""
    left = len(grid.header) if left is None else left
    lines = [
        r"\begin{table}[t]",
        r"\centering",
        f"\\caption{{{escape_latex(caption)}}}",
        f"\\label{{{label_name}}}",
        f"\\begin{{tabular}}{{{'l' * left + 'r' * (len(grid.header) - left)}}}",
        r"\toprule",
        " & ".join(map(escape_latex, grid.header)) + r" \\",
        r"\midrule",
        *(" & ".join(map(latex_cell, row)) + r" \\" for row in grid.body),
        r"\bottomrule",
        r"\end{tabular}",
        *notes_latex(grid.notes),
        r"\end{table}",
    ]
    return "\n".join(lines) + "\n"


def latex_cell(text) -> str:
    """A grid cell; Markdown's ``**bold**`` becomes \\textbf."""
    text = str(text)
    if len(text) > 4 and text.startswith("**") and text.endswith("**"):
        return f"\\textbf{{{escape_latex(text[2:-2])}}}"
    return escape_latex(text)


def notes_latex(notes: list) -> list:
    return [f"\\par\\smallskip{{\\footnotesize {escape_latex(n)}}}" for n in notes]
