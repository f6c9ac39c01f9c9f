"""Reloading a run never executes code from disk: what ``load_run`` may build from a saved ``config.yaml``.

A run directory is shared (a lab's ``results/`` tree), so its ``config.yaml`` is untrusted input: instantiating
whatever ``_target_`` it names would run any function with any arguments (``pandas.read_pickle`` on a
planted file runs arbitrary code). ``load_run`` therefore builds only from a node this module has checked
and rebuilt from plain values:

* the backbone's ``_target_`` is one of the harness's own model classes or a timm model (:data:`BACKBONES`);
* its arguments are plain values (numbers, strings, booleans, null, lists of them): no nested ``_target_``,
  no ``_partial_`` / ``_args_``, no interpolation;
* nothing is read from disk or the network to build it: ``pretrained`` is turned off and ``weights`` dropped
  (the trained weights come from ``checkpoints/best.pt``, loaded with ``weights_only=True``), and timm's
  file-loading arguments (``checkpoint_path``, ``pretrained_cfg``, ``pretrained_cfg_overlay``) are refused;
* the head and the evaluation transform are plain values given to the harness's own constructors.

Anything else is refused with one line (:class:`~harness.errors.ConfigError`).
"""

from __future__ import annotations

import inspect

from omegaconf import DictConfig, OmegaConf

from harness.errors import ConfigError

# the backbones a saved config may name (conf/backbone/*.yaml use these)
BACKBONES = frozenset(
    {
        "harness.models.MLP",
        "harness.models.mlp.MLP",
        "harness.models.SmallCNN",
        "harness.models.small_cnn.SmallCNN",
        "harness.models.backbones.timm_backbone",
        "timm.create_model",
    }
)
TIMM_TARGETS = frozenset({"harness.models.backbones.timm_backbone", "timm.create_model"})
FILE_ARGUMENTS = frozenset({"checkpoint_path", "pretrained_cfg", "pretrained_cfg_overlay", "cache_dir"})
HEAD_KEYS = {"embed_dim": (int,), "normalize": (bool,), "pooling": (str,)}


def safe_backbone(node, where: str = "backbone") -> DictConfig:
    """A backbone node rebuilt from checked plain values (see the module docstring); ConfigError otherwise."""
    data = _plain_mapping(node, where)
    target = data.pop("_target_", None)
    if target not in BACKBONES:
        raise ConfigError(
            f"{where}._target_={target!r} is not a backbone load_run builds (it executes nothing "
            f"else from a run directory); allowed: {', '.join(sorted(BACKBONES))}"
        )
    bad = sorted(FILE_ARGUMENTS & set(data)) if target in TIMM_TARGETS else []
    if bad:
        raise ConfigError(
            f"{where}.{bad[0]} is refused by load_run: it would read a file; the trained weights "
            f"come from checkpoints/best.pt"
        )
    for key, value in data.items():
        if key.startswith("_"):
            raise ConfigError(f"{where}.{key} is refused by load_run: only plain arguments are rebuilt")
        _check_plain(value, f"{where}.{key}")
    if target in TIMM_TARGETS:
        data["pretrained"] = False
        data.pop("weights", None)
    return OmegaConf.create({"_target_": target, **data})


def safe_head(node, where: str = "head") -> dict:
    data = _plain_mapping(node, where)
    out = {}
    for key, kinds in HEAD_KEYS.items():
        value = data.get(key)
        if not isinstance(value, kinds) or (kinds == (int,) and isinstance(value, bool)):
            raise ConfigError(f"{where}.{key}={value!r} in the saved config is not a {kinds[0].__name__}")
        out[key] = value
    return out


def safe_transform_kwargs(node, where: str = "dataset.transform") -> dict | None:
    """The evaluation transform's keyword arguments (plain values, known names), or None when there is none."""
    if node is None:
        return None
    from harness.data.transforms import build_eval_transform

    data = _plain_mapping(node, where)
    known = set(inspect.signature(build_eval_transform).parameters)
    for key, value in data.items():
        if key not in known:
            raise ConfigError(
                f"{where}.{key} is not an argument of the evaluation transform ({', '.join(sorted(known))})"
            )
        _check_plain(value, f"{where}.{key}", mappings=True)
    return data


def _plain_mapping(node, where: str) -> dict:
    if OmegaConf.is_config(node):
        node = OmegaConf.to_container(node, resolve=False)
    if not isinstance(node, dict):
        raise ConfigError(f"{where} in the saved config.yaml is not a mapping")
    return dict(node)


def _check_plain(value, where: str, mappings: bool = False) -> None:
    if value is None or isinstance(value, (bool, int, float)):
        return
    if isinstance(value, str):
        if "${" in value:
            raise ConfigError(f"{where}={value!r} is an interpolation; load_run only rebuilds plain values")
        return
    if isinstance(value, (list, tuple)):
        for i, v in enumerate(value):
            _check_plain(v, f"{where}[{i}]", mappings)
        return
    if mappings and isinstance(value, dict) and not any(str(k).startswith("_") for k in value):
        for k, v in value.items():
            _check_plain(v, f"{where}.{k}", mappings)
        return
    raise ConfigError(
        f"{where} holds a {type(value).__name__}; load_run only rebuilds plain values (no nested _target_)"
    )
