"""Build once: ``build(cfg, device) -> Parts``, the only place that instantiates a run's parts from its config.

    data         instantiate(cfg.dataset)            train / class-disjoint val / test splits
    augment      instantiate(cfg.dataset.augment)    train-time batch augmentation on the device (or None)
    model        backbone + pooling + embedding head (harness.models.EmbeddingModel)
    loss         the base loss (a pytorch-metric-learning loss in harness.losses.MetricLoss; may own proxies)
    regularizers one module per entry of cfg.regularizer, each checked against the base loss
    optimizer    parameter groups: backbone, head, loss parameters, each regularizer's, with lr multipliers
    scheduler, sampler (batches a pure function of seed and epoch), loader, evaluator
    parallel     the model as the training step uses it: alone, or across the processes of ``world``
                 (harness.distributed: global BatchNorm, DDP, each process loading its share of every batch)

The training loop (harness.training.fit), the benchmarks and reloading a run all build through here.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from omegaconf import DictConfig, open_dict
from torch import nn

from harness.config import complete_config, instantiate, selection_of
from harness.data.base import ArrayDataset, DMLData, InMemoryLoader, collate_batch, data_device
from harness.distributed import ShardedBatchSampler, World
from harness.distributed.parallel import DataParallel
from harness.errors import ConfigError
from harness.evaluation.evaluator import Evaluator
from harness.models import EmbeddingModel
from harness.models.backbones import accelerate, is_channels_last
from harness.runtime import (
    note_settings,
    pick_amp,
    pick_device,
    pick_matmul_precision,
    seed_everything,
    seed_worker,
)


@dataclass
class Parts:
    """Everything a run trains and evaluates with, built from its config."""

    cfg: DictConfig  # completed: the ``???`` values the data decides are filled in
    data: DMLData
    model: EmbeddingModel
    loss: nn.Module
    regularizers: nn.ModuleDict
    optimizer: torch.optim.Optimizer
    scheduler: object | None
    sampler: torch.utils.data.Sampler  # a batch sampler with set_epoch: batches are a pure function of (seed, epoch)
    loader: object
    evaluator: Evaluator
    device: torch.device
    amp: str  # off | bf16 | fp16
    scaler: torch.amp.GradScaler  # fp16's gradient scaler (disabled otherwise: a pass-through)
    world: World = field(default_factory=World)  # the processes of this run (one by default)
    parallel: DataParallel | None = None  # the training step's model across them
    augment: nn.Module | None = None  # dataset.augment: augment(x, seed=, epoch=, step=, rank=) on the device

    @property
    def modules(self) -> dict:
        """What a checkpoint holds the weights of."""
        return {"model": self.model, "loss": self.loss, "regularizers": self.regularizers}


def build(cfg: DictConfig, device: torch.device | None = None, world: World | None = None) -> Parts:
    """Seed, then build every part of the run (the seed is set first, so the same config builds the same init:
    on every process of a data-parallel ``world`` too)."""
    note_settings()  # nothing applied yet: a build that fails records no earlier run's settings
    seed = int(cfg.seed)
    world = world or World()
    device = world.device if world.distributed else device or pick_device(cfg.trainer.device)
    amp = pick_amp(cfg.trainer.amp, device)
    precision = pick_matmul_precision(cfg.trainer.get("float32_matmul_precision", "auto"), device)
    torch.set_float32_matmul_precision(precision)  # process-wide, like the torch thread count
    data, augment, cfg, model = build_data_and_model(cfg, device)
    model = accelerate(
        model,
        device,
        channels_last=cfg.trainer.get("channels_last", "auto"),
        compile=cfg.trainer.get("compile", False),
        cudnn_benchmark=cfg.trainer.get("cudnn_benchmark", True),
    )
    loss = instantiate(cfg.loss).to(device)
    regularizers = build_regularizers(cfg.get("regularizer"), loss).to(device)
    optimizer = build_optimizer(cfg.optimizer, model, loss, regularizers, cfg.lr_mult)
    scheduler = instantiate(cfg.scheduler, optimizer=optimizer) if cfg.get("scheduler") else None
    ids = getattr(data.train, "class_ids", None)  # the same batches by the dataset's own class ids: errors name them
    sampler = instantiate(cfg.sampler, labels=data.train.labels if ids is None else ids[data.train.labels], seed=seed)
    if world.distributed:  # the 1-process sampler draws the global batch; this process loads its share
        sampler = ShardedBatchSampler(sampler, world.rank, world.world_size)
    parallel = DataParallel(model, [*loss.parameters(), *regularizers.parameters()], world)
    workers = int(cfg.trainer.num_workers)
    on_device = data_device(getattr(data, "on_device", "auto"), device)
    prefetch = cfg.trainer.get("prefetch_factor", 2)
    decode = bool(cfg.trainer.get("decode_on_device", False))
    loader = build_loader(
        data.train, sampler, workers, seed, device, prefetch_factor=prefetch, on_device=on_device, decode_on=decode
    )
    note_settings(
        data_on_device=on_device is not None and isinstance(loader, InMemoryLoader),
        channels_last=is_channels_last(model),
        compile="backbone+head" if cfg.trainer.get("compile", False) else "off",
        prefetch_factor=int(prefetch) if workers > 0 else None,
        decode_on_device=decode,
    )
    evaluator = build_evaluator(cfg, device, amp, world)
    scaler = torch.amp.GradScaler("cuda", enabled=amp == "fp16")  # a pass-through unless fp16
    return Parts(
        cfg,
        data,
        parallel.model,
        loss,
        regularizers,
        optimizer,
        scheduler,
        sampler,
        loader,
        evaluator,
        device,
        amp,
        scaler,
        world,
        parallel,
        augment.to(device) if augment is not None else None,
    )


def build_data_and_model(cfg: DictConfig, device: torch.device) -> tuple:
    """(data, augment, the completed cfg, the epoch-0 network on ``device``), seeded first: the same config
    builds the same network (a run's every process; ``python -m harness.inspect``'s untrained network)."""
    seed_everything(int(cfg.seed))
    data, augment = build_data(cfg.dataset)
    check_selection_split(data, selection_of(cfg).split)
    cfg = complete_config(cfg, data)
    return data, augment, cfg, build_model(cfg).to(device)


def build_evaluator(cfg: DictConfig, device: torch.device, amp: str = "off", world: World | None = None) -> Evaluator:
    return Evaluator(
        k=tuple(cfg.eval.k),
        metric=cfg.eval.metric,
        nmi=cfg.eval.nmi,
        val_nmi=cfg.eval.val_nmi,
        seed=int(cfg.seed),
        batch_size=int(cfg.eval.batch_size),
        num_workers=int(cfg.trainer.num_workers),
        device=device,
        amp=amp,
        world=world or World(),
    )


def check_selection_split(data: DMLData, split: str) -> None:
    """Validation selection needs a validation split; the authors' protocol (selection on test) trains on every
    training class, so it must have none."""
    if split == "val" and data.val is None:
        raise ConfigError(
            f"dataset {data.name} has no validation split; set dataset.val_classes or dataset.val_fraction "
            f"(or protocol=authors: every training class trained on, the epoch chosen on test, marked optimistic)"
        )
    if split == "test" and data.val is not None:
        raise ConfigError(
            f"selection.split=test (protocol=authors) trains on every training class, but dataset {data.name} "
            f"still holds validation classes out; set dataset.val_classes=null dataset.val_fraction=0"
        )


def build_data(node: DictConfig) -> tuple[DMLData, nn.Module | None]:
    """The dataset's splits, and its train-time batch augmentation from ``dataset.augment`` (absent or null: None).

    The augmentation is not the loader's business: it is built here and applied by the training loop to each
    batch on the device (harness.data.augment.BatchAugment), so it needs batches of images (B x C x H x W)."""
    node = node.copy()
    with open_dict(node):
        augment_node = node.pop("augment", None)
    data = instantiate(node, _convert_="all")
    if augment_node is None:
        return data, None
    if len(data.input_shape) != 3:
        raise ConfigError(
            f"dataset.augment works on image batches, but {data.name} gives inputs of shape "
            f"{data.input_shape}; set dataset.augment=null"
        )
    return data, instantiate(augment_node, _convert_="all")


def build_model(cfg: DictConfig) -> EmbeddingModel:
    """Backbone, pooling and embedding head from a completed config (also how a saved run is rebuilt)."""
    backbone = instantiate(cfg.backbone)
    if not hasattr(backbone, "forward_features") or not hasattr(backbone, "num_features"):
        raise ConfigError(
            f"backbone {cfg.backbone._target_} has no forward_features / num_features; "
            f"use a timm model or harness.models.MLP / SmallCNN"
        )
    return EmbeddingModel(
        backbone,
        embed_dim=cfg.head.embed_dim,
        normalize=cfg.head.normalize,
        pooling=cfg.head.pooling,
        init=cfg.head.get("init", "default"),
    )


def build_regularizers(nodes: DictConfig | None, base_loss) -> nn.ModuleDict:
    regs = nn.ModuleDict()
    for name, node in (nodes or {}).items():
        if not isinstance(node, DictConfig) or "_target_" not in node:
            raise ConfigError(
                f"regularizer.{name} has no _target_; select regularizers with regularizer=[a,b] from conf/regularizer/"
            )
        reg = instantiate(node)
        reg.check_compatible(base_loss)
        regs[name] = reg
    return regs


def build_optimizer(node: DictConfig, model, base_loss, regularizers, lr_mult) -> torch.optim.Optimizer:
    """Parameter groups with their own learning-rate multipliers: backbone, head, loss, each regularizer. A group
    that carries ``weight_decay`` (the loss's or a regularizer's ``weight_decay`` option) keeps it; the others get
    ``optimizer.weight_decay``: coupled L2 with torch.optim.Adam / SGD, decoupled with AdamW."""
    base_lr = float(node.lr)
    groups = []
    for g in model.param_groups():
        g["lr_mult"] = float(lr_mult.get(g["name"], 1.0))
        groups.append(g)
    groups += base_loss.param_groups()
    for name, reg in regularizers.items():
        for g in reg.param_groups():
            g["name"] = f"{name}.{g['name']}" if g["name"] != name else name
            groups.append(g)
    for g in groups:
        g["lr"] = base_lr * g.pop("lr_mult")
    return instantiate(node, _partial_=True)([g for g in groups if g["params"]])


def build_loader(
    dataset, sampler, workers: int, seed: int, device: torch.device, prefetch_factor=2, on_device=None, decode_on=False
):
    """In memory: the split gathered batch by batch (on ``on_device`` when given: dataset.on_device); else a
    DataLoader with ``workers`` processes reading ``prefetch_factor`` batches ahead, into pinned memory on CUDA
    (the step then copies them with ``non_blocking``). ``decode_on`` (trainer.decode_on_device): the workers read
    the files' bytes and each batch is decoded and augmented on ``device`` (harness.data.device_decode)."""
    if workers == 0 and isinstance(dataset, ArrayDataset):  # in memory: no DataLoader machinery per step
        return InMemoryLoader(dataset, sampler, device=on_device)
    if decode_on:
        # lazy: torchvision.io only where it is used (it adds a second to every run's start-up)
        from harness.data.device_decode import DeviceDecodingLoader, EncodedImages, collate_encoded
    loader = torch.utils.data.DataLoader(
        EncodedImages(dataset) if decode_on else dataset,
        batch_sampler=sampler,
        num_workers=workers,
        collate_fn=collate_encoded if decode_on else collate_batch,
        pin_memory=device.type == "cuda",
        persistent_workers=workers > 0,
        prefetch_factor=int(prefetch_factor) if workers > 0 else None,
        generator=torch.Generator().manual_seed(seed),
        worker_init_fn=seed_worker if workers > 0 else None,
    )
    return DeviceDecodingLoader(loader, dataset.transform, device) if decode_on else loader
