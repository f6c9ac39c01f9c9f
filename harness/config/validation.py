"""The rules of a run's config beyond one value's type and range (harness.config.validate_config calls them, before
anything is built and before the run directory exists): what the build would refuse that the config alone decides,
what this machine must offer, and the one value that is settled here (mixed precision on an explicit CPU).
"""

from __future__ import annotations

import logging
import math

import torch
from omegaconf import DictConfig, OmegaConf, open_dict, read_write

from harness.config.checks import number
from harness.distributed.world import launch_from_env
from harness.errors import ConfigError

log = logging.getLogger(__name__)


def check_not_nan(cfg: DictConfig) -> None:
    """No value is NaN: never a setting, and it would only surface as a NaN loss (or not at all) later."""

    def walk(value, where: str) -> None:
        if isinstance(value, float) and math.isnan(value):
            raise ConfigError(f"{where}=nan is not a value; give a finite number")
        items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
        for key, item in items:
            walk(item, f"{where}.{key}" if where else str(key))

    plain = OmegaConf.to_container(cfg, resolve=False)  # ??? and interpolations stay as they are: the build names them
    walk({k: v for k, v in plain.items() if k != "hydra"}, "")


def check_weights(cfg: DictConfig) -> None:
    """The base loss's and each regularizer's weight: finite and >= 0, checked up front like the learning rate."""
    if cfg.get("loss") is not None and cfg.loss.get("weight") is not None:
        number(cfg.loss.weight, "loss.weight", positive=False, example=1.0)
    for name, node in (cfg.get("regularizer") or {}).items():
        if not isinstance(node, DictConfig) or "_target_" not in node:
            raise ConfigError(
                f"regularizer.{name} has no _target_; select regularizers with regularizer=[a,b] from conf/regularizer/"
            )
        if node.get("weight") is not None:
            number(node.weight, f"regularizer.{name}.weight", positive=False, example=0.1)


def check_parts(cfg: DictConfig) -> None:
    """Choices the parts would refuse once built (the choices live beside the code that uses them)."""
    from harness.models.embedding import HEAD_INITS, POOLINGS  # lazy: it imports harness.config (circle)

    if cfg.head.get("pooling", "avg") not in POOLINGS:
        raise ConfigError(f"head.pooling={cfg.head.pooling!r} is unknown; use one of {', '.join(POOLINGS)}")
    if cfg.head.get("init", "default") not in HEAD_INITS:
        raise ConfigError(f"head.init={cfg.head.init!r} is unknown; use one of {', '.join(HEAD_INITS)}")
    if cfg.trainer.get("channels_last", "auto") not in ("auto", True, False):
        raise ConfigError(f"trainer.channels_last={cfg.trainer.channels_last!r} must be auto, true or false")
    dataset = cfg.get("dataset") or {}
    if dataset.get("val_fraction") is not None:
        fraction = number(dataset.val_fraction, "dataset.val_fraction", positive=False, example=0.2)
        if fraction >= 1:
            raise ConfigError(
                f"dataset.val_fraction={fraction:g} must be in [0, 1): the share of training classes held out "
                f"for validation, e.g. dataset.val_fraction=0.2"
            )
    if dataset.get("on_corrupt", "fail") not in ("fail", "skip"):
        raise ConfigError(f"dataset.on_corrupt={dataset.on_corrupt!r} must be fail or skip")


def settle_amp(cfg: DictConfig) -> None:
    """Mixed precision runs on CUDA only: asked for on an explicit ``trainer.device=cpu``, it is off, said once, and
    the run is the amp-off run (its directory too). ``device=auto`` is left alone: it is decided where it trains."""
    amp = cfg.trainer.get("amp", "auto")
    if str(cfg.trainer.device) == "cpu" and amp in ("bf16", "fp16", True):
        log.warning(
            "trainer.amp=%s is off on trainer.device=cpu (mixed precision runs on CUDA only): this is the run "
            "with trainer.amp=off",
            amp,
        )
        with read_write(cfg), open_dict(cfg):
            cfg.trainer.amp = "off"


def check_device_here(cfg: DictConfig) -> None:
    """An explicit CUDA device exists on this machine, and a run that starts its own processes finds a GPU for
    each (one line here, not one traceback per process later)."""
    spec = str(cfg.trainer.device)
    if not spec.startswith("cuda"):
        return
    if not torch.cuda.is_available():
        raise ConfigError(f"trainer.device={spec} but no CUDA device is available here; use trainer.device=auto or cpu")
    visible = torch.cuda.device_count()
    if spec != "cuda" and int(spec[5:]) >= visible:
        raise ConfigError(
            f"trainer.device={spec} but this machine has {visible} CUDA device(s): cuda:0 to cuda:{visible - 1}"
        )
    devices = int(cfg.trainer.get("devices", 1) or 1)
    if devices > visible and launch_from_env().world_size == 1:  # this process starts the run's processes
        raise ConfigError(
            f"trainer.devices={devices} processes need a GPU each but this machine has {visible}; "
            f"set trainer.devices={visible}"
        )
