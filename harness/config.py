"""The run's config: checked before anything is built, completed from the data once it is loaded.

Each rule lives here once. A failure is a :class:`~harness.errors.ConfigError`: one line naming the fix.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import numpy as np
from omegaconf import DictConfig, OmegaConf, open_dict, read_write

from harness.errors import ConfigError

log = logging.getLogger(__name__)

SELECTION_METRICS = ("map@r", "r_precision", "nmi")
SELECTION_MODES = ("max", "min")
GRAD_CLIP_MODES = ("norm", "value")
EVAL_METRICS = ("ip", "l2")  # exact faiss search: inner product (cosine on normalised embeddings) | L2
SEED_MAX = 2**32 - 1  # numpy's seed range (np.random.seed), which seeds every run


DEVICES = "auto, cpu, cuda or cuda:N"
AMP_SPECS = ("auto", "bf16", "fp16", "off", True, False)


def validate_config(cfg: DictConfig, here: bool = True) -> None:
    """Cheap checks before anything is built, and so before the run directory exists: each value's type and range,
    each rule once, in one line; everything the build would refuse that the config alone decides.

    ``here``: also what this machine must offer (a GPU for an explicit ``trainer.device=cuda``); False where a run
    is only planned (a search driver on a login node). ``trainer.device=auto`` is never resolved here: it is
    decided where the run trains. Settles one value: ``trainer.amp`` on an explicit ``trainer.device=cpu`` is off
    (said in one line), so that run is the amp-off run, in the amp-off run directory."""
    t = cfg.trainer
    integer(cfg.seed, "seed", 0, example=0, maximum=SEED_MAX)
    integer(t.epochs, "trainer.epochs", 1, example=30)
    integer(t.eval_every, "trainer.eval_every", 1, example=1)
    integer(t.checkpoint_every, "trainer.checkpoint_every", 1, example=1)
    integer(t.freeze_backbone_epochs, "trainer.freeze_backbone_epochs", 0, example=0)
    integer(t.num_workers, "trainer.num_workers", 0, example=8)
    if t.get("num_threads") is not None:
        integer(t.num_threads, "trainer.num_threads", 1, example=8, nullable=True)
    if t.get("grad_clip") is not None:
        number(t.grad_clip, "trainer.grad_clip", positive=True, example=1.0, nullable=True)
    check_device(t.device)
    if t.get("amp", "auto") not in AMP_SPECS:
        raise ConfigError(f"trainer.amp={t.amp!r} must be auto, bf16, fp16 or off")
    number(cfg.optimizer.lr, "optimizer.lr", positive=True, example=1e-3)
    if cfg.optimizer.get("weight_decay") is not None:
        number(cfg.optimizer.weight_decay, "optimizer.weight_decay", positive=False, example=1e-4)
    check_k(cfg.eval.k, "eval.k")
    integer(cfg.eval.batch_size, "eval.batch_size", 1, example=512)
    if cfg.eval.get("metric", "ip") not in EVAL_METRICS:
        raise ConfigError(f"eval.metric={cfg.eval.metric!r} is unknown; use {' or '.join(EVAL_METRICS)} (ip is cosine)")
    batch = integer(cfg.sampler.batch_size, "sampler.batch_size", 1, example=60)
    if cfg.sampler.get("m") is not None:  # the m-per-class sampler (the random one has no m)
        m = integer(cfg.sampler.m, "sampler.m", 1, example=4)
        if batch % m:
            raise ConfigError(
                f"sampler.m={m} does not divide sampler.batch_size={batch}; "
                f"use a multiple of m, e.g. sampler.batch_size={batch // m * m or m}"
            )
    if cfg.sampler.get("batches_per_epoch") is not None:
        integer(cfg.sampler.batches_per_epoch, "sampler.batches_per_epoch", 1, example=100, nullable=True)
    check_embed_dim(cfg.head.embed_dim)
    selection_of(cfg)
    check_processes(cfg)
    mode = cfg.trainer.get("grad_clip_mode", "norm")
    if mode not in GRAD_CLIP_MODES:
        raise ConfigError(f"trainer.grad_clip_mode={mode} is unknown; use one of {', '.join(GRAD_CLIP_MODES)}")
    if cfg.eval.get("pictures", "auto") not in ("auto", True, False):
        raise ConfigError(f"eval.pictures={cfg.eval.pictures} must be auto (image datasets), true or false")
    if cfg.eval.get("picture_map", "umap") not in ("umap", "pca"):
        raise ConfigError(f"eval.picture_map={cfg.eval.picture_map} must be umap or pca")
    check_weights(cfg)
    check_parts(cfg)
    check_not_nan(cfg)  # after the checks above, whose lines name an example value
    settle_amp(cfg)
    if here:
        check_device_here(cfg)


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
    from harness.models.embedding import HEAD_INITS, POOLINGS  # torch: loaded by any run anyway

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
    import torch  # only for an explicit CUDA device: checking any other config never touches the GPU

    from harness.distributed.world import launch_from_env

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


def integer(value, key: str, minimum: int | None = None, example=1, nullable: bool = False, maximum=None) -> int:
    """``value`` as an int (an integral float too), else one line naming ``key`` and a valid example."""
    ok = isinstance(value, int) and not isinstance(value, bool)
    if isinstance(value, float) and value.is_integer():
        value, ok = int(value), True
    if not ok or (minimum is not None and value < minimum) or (maximum is not None and value > maximum):
        bound = f" >= {minimum}" if minimum is not None else ""
        bound += f" and <= {maximum}" if maximum is not None else ""
        null = " (or null)" if nullable else ""
        raise ConfigError(f"{key}={value!r} must be an integer{bound}{null}, e.g. {key}={example}")
    return int(value)


def number(value, key: str, positive: bool = True, example=1.0, nullable: bool = False) -> float:
    """``value`` as a finite float, > 0 (``positive``) or >= 0, else one line naming ``key`` and an example."""
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and np.isfinite(value)
    if ok and (value <= 0 if positive else value < 0):
        ok = False
    if not ok:
        kind = "a positive" if positive else "a non-negative"
        null = " (or null)" if nullable else ""
        raise ConfigError(f"{key}={value!r} must be {kind} finite number{null}, e.g. {key}={example}")
    return float(value)


def check_k(k, key: str = "eval.k") -> list:
    """A Recall@K list: one or more positive integers."""
    values = list(k) if OmegaConf.is_list(k) or isinstance(k, (list, tuple)) else None
    if not values or not all(isinstance(v, int) and not isinstance(v, bool) and v >= 1 for v in values):
        raise ConfigError(f"{key}={k!r} must list positive integers, e.g. {key}=[1,2,4,8]")
    return [int(v) for v in values]


def check_device(spec) -> None:
    text = str(spec)
    if not (text in ("auto", "cpu", "cuda") or (text.startswith("cuda:") and text[5:].isdigit())):
        raise ConfigError(f"trainer.device={spec!r} is not a device; use {DEVICES}")


def world_size_of(cfg: DictConfig) -> int:
    """The processes of one run: trainer.devices per node x trainer.nodes (1 when unset)."""
    trainer = cfg.get("trainer") or {}
    return int(trainer.get("devices", 1) or 1) * int(trainer.get("nodes", 1) or 1)


def check_processes(cfg: DictConfig) -> int:
    """A data-parallel run splits each batch into equal shares (so every process draws the same random numbers)."""
    devices = integer(cfg.trainer.get("devices", 1), "trainer.devices", 1, example=1)
    nodes = integer(cfg.trainer.get("nodes", 1), "trainer.nodes", 1, example=1)
    n, batch = devices * nodes, int(cfg.sampler.get("batch_size") or 0)
    if n > 1 and batch % n:
        m = int(cfg.sampler.get("m", 1) or 1)
        step = n * m // np.gcd(n, m)
        raise ConfigError(
            f"sampler.batch_size={batch} does not split into {n} equal shares (trainer.devices x "
            f"trainer.nodes); use a multiple of {step}, e.g. sampler.batch_size={max(batch // step, 1) * step}"
        )
    return n


@dataclass(frozen=True)
class Selection:
    """What picks the epoch: a validation metric (its record key, e.g. ``val/map@r``) and max or min."""

    key: str
    mode: str

    def better(self, value: float, best: float | None) -> bool:
        return best is None or (value > best if self.mode == "max" else value < best)

    @property
    def metric(self) -> str:
        return self.key.split("/", 1)[1]

    @property
    def direction(self) -> str:
        return "maximize" if self.mode == "max" else "minimize"


def selection_of(cfg: DictConfig) -> Selection:
    metric = str(cfg.selection.metric)
    if metric not in SELECTION_METRICS and not metric.startswith("recall@"):
        raise ConfigError(
            f"selection.metric={metric} is unknown; use one of {', '.join(SELECTION_METRICS)} or recall@K"
        )
    if metric.startswith("recall@") and not metric[7:].isdigit():
        raise ConfigError(f"selection.metric={metric} is unknown; use recall@K with K in eval.k, e.g. recall@1")
    if metric.startswith("recall@") and int(metric[7:]) not in list(cfg.eval.k):
        raise ConfigError(f"selection.metric={metric} is not computed; add it to eval.k={list(cfg.eval.k)}")
    if metric == "nmi" and not cfg.eval.val_nmi:
        raise ConfigError("selection.metric=nmi needs eval.val_nmi=true")
    if cfg.selection.mode not in SELECTION_MODES:
        raise ConfigError(f"selection.mode={cfg.selection.mode} must be max or min")
    return Selection(key=f"val/{metric}", mode=str(cfg.selection.mode))


def check_embed_dim(embed_dim) -> int:
    return integer(embed_dim, "head.embed_dim", 1, example=128)


def check_measurable(cfg: DictConfig, data) -> None:
    """The epoch is selected by a metric the validation split can measure: Recall@K needs K items to retrieve among
    (a Recall@K the test split cannot measure is left out of the results, with one line, never reported as 1.0)."""
    metric = str(cfg.selection.metric)
    splits = {"validation": data.val, "test": data.test if cfg.eval.get("test_every_epoch") else None}
    for name, split in splits.items():  # test too where it is scored by the same metric every epoch
        if metric.startswith("recall@") and split is not None and int(metric[7:]) > retrievable(split):
            raise ConfigError(
                f"selection.metric={metric} cannot be measured: a {name} query retrieves among "
                f"{retrievable(split)} items; select by a smaller K (e.g. selection.metric=recall@1) or by map@r"
            )


def retrievable(evalset) -> int:
    """How many items a query of an evaluation split retrieves among: the gallery, or the other queries."""
    return len(evalset.gallery) if evalset.gallery is not None else len(evalset.query) - 1


def complete_config(cfg: DictConfig, data) -> DictConfig:
    """Fill the ``???`` values that come from the data (number of classes, input size) in a copy of cfg."""
    check_measurable(cfg, data)
    facts = {
        "num_classes": data.num_classes,
        "embedding_size": int(cfg.head.embed_dim),
        "embed_dim": int(cfg.head.embed_dim),
    }
    shape = data.input_shape
    facts["in_features"] = int(np.prod(shape))
    facts["in_chans"] = int(shape[0]) if len(shape) == 3 else 1
    cfg = cfg.copy()

    def fill(node, path):
        for key in list(node.keys()):
            where = f"{path}.{key}" if path else str(key)
            if OmegaConf.is_missing(node, key):
                if key not in facts:
                    raise ConfigError(f"{where} is not set (???); set it on the command line, e.g. {where}=...")
                with open_dict(node):
                    node[key] = facts[key]
            elif isinstance(node[key], DictConfig):
                fill(node[key], where)

    fill(cfg, "")
    return cfg
