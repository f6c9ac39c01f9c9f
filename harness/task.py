"""One run, top to bottom: ``run(cfg) -> record``.

    validate the config; find the run directory (skip a finished run, resume an unfinished one)
    seed; build data, model, base loss, regularizers, optimizer, scheduler, sampler
    for each epoch: train_one_epoch; evaluate the validation split; keep the best epoch; checkpoint
    reload the selected epoch; evaluate the test split; collapse diagnostics; write record.json

The test split never drives a choice: the epoch is selected on the class-disjoint validation split.
"""

from __future__ import annotations

import getpass
import json
import logging
import math
import os
import platform
import shutil
import socket
import subprocess
import sys
import time
import traceback
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch
from hydra.errors import InstantiationException
from hydra.utils import instantiate as hydra_instantiate
from omegaconf import DictConfig, OmegaConf, open_dict
from torch import nn

from harness import checkpoint as ckpt
from harness import records
from harness.data.base import ArrayDataset, InMemoryLoader, collate_batch
from harness.data.samplers import MPerClassBatchSampler
from harness.errors import ConfigError, HarnessError, RunPruned
from harness.evaluation import evaluate_embeddings
from harness.evaluation.diagnostics import collapse_diagnostics
from harness.evaluation.utilization import utilization
from harness.models import EmbeddingModel
from harness.models.backbones import accelerate
from harness.training import embed_dataset, train_one_epoch

log = logging.getLogger("harness")

SELECTION_METRICS = ("map@r", "r_precision", "nmi")
VERSIONED_PACKAGES = ("torch", "pytorch_metric_learning", "faiss", "timm", "hydra", "omegaconf", "optuna", "numpy", "FrEIA")


def run(cfg: DictConfig, on_evaluate=None) -> dict:
    """Train, select on validation, test, and record one run. ``on_evaluate(epoch, val_metrics)`` may
    raise :class:`~harness.errors.RunPruned` (the Optuna driver's pruning hook)."""
    validate_config(cfg)
    run_dir = records.run_dir_for(cfg)
    previous = records.read_record(run_dir)
    if previous and previous.get("status") == "finished":
        if not cfg.trainer.rerun:
            log.info("already finished, skipped: %s", run_dir)
            return previous
        shutil.rmtree(run_dir / "checkpoints", ignore_errors=True)  # rerun: train from scratch

    started = time.time()
    if cfg.trainer.get("num_threads"):
        torch.set_num_threads(int(cfg.trainer.num_threads))
    seed_everything(int(cfg.seed))
    device = pick_device(cfg.trainer.device)
    amp = pick_amp(cfg.trainer.amp, device)

    data = instantiate(cfg.dataset, _convert_="all")
    cfg = complete_config(cfg, data)
    model = accelerate(build_model(cfg, data).to(device), device, channels_last=cfg.trainer.get("channels_last", "auto"),
                       compile=cfg.trainer.get("compile", False), cudnn_benchmark=cfg.trainer.get("cudnn_benchmark", True))
    base_loss = instantiate(cfg.loss).to(device)
    regularizers = build_regularizers(cfg, base_loss).to(device)
    optimizer = build_optimizer(cfg, model, base_loss, regularizers)
    scheduler = instantiate(cfg.scheduler, optimizer=optimizer) if cfg.get("scheduler") else None
    sampler = MPerClassBatchSampler(data.train.labels, m=cfg.sampler.m, batch_size=cfg.sampler.batch_size,
                                    batches_per_epoch=cfg.sampler.batches_per_epoch, seed=int(cfg.seed))
    loader = build_loader(data.train, sampler, cfg, device)
    if data.val is None:
        raise ConfigError(f"dataset {data.name} has no validation split; set dataset.val_classes or dataset.val_fraction")

    # Everything is built: from here on, a failure leaves a record with status "failed", never "finished".
    with logging_to(run_dir / "run.log"):
        open_run_dir(run_dir, cfg)
        try:
            record = train_and_evaluate(cfg, run_dir, data, model, base_loss, regularizers, optimizer, scheduler,
                                        sampler, loader, device, amp, started, on_evaluate)
        except RunPruned as pruned:
            record = close_record(cfg, run_dir, data, started, device, status="pruned", extra={"pruned_epoch": pruned.epoch})
            log.info("pruned at epoch %d: %s", pruned.epoch, run_dir)
            return record
        except BaseException as exc:  # KeyboardInterrupt too: the record must not look finished
            (run_dir / "error.txt").write_text(traceback.format_exc())
            close_record(cfg, run_dir, data, started, device, status="failed",
                         extra={"error": f"{type(exc).__name__}: {exc}", "error_file": str(run_dir / "error.txt")})
            raise
    log.info("%s", format_summary(record))
    return record


# ----------------------------------------------------------------------------------------------- the loop
def train_and_evaluate(cfg, run_dir, data, model, base_loss, regularizers, optimizer, scheduler, sampler, loader,
                       device, amp, started, on_evaluate) -> dict:
    modules = {"model": model, "loss": base_loss, "regularizers": regularizers}
    metric = f"val/{cfg.selection.metric}"
    better = (lambda a, b: a > b) if cfg.selection.mode == "max" else (lambda a, b: a < b)
    state = {"epoch": 0, "best_epoch": None, "best_value": None, "best_val": {}, "elapsed": 0.0, "attempts": 0}
    scaler = torch.amp.GradScaler("cuda") if amp == "fp16" else None
    init = {}

    last = run_dir / "checkpoints" / ckpt.LAST
    if last.exists():
        saved = ckpt.load(last)
        ckpt.load_module_states(modules, saved["modules"])
        optimizer.load_state_dict(saved["optimizer"])
        if scheduler is not None and saved.get("scheduler"):
            scheduler.load_state_dict(saved["scheduler"])
        if scaler is not None and saved.get("scaler"):
            scaler.load_state_dict(saved["scaler"])
        state = json.loads(saved["state"])
        init = state.get("init", {})
        ckpt.set_rng_state(saved["rng"])
        records.truncate_epochs(run_dir, state["epoch"])
        log.info("resumed from epoch %d: %s", state["epoch"], last)
    else:
        records.truncate_epochs(run_dir, -1)
        init = {**prefixed("init/val", evaluate_split(model, data.val, cfg, device, amp)),
                **prefixed("init/test", evaluate_split(model, data.test, cfg, device, amp))}
        state["init"] = init
        records.append_epoch(run_dir, {"epoch": 0, **init})
    state["attempts"] += 1
    attempt_start = time.perf_counter()

    epochs = int(cfg.trainer.epochs)
    steps_per_epoch = len(sampler)
    for epoch in range(state["epoch"] + 1, epochs + 1):
        sampler.set_epoch(epoch)
        set_backbone_frozen(model, epoch <= int(cfg.trainer.freeze_backbone_epochs))
        row = {"epoch": epoch}
        with progress_bar(cfg, steps_per_epoch, f"epoch {epoch}/{epochs}") as bar:
            row.update(train_one_epoch(model, base_loss, regularizers, optimizer, loader, epoch=epoch, device=device,
                                       amp=amp, scaler=scaler, grad_clip=cfg.trainer.grad_clip,
                                       step0=(epoch - 1) * steps_per_epoch, progress=bar))
        row.update({f"lr/{g.get('name', i)}": g["lr"] for i, g in enumerate(optimizer.param_groups)})
        if scheduler is not None:
            scheduler.step()

        if epoch % int(cfg.trainer.eval_every) == 0 or epoch == epochs:
            t0 = time.perf_counter()
            val = prefixed("val", evaluate_split(model, data.val, cfg, device, amp, with_nmi=cfg.eval.val_nmi))
            row.update(val)
            row["time/eval_s"] = time.perf_counter() - t0
            if state["best_value"] is None or better(val[metric], state["best_value"]):
                state.update(best_epoch=epoch, best_value=val[metric], best_val=val)
                ckpt.atomic_save({"modules": ckpt.module_states(modules), "epoch": epoch},
                                 run_dir / "checkpoints" / ckpt.BEST)
            log.info("epoch %d/%d  loss %.4f  %s %.4f  (best %.4f @ %d)  [%.1fs]", epoch, epochs, row["train/loss"],
                     metric, val[metric], state["best_value"], state["best_epoch"], row["time/train_s"])
            records.append_epoch(run_dir, row)
            if on_evaluate is not None:
                on_evaluate(epoch, val)  # may raise RunPruned
        else:
            log.info("epoch %d/%d  loss %.4f  [%.1fs]", epoch, epochs, row["train/loss"], row["time/train_s"])
            records.append_epoch(run_dir, row)

        state["epoch"] = epoch
        if epoch % int(cfg.trainer.checkpoint_every) == 0 or epoch == epochs:
            state_now = dict(state, elapsed=state["elapsed"] + time.perf_counter() - attempt_start)
            ckpt.atomic_save({
                "modules": ckpt.module_states(modules), "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict() if scheduler is not None else None,
                "scaler": scaler.state_dict() if scaler is not None else None,
                "state": json.dumps(state_now), "rng": ckpt.rng_state(),
            }, last)

    # ---- the selected epoch, on the test split
    best = ckpt.load(run_dir / "checkpoints" / ckpt.BEST)
    ckpt.load_module_states(modules, best["modules"])
    test_emb, test_labels = embed_split(model, data.test, cfg, device, amp)
    val_emb, val_labels = embed_split(model, data.val, cfg, device, amp)
    result = {
        "selected_epoch": state["best_epoch"],
        **state["best_val"],
        **prefixed("test", score(test_emb, test_labels, data.test, cfg)),
        **prefixed("diag/val", collapse_diagnostics(val_emb[0], val_labels[0])),
        **prefixed("diag/test", collapse_diagnostics(test_emb[0], test_labels[0])),
        **init,
    }
    if cfg.eval.get("utilization", True):  # Metrix's measure: mean test-to-nearest-train distance (one pass over train)
        train_emb, _ = embed_dataset(model, data.train, device, int(cfg.eval.batch_size), amp, int(cfg.trainer.num_workers))
        result["test/utilization"] = utilization(test_emb[0], train_emb)
    if data.vector_inputs and cfg.eval.raw_baseline:
        result.update(prefixed("raw/val", score(*raw_inputs(data.val), data.val, cfg)))
        result.update(prefixed("raw/test", score(*raw_inputs(data.test), data.test, cfg)))
    result["train_time_s"] = state["elapsed"] + time.perf_counter() - attempt_start
    result["attempts"] = state["attempts"]
    return close_record(cfg, run_dir, data, started, device, status="finished", extra=result)


# ----------------------------------------------------------------------------------------------- building
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


def validate_config(cfg: DictConfig) -> None:
    """Cheap checks before anything is built; each failure is one line naming the fix."""
    if int(cfg.trainer.epochs) < 1:
        raise ConfigError(f"trainer.epochs={cfg.trainer.epochs} must be >= 1")
    if int(cfg.trainer.eval_every) < 1:
        raise ConfigError(f"trainer.eval_every={cfg.trainer.eval_every} must be >= 1")
    if cfg.head.embed_dim is None or int(cfg.head.embed_dim) <= 0:
        raise ConfigError(f"head.embed_dim={cfg.head.embed_dim} must be a positive integer; set e.g. head.embed_dim=128")
    m, bs = int(cfg.sampler.m), int(cfg.sampler.batch_size)
    if m < 1 or bs < 1 or bs % m:
        raise ConfigError(f"sampler.m={m} does not divide sampler.batch_size={bs}; "
                          f"use a multiple of m, e.g. sampler.batch_size={max(bs // max(m, 1), 1) * max(m, 1)}")
    if cfg.selection.metric not in SELECTION_METRICS and not str(cfg.selection.metric).startswith("recall@"):
        raise ConfigError(f"selection.metric={cfg.selection.metric} is unknown; use one of {', '.join(SELECTION_METRICS)} "
                          f"or recall@K")
    if str(cfg.selection.metric).startswith("recall@") and int(cfg.selection.metric[7:]) not in list(cfg.eval.k):
        raise ConfigError(f"selection.metric={cfg.selection.metric} is not computed; add it to eval.k={list(cfg.eval.k)}")
    if cfg.selection.metric == "nmi" and not cfg.eval.val_nmi:
        raise ConfigError("selection.metric=nmi needs eval.val_nmi=true")
    if cfg.selection.mode not in ("max", "min"):
        raise ConfigError(f"selection.mode={cfg.selection.mode} must be max or min")


def complete_config(cfg: DictConfig, data) -> DictConfig:
    """Fill the ``???`` values that come from the data (number of classes, input size) in a copy of cfg."""
    facts = {"num_classes": data.num_classes, "embedding_size": int(cfg.head.embed_dim),
             "embed_dim": int(cfg.head.embed_dim)}
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


def build_model(cfg: DictConfig, data=None) -> EmbeddingModel:
    backbone = instantiate(cfg.backbone)
    if not hasattr(backbone, "forward_features") or not hasattr(backbone, "num_features"):
        raise ConfigError(f"backbone {cfg.backbone._target_} has no forward_features / num_features; "
                          f"use a timm model or harness.models.MLP / SmallCNN")
    return EmbeddingModel(backbone, embed_dim=cfg.head.embed_dim, normalize=cfg.head.normalize, pooling=cfg.head.pooling)


def build_regularizers(cfg: DictConfig, base_loss) -> nn.ModuleDict:
    regs = nn.ModuleDict()
    for name, node in (cfg.get("regularizer") or {}).items():
        if not isinstance(node, DictConfig) or "_target_" not in node:
            raise ConfigError(f"regularizer.{name} has no _target_; select regularizers with regularizer=[a,b] "
                              f"from conf/regularizer/")
        reg = instantiate(node)
        reg.check_compatible(base_loss)
        regs[name] = reg
    return regs


def build_optimizer(cfg: DictConfig, model, base_loss, regularizers):
    """Parameter groups with their own learning-rate multipliers: backbone, head, loss, each regularizer."""
    base_lr = float(cfg.optimizer.lr)
    groups = []
    for g in model.param_groups():
        g["lr_mult"] = float(cfg.lr_mult.get(g["name"], 1.0))
        groups.append(g)
    groups += base_loss.param_groups()
    for name, reg in regularizers.items():
        for g in reg.param_groups():
            g["name"] = f"{name}.{g['name']}" if g["name"] != name else name
            groups.append(g)
    for g in groups:
        g["lr"] = base_lr * g.pop("lr_mult")
    return instantiate(cfg.optimizer, _partial_=True)([g for g in groups if g["params"]])


def build_loader(dataset, sampler, cfg, device):
    workers = int(cfg.trainer.num_workers)
    if workers == 0 and isinstance(dataset, ArrayDataset):  # in memory: no DataLoader machinery per step
        return InMemoryLoader(dataset, sampler)
    generator = torch.Generator().manual_seed(int(cfg.seed))
    return torch.utils.data.DataLoader(
        dataset, batch_sampler=sampler, num_workers=workers, collate_fn=collate_batch,
        pin_memory=device.type == "cuda", persistent_workers=workers > 0, generator=generator,
        worker_init_fn=seed_worker if workers > 0 else None,
    )


def set_backbone_frozen(model, frozen: bool) -> None:
    for p in model.backbone.parameters():
        p.requires_grad_(not frozen)


# ----------------------------------------------------------------------------------------------- evaluation
def embed_split(model, evalset, cfg, device, amp):
    """(query, gallery) embeddings and labels of an evaluation split (gallery None when leave-one-out)."""
    bs, workers = int(cfg.eval.batch_size), int(cfg.trainer.num_workers)
    q = embed_dataset(model, evalset.query, device, bs, amp, workers)
    g = embed_dataset(model, evalset.gallery, device, bs, amp, workers) if evalset.gallery is not None else (None, None)
    return (q[0], g[0]), (q[1], g[1])


def score(embeddings, labels, evalset, cfg) -> dict:
    (q, g), (ql, gl) = embeddings, labels
    return evaluate_embeddings(q, ql, g, gl, k_list=list(cfg.eval.k), metric=cfg.eval.metric,
                               with_nmi=cfg.eval.nmi, seed=int(cfg.seed))


def evaluate_split(model, evalset, cfg, device, amp, with_nmi: bool | None = None) -> dict:
    emb, labels = embed_split(model, evalset, cfg, device, amp)
    (q, g), (ql, gl) = emb, labels
    nmi_on = cfg.eval.nmi if with_nmi is None else (with_nmi and cfg.eval.nmi)
    return evaluate_embeddings(q, ql, g, gl, k_list=list(cfg.eval.k), metric=cfg.eval.metric, with_nmi=nmi_on,
                               seed=int(cfg.seed))


def raw_inputs(evalset):
    """The raw inputs of a vector dataset, L2-normalised: the baseline a trained embedding must beat."""
    def flat(ds):
        if ds is None:
            return None
        x = ds.inputs.flatten(1).numpy().astype(np.float32)
        return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
    gl = evalset.gallery.labels if evalset.gallery is not None else None
    return (flat(evalset.query), flat(evalset.gallery)), (evalset.query.labels, gl)


def prefixed(prefix: str, metrics: dict) -> dict:
    return {f"{prefix}/{k}": v for k, v in metrics.items()}


# ----------------------------------------------------------------------------------------------- run directory and record
def open_run_dir(run_dir: Path, cfg: DictConfig) -> None:
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / records.RECORD).unlink(missing_ok=True)  # an old failed/pruned record: this attempt replaces it
    (run_dir / "error.txt").unlink(missing_ok=True)
    resolved = records.redact(OmegaConf.to_container(cfg, resolve=True))
    records.atomic_write_text(run_dir / "config.yaml", OmegaConf.to_yaml(OmegaConf.create(resolved)))
    records.atomic_write_text(run_dir / "overrides.txt", "\n".join(task_overrides()) + "\n")


def close_record(cfg, run_dir: Path, data, started: float, device, status: str, extra: dict) -> dict:
    container = records.redact(OmegaConf.to_container(cfg, resolve=True))
    record = {
        "run_dir": str(run_dir),
        "name": run_dir.name,
        "dataset": records.group_choice(cfg, "dataset"),
        "backbone": records.group_choice(cfg, "backbone"),
        "loss": records.group_choice(cfg, "loss"),
        "regularizer": records.group_choice(cfg, "regularizer"),
        "seed": int(cfg.seed),
        "config_hash": records.config_hash(cfg),
        "selection/metric": f"val/{cfg.selection.metric}",
        "epochs": int(cfg.trainer.epochs),
        **extra,
        **{f"config/{k}": v for k, v in records.flatten(container).items()},
        "overrides": records.redact(task_overrides()),
        **git_state(),
        **{f"versions/{k}": v for k, v in package_versions().items()},
        "host": socket.gethostname(),
        "device": device_name(device),
        "wall_time_s": time.time() - started,
        "finished_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "status": status,  # written last
    }
    records.atomic_write_json(run_dir / records.RECORD, record)
    return record


def task_overrides() -> list:
    try:
        from hydra.core.hydra_config import HydraConfig

        return list(HydraConfig.get().overrides.task)
    except Exception:
        return []


def git_state() -> dict:
    root = Path(__file__).resolve().parents[1]
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, timeout=10)
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root,
                               capture_output=True, text=True, timeout=10)
        if commit.returncode != 0:
            return {"git/commit": None, "git/dirty": None}
        return {"git/commit": commit.stdout.strip(), "git/dirty": bool(dirty.stdout.strip())}
    except (OSError, subprocess.TimeoutExpired):
        return {"git/commit": None, "git/dirty": None}


def package_versions() -> dict:
    from importlib.metadata import PackageNotFoundError, version

    names = {"torch": "torch", "pytorch_metric_learning": "pytorch-metric-learning", "faiss": "faiss-cpu",
             "timm": "timm", "hydra": "hydra-core", "omegaconf": "omegaconf", "optuna": "optuna",
             "numpy": "numpy", "FrEIA": "FrEIA"}
    out = {}
    for key, dist in names.items():
        try:
            out[key] = version(dist)
        except PackageNotFoundError:
            if key == "faiss":
                try:
                    out[key] = version("faiss-gpu-cu12")
                except PackageNotFoundError:
                    out[key] = None
            else:
                out[key] = None
    return out


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"cpu ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"


# ----------------------------------------------------------------------------------------------- environment
def seed_everything(seed: int) -> None:
    import random

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    torch.cuda.manual_seed_all(seed)


def seed_worker(worker_id: int) -> None:
    import random

    s = torch.initial_seed() % 2**32
    np.random.seed(s)
    random.seed(s)


def pick_device(spec: str) -> torch.device:
    if spec == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if spec.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"trainer.device={spec} but no CUDA device is available; use trainer.device=auto or cpu")
    return torch.device(spec)


def pick_amp(spec, device: torch.device) -> str:
    if spec in (False, None, "off") or device.type != "cuda":
        return "off"
    if spec in ("auto", True):
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    if spec not in ("bf16", "fp16"):
        raise ConfigError(f"trainer.amp={spec} must be auto, bf16, fp16 or off")
    return spec


@contextmanager
def progress_bar(cfg, total: int, desc: str):
    """A tqdm bar over an epoch's steps on an interactive terminal (epoch lines are logged either way)."""
    if not cfg.trainer.progress or total < 20 or not sys.stderr.isatty():
        yield None
        return
    from tqdm import tqdm

    with tqdm(total=total, desc=desc, leave=False, dynamic_ncols=True) as bar:
        yield bar


@contextmanager
def logging_to(path: Path):
    path.parent.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(path)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.addHandler(handler)
    if root.level > logging.INFO or root.level == logging.NOTSET:
        root.setLevel(logging.INFO)
    try:
        yield
    finally:
        root.removeHandler(handler)
        handler.close()


def format_summary(record: dict) -> str:
    """The result at a glance: trained test metrics beside the untrained network and raw inputs."""
    keys = ["recall@1", "recall@2", "recall@4", "recall@8", "map@r", "r_precision", "nmi"]
    keys = [k for k in keys if f"test/{k}" in record]
    rows = [("raw inputs", "raw/test"), ("untrained net", "init/test"), ("trained (selected)", "test")]
    head = f"{'test split':<20}" + "".join(f"{k:>12}" for k in keys)
    lines = [
        f"{record['dataset']} | loss={record['loss']} | regularizer={record['regularizer']} | seed={record['seed']} | "
        f"selected epoch {record['selected_epoch']} by {record['selection/metric']}={record.get(record['selection/metric'], float('nan')):.4f}",
        head,
    ]
    for label, prefix in rows:
        if f"{prefix}/{keys[0]}" in record:
            lines.append(f"{label:<20}" + "".join(f"{record[f'{prefix}/{k}']:>12.4f}" for k in keys))
    lines.append(f"record: {record['run_dir']}/record.json")
    return "\n".join(lines)
