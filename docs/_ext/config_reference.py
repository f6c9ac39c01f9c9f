"""The configuration reference, generated from the raw YAML of `conf/` at every docs build.

OmegaConf drops comments, so this reads the files as text: every group (a folder of `conf/`, `hydra/<name>` for
Hydra's own groups), every option (a file; `sub/name` for a file in a sub-folder), its header comment, its
`@package`, its defaults list, and every key with its dotted override path, its default exactly as written
(interpolations, `???`, flow lists) and its comment; each `_target_` with the first paragraph of the target's
docstring. Untracked cluster files (`conf/local/*` but `example.yaml`) are never rendered: they may hold secrets.

Used as a Sphinx extension (`config_reference` in docs/conf.py: pages under docs/reference/config/, rewritten on
`config-inited`, stale ones removed) or directly: `render(conf_dir) -> {relative page path: Markdown}`.
"""

from __future__ import annotations

import importlib
import inspect
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

OUT = "reference/config"  # relative to the docs source directory
LOCAL_KEPT = {"example.yaml"}  # conf/local/: only the tracked example is documented

_KEY = re.compile(r"^(?P<indent>\s*)(?P<key>[^\s#:][^:#]*?|\"[^\"]*\"|'[^']*'):(?:\s+(?P<rest>.*)|\s*)$")
_ITEM = re.compile(r"^(?P<indent>\s*)-\s?(?P<rest>.*)$")


@dataclass
class Key:
    path: str  # dotted, from the option's package
    value: str  # as written; "" for a mapping
    comment: str = ""
    is_mapping: bool = False


@dataclass
class Option:
    group: str  # "" for the primary config
    name: str
    file: str  # relative to the repository root
    package: str | None = None  # the @package line's value, if any
    header: list[str] = field(default_factory=list)
    defaults: list[tuple[str, str]] = field(default_factory=list)  # (entry as written, comment)
    keys: list[Key] = field(default_factory=list)


def split_comment(text: str) -> tuple[str, str]:
    """`value  # comment` -> (value, comment); a `#` inside quotes, or not after a space, is part of the value."""
    quote = None
    for i, ch in enumerate(text):
        if quote:
            quote = None if ch == quote else quote
        elif ch in "\"'":
            quote = ch
        elif ch == "#" and (i == 0 or text[i - 1] in " \t"):
            return text[:i].rstrip(), text[i + 1 :].strip()
    return text.rstrip(), ""


def parse(text: str, group: str, name: str, file: str) -> Option:
    """One YAML file of conf/ read line by line (block style, as the harness writes its configs)."""
    opt = Option(group=group, name=name, file=file)
    lines = text.splitlines()
    stack: list[tuple[int, str]] = []  # (indent, key) of the open mappings
    pending: list[str] = []  # comment lines waiting for the next key
    last: Key | None = None
    last_comment_col = -1
    in_header = True
    in_defaults = False
    i = 0
    while i < len(lines):
        line = lines[i]
        i += 1
        stripped = line.strip()
        if not stripped:
            if in_header and pending:
                opt.header += pending + [""]
                pending = []
            continue
        if stripped.startswith("#"):
            body = stripped[1:].strip()
            m = re.match(r"@package\s+(\S+)", body)
            if m and in_header and opt.package is None:
                opt.package = m.group(1)
                continue
            col = len(line) - len(line.lstrip())
            if last is not None and col == last_comment_col:  # a continuation of the previous key's comment
                last.comment += " " + body
                continue
            pending.append(body)
            continue
        if in_header:
            in_header = False  # the header runs up to the first key: it describes the file
            opt.header += pending
            opt.header = _trim(opt.header)
            pending = []
        item = _ITEM.match(line)
        if item and in_defaults:
            value, comment = split_comment(item.group("rest"))
            opt.defaults.append((value, " ".join(pending + ([comment] if comment else []))))
            pending = []
            continue
        m = _KEY.match(line)
        if not m:
            if item and last is not None:  # a block list: its items are the key's value
                value, comment = split_comment(item.group("rest"))
                last.value = (last.value + ", " if last.value else "") + value
                last.is_mapping = False
                if comment:
                    last.comment = (last.comment + " " + comment).strip()
            continue
        indent = len(m.group("indent"))
        key = m.group("key").strip().strip("\"'")
        rest = m.group("rest") or ""
        while stack and stack[-1][0] >= indent:
            stack.pop()
        value, comment = split_comment(rest)
        in_defaults = indent == 0 and key == "defaults" and not value
        if in_defaults:
            pending = []
            last = None
            continue
        if value in ("|", "|-", ">", ">-", "|+", ">+"):  # a block scalar: shown as a multi-line value
            block = []
            while i < len(lines) and (not lines[i].strip() or len(lines[i]) - len(lines[i].lstrip()) > indent):
                block.append(lines[i].strip())
                i += 1
            value = value + " " + " ⏎ ".join(b for b in block if b)
        path = ".".join([k for _, k in stack] + [key])
        last = Key(path=path, value=value, comment=" ".join(pending + ([comment] if comment else [])))
        last.is_mapping = not value
        last_comment_col = _comment_col(line)
        opt.keys.append(last)
        pending = []
        if not value:
            stack.append((indent, key))
    return opt


def _comment_col(line: str) -> int:
    value, comment = split_comment(line)
    return line.index("#", len(value)) if comment else -1


def _trim(lines: list[str]) -> list[str]:
    while lines and not lines[-1]:
        lines.pop()
    while lines and not lines[0]:
        lines.pop(0)
    return lines


def package_prefix(opt: Option) -> str:
    """The dotted prefix every key of the option lands under (Hydra's default package is the group)."""
    pkg = opt.package
    if pkg is None or pkg == "_group_":
        return opt.group.replace("/", ".")
    if pkg == "_global_":
        return ""
    return pkg.replace("_group_", opt.group.replace("/", "."))


def target_doc(target: str) -> str:
    """The first paragraph of a `_target_`'s docstring; raises ImportError/AttributeError when it does not resolve."""
    module, _, attr = target.rpartition(".")
    obj = importlib.import_module(module)
    for part in attr.split("."):
        obj = getattr(obj, part)
    doc = inspect.getdoc(obj) or ""
    return " ".join(doc.split("\n\n")[0].split())


def discover(conf: Path) -> dict[str, list[tuple[str, Path]]]:
    """{group: [(option name, file)]}; "" is the primary config. Follows symlinks (conf/sweep -> sweeps/)."""
    groups: dict[str, list[tuple[str, Path]]] = {}
    for dirpath, dirnames, filenames in os.walk(conf, followlinks=True):
        dirnames.sort()
        rel = Path(dirpath).relative_to(conf)
        for fname in sorted(filenames):
            if not fname.endswith((".yaml", ".yml")):
                continue
            parts = rel.parts
            if parts[:1] == ("local",) and fname not in LOCAL_KEPT:
                continue
            if not parts:
                group, name = "", Path(fname).stem
            elif parts[0] == "hydra" and len(parts) >= 2:
                group, name = "/".join(parts[:2]), "/".join([*parts[2:], Path(fname).stem])
            else:
                group, name = parts[0], "/".join([*parts[1:], Path(fname).stem])
            groups.setdefault(group, []).append((name, Path(dirpath) / fname))
    return groups


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def _code(text: str) -> str:
    if not text:
        return ""
    tick = "``" if "`" in text else "`"
    pad = " " if text.startswith("`") or text.endswith("`") else ""
    return f"{tick}{pad}{_cell(text)}{pad}{tick}"


def page_name(group: str) -> str:
    return "config" if not group else group.replace("/", "-")


def render_option(opt: Option, warn) -> list[str]:
    title = opt.name if not opt.group else f"{opt.group}={opt.name}"
    out = [f"## `{title}`", "", f"File `{opt.file}`" + (f", `@package {opt.package}`" if opt.package else "") + "."]
    out.append("")
    if opt.header:
        out += ["```text", *opt.header, "```", ""]
    if opt.defaults:
        out += ["Defaults list:", ""]
        out += [f"- {_code(v)}" + (f": {c}" if c else "") for v, c in opt.defaults]
        out.append("")
    targets = [k for k in opt.keys if k.path.split(".")[-1] == "_target_"]
    prefix = package_prefix(opt)
    rows = [k for k in opt.keys if not k.is_mapping or k.comment]
    if rows:
        out += ["| key | default | comment |", "|---|---|---|"]
        for k in rows:
            full = f"{prefix}.{k.path}" if prefix else k.path
            out.append(f"| {_code(full)} | {_code(k.value)} | {_cell(k.comment)} |")
        out.append("")
    for k in targets:
        try:
            doc = target_doc(k.value)
        except Exception as exc:  # a target that does not import is a broken reference: the build fails on it
            warn(f"{opt.file}: {k.path}: {k.value} does not import ({type(exc).__name__}: {exc})")
            doc = ""
        out += [f"`{k.value}`" + (f": {doc}" if doc else ""), ""]
    return out


def render(conf: Path, repo: Path | None = None, warn=print) -> dict[str, str]:
    """{page path relative to the docs source: Markdown} for every group of `conf`."""
    repo = repo or conf.parent
    groups = discover(conf)
    pages: dict[str, str] = {}
    index = [
        "# Configuration reference",
        "",
        "Generated from the YAML files of `conf/` at every docs build (comments kept, defaults as written);",
        "edit the YAML, never these pages. Select an option with `group=option`, override a key with",
        "`key=value` (the key column gives the full path).",
        "",
        "| group | options |",
        "|---|---|",
    ]
    toc = []
    for group in sorted(groups, key=lambda g: (g != "", g)):
        opts = []
        for name, path in groups[group]:
            try:
                file = str(path.relative_to(repo))
            except ValueError:
                file = str(path)
            opts.append(parse(path.read_text(encoding="utf-8"), group, name, file))
        name = page_name(group)
        heading = "The primary config (`conf/config.yaml`)" if not group else f"Group `{group}`"
        body = [f"# {heading}", ""]
        if group:
            body += [f"Options: {', '.join(f'`{o.name}`' for o in opts)}.", ""]
        for opt in opts:
            body += render_option(opt, warn)
        pages[f"{OUT}/{name}.md"] = "\n".join(body).rstrip() + "\n"
        label = "(primary config)" if not group else f"`{group}`"
        index.append(f"| [{label}]({name}.md) | {', '.join(o.name for o in opts)} |")
        toc.append(name)
    index += ["", "```{toctree}", ":hidden:", "", *toc, "```", ""]
    pages[f"{OUT}/index.md"] = "\n".join(index)
    return pages


def write(pages: dict[str, str], srcdir: Path) -> None:
    """Write the pages that changed (unchanged files keep their time: no needless rebuild); remove stale ones."""
    out = srcdir / OUT
    out.mkdir(parents=True, exist_ok=True)
    for rel, text in pages.items():
        path = srcdir / rel
        if not path.exists() or path.read_text(encoding="utf-8") != text:
            path.write_text(text, encoding="utf-8")
    keep = {srcdir / rel for rel in pages}
    for path in out.glob("*.md"):
        if path not in keep:
            path.unlink()


def _on_config_inited(app, config) -> None:
    from sphinx.util import logging

    log = logging.getLogger(__name__)
    src = Path(app.srcdir)
    conf = Path(config.config_reference_conf or src.parent / "conf")
    write(render(conf, repo=conf.parent, warn=log.warning), src)


def setup(app):
    app.add_config_value("config_reference_conf", "", "env")
    app.connect("config-inited", _on_config_inited)
    return {"version": "1", "parallel_read_safe": True, "parallel_write_safe": True}
