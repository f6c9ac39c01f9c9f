"""The one guard between a file on disk and ``instantiate``: nothing a run directory names is executed unchecked.

A run directory is shared (a lab's ``results/`` tree), so its ``config.yaml`` (and a study's ``search.yaml``) is
untrusted input: instantiating whatever ``_target_`` it names runs any function with any arguments
(``pandas.read_pickle`` on a planted pickle, ``torch.load(weights_only=False)``, ``pathlib.Path.unlink``).
Every reader that builds from such a file (``python -m harness.inspect``, ``load_run``, the spectrum's sibling
runs, search reports) goes through :func:`guarded_config`, which refuses, in one line naming the key:

* a ``_target_`` that no file under ``conf/`` names (:func:`allowed_targets`, computed from the YAML files:
  the harness's own helpers such as ``harness.io.atomic_write_text`` are NOT allowed, PML losses and
  optimizers are); a timm backbone's ``model_name`` must be a timm model (no ``hf-hub:`` reference);
* Hydra's special keys from disk (``_args_``, ``_partial_``, ``_recursive_``, ``_convert_``), unless a conf/ file
  gives that target that key with that value;
* an interpolation (``${...}``: a saved config is resolved, so one is planted) and any value that is not plain
  data (numbers, strings, booleans, null, lists and mappings of them) or a checked nested node;
* an argument the target does not take, or of another type than its annotation or default says;
* timm's file-reading arguments (``checkpoint_path``, ``pretrained_cfg``, ``pretrained_cfg_overlay``, ``cache_dir``).

Reading the YAML itself executes nothing (OmegaConf's loader is YAML's safe loader).
"""

from __future__ import annotations

import collections.abc
import functools
import inspect
import types
import typing
from pathlib import Path

import yaml
from hydra.utils import get_object
from omegaconf import DictConfig, OmegaConf

from harness.errors import ConfigError

CONF = Path(__file__).resolve().parents[2] / "conf"
SPECIAL = ("_args_", "_partial_", "_recursive_", "_convert_")
TIMM_TARGETS = frozenset({"harness.models.backbones.timm_backbone", "timm.create_model"})
FILE_ARGUMENTS = frozenset({"checkpoint_path", "pretrained_cfg", "pretrained_cfg_overlay", "cache_dir"})


# ----------------------------------------------------------------------------------------------- what conf/ names
@functools.lru_cache(maxsize=1)
def conf_targets() -> tuple[frozenset, frozenset]:
    """(every ``_target_`` the files under conf/ name, every (target, special key, value) they give). The
    launchers (conf/hydra/launcher/) are left out: no file a reader builds from names them."""
    targets, specials = set(), set()

    def visit(node):
        if isinstance(node, dict):
            target = node.get("_target_")
            if isinstance(target, str):
                targets.add(target)
                specials.update((target, k, repr(node[k])) for k in SPECIAL if k in node)
            for value in node.values():
                visit(value)
        elif isinstance(node, list):
            for value in node:
                visit(value)

    for path in sorted(CONF.rglob("*.yaml")):
        if path.relative_to(CONF).parts[:2] == ("hydra", "launcher"):
            continue
        try:
            visit(yaml.safe_load(path.read_text()))
        except (yaml.YAMLError, OSError):  # a broken file is the config loader's to report
            continue
    return frozenset(targets), frozenset(specials)


def allowed_targets() -> frozenset:
    return conf_targets()[0]


def allowed_target(target: str) -> bool:
    return target in allowed_targets()


@functools.lru_cache(maxsize=1)
def timm_models() -> frozenset:
    # lazy: heavy (timm, ~2 s), only for a timm backbone's model_name
    import timm

    return frozenset(timm.list_models())


# ----------------------------------------------------------------------------------------------- the guard
def guarded_config(path) -> DictConfig:
    """A run directory's ``config.yaml`` (or the file ``path`` names), checked by the guard (module docstring);
    :class:`~harness.errors.ConfigError` in one line when it is absent, unreadable or refused."""
    path = Path(path)
    if path.is_dir():
        path = path / "config.yaml"
    try:
        cfg = OmegaConf.load(path)
    except (FileNotFoundError, NotADirectoryError):
        raise ConfigError(
            f"{path.parent} is not a run directory (no {path.name}); pass results/runs/<dataset>/<run>"
        ) from None
    except Exception as err:  # noqa: BLE001 - YAML errors differ
        raise ConfigError(
            f"{path} is not a readable config ({type(err).__name__}); the run cannot be rebuilt"
        ) from None
    if not OmegaConf.is_dict(cfg):
        raise ConfigError(f"{path} is not a config mapping; the run cannot be rebuilt")
    check_tree(OmegaConf.to_container(cfg, resolve=False), "", str(path))
    return cfg


def guarded_node(node, where: str, source: str, also: frozenset = frozenset()) -> dict | None:
    """A node read from ``source`` as plain data, checked like a config file's (None stays None); ``also``: more
    targets allowed there (a study's optuna sampler and pruner)."""
    if node is None:
        return None
    if OmegaConf.is_config(node):
        node = OmegaConf.to_container(node, resolve=False)
    check_tree(node, where, source, also)
    return node


def check_tree(node, where: str, source: str, also: frozenset = frozenset()) -> None:
    """Refuse anything but plain data and nodes whose target, special keys and arguments are allowed."""
    if isinstance(node, dict):
        for key, value in node.items():
            here = f"{where}.{key}" if where else str(key)
            if str(key).startswith("_") and key != "_target_" and not ("_target_" in node and key in SPECIAL):
                refuse(source, here, "is a special key, refused from disk")
            check_tree(value, here, source, also)
        if "_target_" in node:  # its values are plain or checked nodes by now
            check_call(node, where, source, also)
    elif isinstance(node, (list, tuple)):
        for i, value in enumerate(node):
            check_tree(value, f"{where}[{i}]", source, also)
    elif isinstance(node, str):
        if "${" in node:
            refuse(source, where, f"{node!r} is an interpolation; a saved config is resolved, so it was planted")
    elif node is not None and not isinstance(node, (bool, int, float)):
        refuse(source, where, f"holds a {type(node).__name__}, not plain data")


def check_call(node: dict, where: str, source: str, also: frozenset = frozenset()) -> None:
    target = node["_target_"]
    key = f"{where}._target_" if where else "_target_"
    if not isinstance(target, str) or not (allowed_target(target) or target in also):
        refuse(source, key, f"{target!r} is a target no file under conf/ names (only those are built from a file)")
    specials = conf_targets()[1]
    for special in SPECIAL:
        if special in node and (target, special, repr(node[special])) not in specials:
            refuse(source, f"{where}.{special}", f"Hydra's {special} is refused from disk for {target}")
    arguments = {k: v for k, v in node.items() if k not in ("_target_", *SPECIAL)}
    if target in TIMM_TARGETS:
        check_timm(arguments, where, source)
    check_arguments(target, arguments, where, source)


def check_timm(arguments: dict, where: str, source: str) -> None:
    bad = sorted(FILE_ARGUMENTS & set(arguments))
    if bad:
        refuse(source, f"{where}.{bad[0]}", "would make timm read a file; it is refused from disk")
    name = arguments.get("model_name")
    if not isinstance(name, str) or ":" in name or name.split(".")[0] not in timm_models():
        refuse(source, f"{where}.model_name", f"{name!r} is not a timm model name")


def check_arguments(target: str, arguments: dict, where: str, source: str) -> None:
    """Every argument is one the target takes, of the type its annotation (or default) says."""
    try:
        fn = get_object(target)
        signature = inspect.signature(fn)
    except Exception:  # noqa: BLE001 - a conf/ target that cannot be imported here: the types are not checked
        return
    params = signature.parameters
    takes_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
    hints = type_hints(fn)
    for name, value in arguments.items():
        here = f"{where}.{name}" if where else str(name)
        param = params.get(name)
        nested = isinstance(value, dict) and "_target_" in value  # checked on its own
        if param is None or param.kind in (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD):
            if not (takes_any or nested or value is None):  # the harness's own keys (dataset.augment) are nodes
                refuse(source, here, f"is not an argument of {target}")
            continue
        if nested:
            continue
        expected = hints.get(name, inspect.Parameter.empty)
        if expected is inspect.Parameter.empty and param.default not in (inspect.Parameter.empty, None):
            expected = type(param.default)
        if not type_ok(value, expected):
            refuse(source, here, f"{value!r} is not of type {getattr(expected, '__name__', expected)} ({target})")


def type_hints(fn) -> dict:
    try:
        return typing.get_type_hints(fn.__init__ if inspect.isclass(fn) else fn)
    except Exception:  # noqa: BLE001 - annotations that do not evaluate here: the defaults decide
        return {}


def type_ok(value, expected) -> bool:
    """Whether plain ``value`` is of the kind ``expected`` says (number, boolean, string, list, mapping; Optional /
    Union of them); anything the guard cannot judge (a class, a protocol) takes any plain value."""
    if expected in (inspect.Parameter.empty, typing.Any, object):
        return True
    origin = typing.get_origin(expected)
    if origin in (typing.Union, types.UnionType):
        return any(type_ok(value, arg) for arg in typing.get_args(expected))
    if expected is type(None):
        return value is None
    base = origin or expected
    if base is bool:
        return isinstance(value, bool)
    if base in (int, float):  # a number (YAML writes 2.0 for a float default 2 and 2 for 2.0)
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if base is str:
        return isinstance(value, str)
    if base in (list, tuple, set, frozenset, collections.abc.Sequence, collections.abc.Iterable):
        return isinstance(value, (list, tuple))
    if base in (dict, collections.abc.Mapping):
        return isinstance(value, dict)
    return True


def refuse(source: str, where: str, why: str) -> None:
    raise ConfigError(f"{source}: {where or 'the file'} {why}; nothing was built from it")
