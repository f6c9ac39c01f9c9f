"""The run's config: checked before anything is built, completed from the data once it is loaded, and
instantiated (``instantiate``: Hydra's, re-raising the harness's one-line errors).

Each rule lives here once. A failure is a :class:`~harness.errors.ConfigError`: one line naming the fix.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from hydra.errors import InstantiationException
from hydra.utils import instantiate as hydra_instantiate
from omegaconf import DictConfig, OmegaConf, open_dict

from harness.errors import ConfigError, HarnessError
from harness.runtime import check_gpu_knobs

SELECTION_METRICS = ("map@r", "r_precision", "nmi")
SELECTION_MODES = ("max", "min")
SELECTION_SPLITS = ("val", "test")  # test: only under protocol=authors, recorded as selection: test (optimistic)
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
    check_gpu_knobs(cfg)
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
    check_protocol(cfg)
    check_processes(cfg)
    mode = cfg.trainer.get("grad_clip_mode", "norm")
    if mode not in GRAD_CLIP_MODES:
        raise ConfigError(f"trainer.grad_clip_mode={mode} is unknown; use one of {', '.join(GRAD_CLIP_MODES)}")
    if cfg.eval.get("pictures", "auto") not in ("auto", True, False):
        raise ConfigError(f"eval.pictures={cfg.eval.pictures} must be auto (image datasets), true or false")
    if cfg.eval.get("picture_map", "umap") not in ("umap", "pca"):
        raise ConfigError(f"eval.picture_map={cfg.eval.picture_map} must be umap or pca")
    from harness.config import validation  # the rules beyond one value's type and range; they build on this module

    validation.check_weights(cfg)
    validation.check_parts(cfg)
    validation.check_not_nan(cfg)  # after the checks above, whose lines name an example value
    validation.settle_amp(cfg)
    if here:
        validation.check_device_here(cfg)


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
    """What picks the epoch: a validation metric (its record key, e.g. ``val/map@r``) and max or min. Under the
    authors' protocol (``selection.split=test``, conf/protocol/authors.yaml) the key is a test metric
    (``test/recall@1``): the papers' optimistic selection, recorded as such and marked in every table."""

    key: str
    mode: str

    def better(self, value: float, best: float | None) -> bool:
        return best is None or (value > best if self.mode == "max" else value < best)

    @property
    def metric(self) -> str:
        return self.key.split("/", 1)[1]

    @property
    def split(self) -> str:
        """The split the epoch is chosen on: val (the class-disjoint validation split) or test (optimistic)."""
        return self.key.split("/", 1)[0]

    @property
    def label(self) -> str:
        """What the record says about it (``selection``): validation, or test (optimistic)."""
        return "test (optimistic)" if self.split == "test" else "validation"

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
    split = cfg.selection.get("split", "val")
    if split not in SELECTION_SPLITS:
        raise ConfigError(
            f"selection.split={split} must be val (the class-disjoint validation split) or test (the authors' "
            f"optimistic protocol: protocol=authors)"
        )
    return Selection(key=f"{split}/{metric}", mode=str(cfg.selection.mode))


PROTOCOLS = ("clean", "authors", "reality_check")  # conf/protocol/; clean sets nothing


def check_protocol(cfg: DictConfig) -> None:
    """The protocol's own keys, and what it sets left alone; an arm the experiment does not release."""
    protocol = cfg.get("protocol") or {}
    name = protocol.get("name", "clean")
    if name not in PROTOCOLS:
        raise ConfigError(f"protocol.name={name} is unknown; use protocol=clean, authors or reality_check")
    if name == "reality_check":
        folds = integer(protocol.get("folds"), "protocol.folds", 2, example=4)
        fold = integer(protocol.get("fold"), "protocol.fold", 0, example=0)
        if fold >= folds:
            raise ConfigError(f"protocol.fold={fold} must be below protocol.folds={folds}, e.g. protocol.fold=0")
        spec = OmegaConf.select(cfg, "dataset.val_classes", default=None)
        if spec != f"fold {fold} of {folds}":
            raise ConfigError(
                f"protocol=reality_check validates on fold {fold} of {folds}, but dataset.val_classes={spec}; drop "
                f"that override (the protocol sets it)"
            )
    if isinstance(cfg.get("published"), str):  # conf/arm/released_baseline.yaml's line: no arm file replaced it
        raise ConfigError(str(cfg.published))


def check_embed_dim(embed_dim) -> int:
    return integer(embed_dim, "head.embed_dim", 1, example=128)


def check_measurable(cfg: DictConfig, data) -> None:
    """The epoch is selected by a metric the validation split can measure: Recall@K needs K items to retrieve among
    (a Recall@K the test split cannot measure is left out of the results, with one line, never reported as 1.0)."""
    metric = str(cfg.selection.metric)
    val, test = getattr(data, "val", None), getattr(data, "test", None)  # (the digest's facts carry neither)
    splits = {"validation": val, "test": test if cfg.eval.get("test_every_epoch") else None}
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
    """Fill the ``???`` values that come from the data (number of classes, input size) in a copy of cfg; a value
    set by hand where the data decides must agree with it (harness.rundir.identity.DATA_FACTS)."""
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
            elif key in facts and where != "head.embed_dim" and node[key] != facts[key]:
                # the run's identity hashes these as ??? (the data decides them): a value set by hand must agree
                raise ConfigError(
                    f"{where}={node[key]} disagrees with the data and head ({facts[key]}); leave it ??? in the "
                    f"config (filled in at start-up), or set head.embed_dim for the embedding size"
                )

    fill(cfg, "")
    return cfg


def instantiate(node, *args, **kwargs):
    """hydra.utils.instantiate, re-raising our own one-line errors instead of Hydra's wrapped traceback."""
    try:
        return hydra_instantiate(node, *args, **kwargs)
    except InstantiationException as err:
        cause = err.__cause__
        while cause is not None and not isinstance(cause, HarnessError):
            cause = cause.__cause__
        if cause is not None:
            raise cause from None
        raise
