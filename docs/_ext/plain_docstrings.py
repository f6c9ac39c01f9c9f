"""The harness's docstrings are plain text with ``code`` spans; this makes autodoc read them as their authors mean.

An indented block after a paragraph (a command, a formula, an aligned list) becomes a literal block (`::`),
so ``|P+|`` in a formula is not an RST substitution and alignment survives; a bullet list right after a
paragraph line, and a paragraph right after a list or block, get the blank line RST requires. Nothing else
changes: fields (``:param:``), directives (``..``) and literal blocks already marked ``::`` pass as written.
"""

from __future__ import annotations

import re

_BULLET = re.compile(r"^(\s*)([*-]|\d+\.)\s+")


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip())


def plain_to_rst(lines: list[str]) -> list[str]:
    out: list[str] = []
    literal_base: int | None = None  # indent of the paragraph that opened the current literal block
    bullet_text: int | None = None  # column where the current bullet's text starts (its continuation lines)
    prev: str | None = None  # the previous non-blank line as written in `out`
    prev_idx = -1
    blank_before = False
    for line in lines:
        if not line.strip():
            out.append(line)
            blank_before = True
            continue
        ci = _indent(line)
        if literal_base is not None:
            if ci > literal_base:
                out.append(line)
                prev, prev_idx, blank_before = line, len(out) - 1, False
                continue
            literal_base = None
            if not blank_before:
                out.append("")
        bullet = _BULLET.match(line)
        if prev is not None and not bullet:
            pi = _indent(prev)
            continuation = bullet_text is not None and ci == bullet_text
            special = prev.lstrip().startswith(("..", ":")) or line.lstrip().startswith(("..", ":"))
            if ci > pi and not continuation and not special:
                # an indented block after a paragraph: a literal block
                if prev.rstrip().endswith("::"):
                    pass
                elif prev.rstrip().endswith(":"):
                    out[prev_idx] = prev.rstrip() + ":"
                else:
                    out.insert(prev_idx + 1, "")
                    out.insert(prev_idx + 2, " " * pi + "::")
                if not blank_before:
                    out.append("")
                literal_base = pi
                bullet_text = None
                out.append(line)
                prev, prev_idx, blank_before = line, len(out) - 1, False
                continue
            if bullet_text is not None and not continuation and not blank_before:
                out.append("")  # a paragraph right after a list
            if not continuation:
                bullet_text = None
        if bullet:
            if prev is not None and not blank_before and bullet_text is None:
                out.append("")  # a list right after a paragraph line
            bullet_text = len(bullet.group(0))
        out.append(line)
        prev, prev_idx, blank_before = line, len(out) - 1, False
    return out


def _process(app, what, name, obj, options, lines):
    lines[:] = plain_to_rst(lines)


def setup(app):
    app.connect("autodoc-process-docstring", _process, priority=400)
    return {"version": "1", "parallel_read_safe": True, "parallel_write_safe": True}
