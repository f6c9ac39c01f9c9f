"""The command line checked against conf/ before Hydra composes it: a typo is one line naming the closest key.

Hydra answers ``trainer.epoch=3`` with advice to write ``+trainer.epoch=3``, which then runs with the default
epochs and a key nothing reads; ``los=triplet`` likewise; ``regularizer=[antico_pair,nri]`` gets a search-path
listing. Here, before anything is composed (``run.py`` calls :func:`check_command_line`):

* a key under the harness's own config (a group or a key that some file of ``conf/`` defines: ``trainer.*``,
  ``eval.*``, ``loss.*``, ...) must be one that some file of ``conf/`` defines, with or without ``+``:
  ``trainer.epoch=3`` -> "did you mean trainer.epochs?". A new top-level key (``+db.password=...``) is the
  user's own and is left alone, unless it is one edit from a group or key (``+los=triplet``);
* ``++key=value`` adds or sets a key on purpose and is never refused (the sweeps and tests use it for keys that
  only some options of a group have);
* a group option must be a file of the group: ``regularizer=[antico_pair,nri]`` -> "did you mean nir?" and the
  group's options; the files an override selects (and ``sweep=``'s own parameters) are read first, so a broken
  YAML file is one line naming the file, the line and the column.

The known keys are every dotted key the YAML files of ``conf/`` define, each file at its package (a group file
at its group, ``# @package _global_`` at the root): the union over every option of a group, so a key that another
option of the group has passes here and is left to Hydra.
"""

from __future__ import annotations

import difflib
import functools
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path

import yaml
from hydra._internal.utils import get_args_parser
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.errors import HydraException

from harness.cli import entry_point
from harness.errors import ConfigError

CONF = Path(__file__).resolve().parents[2] / "conf"
UNCHECKED = ("hydra",)  # Hydra's own keys and groups: its schema checks them


@dataclass
class ConfTree:
    """What the YAML files of a conf/ folder define: groups and their options, every dotted key, broken files."""

    groups: dict = field(default_factory=dict)  # group path ("experiment", "experiment/protocol") -> [options]
    keys: set = field(default_factory=set)  # every dotted key some file defines ("trainer.epochs")
    broken: dict = field(default_factory=dict)  # file (relative to conf/) -> one line: why it does not parse
    files: dict = field(default_factory=dict)  # "group/option" -> the parsed content (sweep parameters)

    @property
    def roots(self) -> set:
        """The top-level names: every group and every first key."""
        return {g.split("/")[0] for g in self.groups} | {k.split(".")[0] for k in self.keys}

    def children(self, parent: str) -> list:
        """The known keys one level below ``parent`` ("" for the top level: keys and groups)."""
        if not parent:
            return sorted(self.roots)
        prefix = parent + "."
        return sorted({k[len(prefix) :].split(".")[0] for k in self.keys if k.startswith(prefix)})


@functools.lru_cache(maxsize=4)
def conf_tree(conf: Path = CONF) -> ConfTree:
    tree = ConfTree()
    found = [Path(d) / f for d, _, names in os.walk(conf, followlinks=True) for f in names if f.endswith(".yaml")]
    for path in sorted(found):  # followlinks: conf/sweep -> ../sweeps
        rel = path.relative_to(conf)
        group = "/".join(rel.parts[:-1])
        if group.split("/")[0] in UNCHECKED:
            continue
        if group:
            tree.groups.setdefault(group, []).append(rel.stem)
            for level in range(1, len(rel.parts) - 1):  # experiment=omniglot_ablation/nir: an option of experiment
                tree.groups.setdefault("/".join(rel.parts[:level]), []).append("/".join(rel.parts[level:])[:-5])
        text = path.read_text(errors="replace")
        try:
            content = yaml.load(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
        except yaml.YAMLError as err:
            tree.broken[str(rel)] = yaml_error_line(err)
            continue
        if not isinstance(content, dict):
            continue
        tree.files[f"{group}/{rel.stem}" if group else rel.stem] = content
        package = package_of(text, group)
        for key in dotted_keys({k: v for k, v in content.items() if k not in ("defaults", *UNCHECKED)}):
            parts = (f"{package}.{key}" if package else key).split(".")
            tree.keys |= {".".join(parts[: i + 1]) for i in range(len(parts))}  # the package and each level too
    return tree


def package_of(text: str, group: str) -> str:
    """The package a file's keys live at: its ``# @package`` header, else its group (Hydra's default)."""
    for line in text.splitlines():
        if not line.startswith("#"):
            break
        if "@package" in line:
            package = line.split("@package", 1)[1].strip()
            if package.startswith("_global_"):
                return package[len("_global_") :].lstrip(".")
            return group.replace("/", ".") if package == "_group_" else package
    return group.replace("/", ".")


def dotted_keys(node: dict, prefix: str = "") -> set:
    keys = set()
    for key, value in node.items():
        dotted = f"{prefix}{key}"
        keys.add(dotted)
        if isinstance(value, dict):
            keys |= dotted_keys(value, dotted + ".")
    return keys


def yaml_error_line(err: yaml.YAMLError) -> str:
    mark = getattr(err, "problem_mark", None)
    where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
    return f"{where}{getattr(err, 'problem', None) or ' '.join(str(err).split())}"


# ----------------------------------------------------------------------------------------------- the checks
def check_overrides(overrides, conf: Path = CONF) -> None:
    """One ConfigError line for the first override that names no key, group or option of ``conf``."""
    tree = conf_tree(Path(conf))
    try:
        parsed = OverridesParser.create().parse_overrides(list(overrides))
    except HydraException as err:
        raise ConfigError(f"cannot parse the overrides: {' '.join(str(err).split())}") from None
    for override in parsed:
        key = override.key_or_group
        if key.split(".")[0].split("/")[0] in UNCHECKED or override.package is not None or override.is_delete():
            continue
        if key in tree.groups:
            check_options(tree, key, override, conf)
        elif not override.is_force_add():
            check_key(tree, key, override.input_line, added=override.is_add())


def check_options(tree: ConfTree, group: str, override, conf: Path = CONF) -> None:
    """Every option an override selects is a file of its group (and parses)."""
    for name in option_names(override):
        options = tree.groups[group]
        if name not in options:
            close = difflib.get_close_matches(name, options, n=1)
            hint = f"did you mean {close[0]}? " if close else ""
            listed = ", ".join(sorted(options))
            raise ConfigError(f"{override.input_line}: {group} has no option {name!r}; {hint}{group} options: {listed}")
        broken = tree.broken.get(f"{group}/{name}.yaml")
        if broken:
            raise ConfigError(f"{override.input_line}: conf/{group}/{name}.yaml is not valid YAML ({broken}); fix it")
        if group == "sweep":  # a sweep's own parameters are overrides too
            params = ((tree.files.get(f"sweep/{name}") or {}).get("hydra") or {}).get("sweeper", {}).get("params")
            if isinstance(params, dict):
                check_overrides([f"{k}={v}" for k, v in params.items()], conf)


def option_names(override) -> list:
    """The option names an override selects: one, a list (``regularizer=[a,b]``), or a sweep's choices."""
    if override.is_sweep_override():
        values = list(override.sweep_iterator()) if hasattr(override.value(), "list") else []  # a glob: any
    else:
        values = [override.value()]
    names = []
    for value in values:  # null selects nothing
        names += [str(v) for v in value] if isinstance(value, list) else [] if value is None else [str(value)]
    return names


def check_key(tree: ConfTree, key: str, line: str, added: bool) -> None:
    """A key under the harness's own config is one some file of conf/ defines; a new top-level key is the user's."""
    if key in tree.keys:
        return
    parent, _, leaf = key.rpartition(".")
    top = key.split(".")[0]
    if added and top not in tree.roots:  # the user's own new key (+db.password=...): refused only one edit from ours
        close = difflib.get_close_matches(top, sorted(tree.roots), n=1, cutoff=0.75)
        if close:
            raise ConfigError(
                f"{line}: {top} is not a config group or key; did you mean {close[0]}? "
                f"(a new key on purpose: ++{line.lstrip('+')})"
            )
        return
    while parent and parent not in tree.keys:  # the deepest level that exists
        parent, _, leaf = parent.rpartition(".")
    siblings = tree.children(parent)
    close = difflib.get_close_matches(leaf, siblings, n=1, cutoff=0.6)
    where = parent or "the config"
    if close and not parent and close[0] in tree.groups:  # los=triplet: a group
        hint = f"did you mean {close[0]}={line.split('=', 1)[1]}?"
    elif close:
        hint = f"did you mean {parent + '.' if parent else ''}{close[0]}?"
    elif siblings:
        hint = f"{where} has {', '.join(siblings[:12])}{', ...' if len(siblings) > 12 else ''}"
    else:
        hint = f"{where} is a value, not a group of keys"
    raise ConfigError(f"{line}: {key} is not a key of {where}; {hint} (a new key on purpose: ++{line.lstrip('+')})")


def check_command_line(argv=None) -> None:
    """``run.py``'s overrides checked before Hydra composes them: a typo is one line on stderr and exit code 2.
    Another config (``--config-name``, ``--config-path``) or a help request is left to Hydra."""
    try:
        args, _ = get_args_parser().parse_known_args(sys.argv[1:] if argv is None else list(argv))
    except SystemExit:  # Hydra's own usage error: it answers it
        return
    if args.help or args.hydra_help or args.config_name or args.config_path or args.config_dir or args.info:
        return
    with entry_point():
        check_overrides(args.overrides)
