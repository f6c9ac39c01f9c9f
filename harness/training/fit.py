"""The loop: train, validate, keep the best epoch, checkpoint; then test the selected epoch.

    fit(parts, plan, attempt, on_evaluate) -> Fitted: the record's results (and the test embeddings)

reads top to bottom. The state that survives a restart is a :class:`LoopState`, saved with the weights,
optimizer, scheduler, scaler and RNG states in ``checkpoints/last.pt`` every ``checkpoint_every`` epochs;
a run that finds one resumes there and produces the numbers of an uninterrupted run. The test split never
drives a choice: the epoch is selected on the class-disjoint validation split, except under the authors'
protocol (``protocol=authors``: every training class trained on, the epoch chosen on test), which the record
says (``selection: test (optimistic)``) and every table marks.

``eval.test_every_epoch`` adds the papers' view beside it: the test split is scored at every evaluated epoch
too (``test/*`` in epochs.jsonl) and the best epoch by the selection metric ON TEST is recorded as
``test_best/<metric>``, ``test_best/epoch`` and ``test_best/optimistic: true``, the optimistic number the
seeds' papers report. It changes nothing else: the selected epoch and ``test/*`` still come from validation.

In a data-parallel run every process runs this loop on its share of each batch (``parts.parallel``); the
evaluator gives every process rank 0's numbers, so all take the same decisions; rank 0 alone writes the
epochs, checkpoints and log, and each process's random state is saved and restored as its own.
"""

from __future__ import annotations

import io
import json
import logging
import sys
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from omegaconf import DictConfig
from tqdm import tqdm

from harness.config import Selection, selection_of
from harness.distributed import all_gather_object, barrier, broadcast_object
from harness.evaluation import PerQuery
from harness.evaluation.evaluator import Embedded
from harness.provenance.numerics import numerics
from harness.rundir import checkpoint as ckpt
from harness.rundir.attempt import Attempt
from harness.rundir.salvage import load_checkpoint_or_set_aside
from harness.training.build import Parts
from harness.training.reselect import selected_states
from harness.training.step import Step, train_one_epoch

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Plan:
    """How the loop runs: read from the config once."""

    epochs: int
    selection: Selection
    eval_every: int = 1
    checkpoint_every: int = 1
    freeze_backbone_epochs: int = 0
    grad_clip: float | None = None
    grad_clip_mode: str = "norm"  # norm | value
    test_every_epoch: bool = False  # also score test every evaluated epoch: test_best/* (the papers' optimistic view)
    utilization: bool = True  # Metrix's test/utilization (one more pass over the training split)
    raw_baseline: bool = True  # vector datasets: score the raw inputs too
    progress: bool = True  # a progress bar over long epochs on a terminal

    @classmethod
    def from_config(cls, cfg: DictConfig) -> Plan:
        t = cfg.trainer
        return cls(
            epochs=int(t.epochs),
            selection=selection_of(cfg),
            eval_every=int(t.eval_every),
            checkpoint_every=int(t.checkpoint_every),
            freeze_backbone_epochs=int(t.freeze_backbone_epochs),
            grad_clip=t.grad_clip,
            grad_clip_mode=str(t.get("grad_clip_mode", "norm")),
            test_every_epoch=bool(cfg.eval.get("test_every_epoch", False)),
            utilization=bool(cfg.eval.get("utilization", True)),
            raw_baseline=bool(cfg.eval.raw_baseline),
            progress=bool(t.progress),
        )


@dataclass
class LoopState:
    """What the loop knows between epochs; saved in last.pt (as JSON) and restored on resume."""

    epoch: int = 0  # the last finished epoch
    best_epoch: int | None = None
    best_value: float | None = None
    best_val: dict = field(default_factory=dict)
    init: dict = field(default_factory=dict)  # the untrained network's metrics (init/val/*, init/test/*)
    best_test_epoch: int | None = None  # test_every_epoch: the best epoch by the selection metric on test
    best_test_value: float | None = None
    best_test: dict = field(default_factory=dict)
    elapsed: float = 0.0  # training seconds of earlier attempts
    cpu_elapsed: float = 0.0  # their CPU seconds (process time, all threads)
    attempts: int = 0


@dataclass
class Fitted:
    """What :func:`fit` gives back: the record's results, and the test split as the selected network and the
    untrained one embedded it (for the run's pictures, which so embed nothing again). ``init_test`` is None
    when the run resumed: the untrained network was embedded by an earlier attempt."""

    results: dict
    test: Embedded
    init_test: Embedded | None = None
    per_query: PerQuery | None = None  # the test queries' AP@R and hit@1 (harness.evaluation.per_query's file)


def fit(parts: Parts, plan: Plan, attempt: Attempt, on_evaluate=None) -> Fitted:
    """Train ``parts`` by ``plan`` in ``attempt`` (its epoch log and checkpoints); return the record's results.
    ``on_evaluate(epoch, val_metrics)`` may raise :class:`~harness.errors.RunPruned`."""
    model, evaluator, data, world = parts.model, parts.evaluator, parts.data, parts.world
    last, best = attempt.checkpoints / ckpt.LAST, attempt.checkpoints / ckpt.BEST
    step = Step.of(parts, plan)
    write_row = attempt.write_epoch

    # rank 0 checks last.pt (a damaged one is moved aside: start again); the others then read the same file
    saved = load_checkpoint_or_set_aside(last, ckpt.load) if world.is_main else None
    resumes = broadcast_object(saved is not None, world)
    init_test = None
    if resumes:
        state = resume(parts, saved if saved is not None else ckpt.load(last))
        attempt.truncate_epochs(state.epoch)
        log.info("resumed from epoch %d: %s", state.epoch, last)
    else:
        state = LoopState()
        attempt.truncate_epochs(-1)
        init_test = evaluator.embed(model, data.test)
        state.init = {
            **(prefixed("init/val", evaluator.evaluate(model, data.val)) if data.val is not None else {}),
            **prefixed("init/test", evaluator.score(init_test)),
        }
        write_row({"epoch": 0, **state.init})
    state.attempts += 1
    attempt_start, attempt_cpu = time.perf_counter(), time.process_time()

    steps_per_epoch = len(parts.sampler)
    split = plan.selection.split  # val; test only under protocol=authors (the optimistic selection, so recorded)
    chosen_on = data.val if split == "val" else data.test
    for epoch in range(state.epoch + 1, plan.epochs + 1):
        parts.sampler.set_epoch(epoch)
        set_backbone_frozen(model, epoch <= plan.freeze_backbone_epochs)
        parts.parallel.refresh()  # DDP over the parameters that train this epoch
        row = {"epoch": epoch}
        with progress_bar(plan.progress and world.is_main, steps_per_epoch, f"epoch {epoch}/{plan.epochs}") as bar:
            row.update(train_one_epoch(step, parts.loader, epoch, (epoch - 1) * steps_per_epoch, bar))
        parts.parallel.check_in_sync(epoch)
        row.update({f"lr/{g.get('name', i)}": g["lr"] for i, g in enumerate(parts.optimizer.param_groups)})
        if parts.scheduler is not None:
            parts.scheduler.step()

        if epoch % plan.eval_every == 0 or epoch == plan.epochs:
            t0 = time.perf_counter()
            val = prefixed(split, evaluator.validate(model, chosen_on))
            row.update(val)
            row["time/eval_s"] = time.perf_counter() - t0
            value = val[plan.selection.key]
            if plan.selection.better(value, state.best_value):  # the same value on every rank (rank 0's)
                state.best_epoch, state.best_value, state.best_val = epoch, value, val
                if world.is_main:
                    ckpt.atomic_save({"modules": ckpt.module_states(parts.modules), "epoch": epoch}, best)
            if plan.test_every_epoch and split == "val":  # the papers' view beside the selection, never used by it
                test = prefixed("test", evaluator.validate(model, data.test))
                row.update(test)
                track_best_test(state, plan, epoch, test)
            log.info(
                "epoch %d/%d  loss %.4f  %s %.4f  (best %.4f @ %d)  [%.1fs]",
                epoch,
                plan.epochs,
                row["train/loss"],
                plan.selection.key,
                value,
                state.best_value,
                state.best_epoch,
                row["time/train_s"],
            )
            write_row(row)
            if on_evaluate is not None:
                on_evaluate(epoch, val)  # may raise RunPruned
        else:
            log.info("epoch %d/%d  loss %.4f  [%.1fs]", epoch, plan.epochs, row["train/loss"], row["time/train_s"])
            write_row(row)

        state.epoch = epoch
        if epoch % plan.checkpoint_every == 0 or epoch == plan.epochs:
            save_last(
                parts,
                state,
                state.elapsed + time.perf_counter() - attempt_start,
                state.cpu_elapsed + time.process_time() - attempt_cpu,
                last,
            )

    # ---- the selected epoch, on the test split
    barrier(world)  # rank 0 has written best.pt
    ckpt.load_module_states(parts.modules, selected_states(parts, plan, attempt, state))  # a damaged best.pt: rebuilt
    test = evaluator.embed(model, data.test)
    val = evaluator.embed(model, data.val) if data.val is not None else None
    test_metrics, per_query = evaluator.score_queries(test)
    result = {
        "selected_epoch": state.best_epoch,
        "selection": plan.selection.label,  # validation | test (optimistic): tables never mix the two
        **state.best_val,
        **prefixed("test", test_metrics),
        **(prefixed("diag/val", evaluator.diagnostics(val)) if val is not None else {}),
        **prefixed("diag/test", evaluator.diagnostics(test)),
        **state.init,
    }
    if plan.test_every_epoch and state.best_test_epoch is not None:
        result.update({f"test_best/{k.removeprefix('test/')}": v for k, v in state.best_test.items()})
        result.update({"test_best/epoch": state.best_test_epoch, "test_best/optimistic": True})
    if plan.utilization:
        result["test/utilization"] = evaluator.utilization(model, data.train, test)
    if data.vector_inputs and plan.raw_baseline:
        if data.val is not None:
            result.update(prefixed("raw/val", evaluator.score(evaluator.raw(data.val))))
        result.update(prefixed("raw/test", evaluator.score(evaluator.raw(data.test))))
    result["train_time_s"] = state.elapsed + time.perf_counter() - attempt_start
    # CPU seconds of the same span (process time, every thread): comparable across loads of a shared machine
    result["train_cpu_s"] = state.cpu_elapsed + time.process_time() - attempt_cpu
    result["attempts"] = state.attempts
    result.update(numerics(parts.device, parts.amp))  # the code and arithmetic the numbers came from
    return Fitted(result, test, init_test, per_query)


def track_best_test(state: LoopState, plan: Plan, epoch: int, test: dict) -> None:
    """Keep the epoch that scores best on test by the selection metric (as the papers pick theirs)."""
    value = test[f"test/{plan.selection.metric}"]
    if plan.selection.better(value, state.best_test_value):
        state.best_test_epoch, state.best_test_value, state.best_test = epoch, value, test


def save_last(parts: Parts, state: LoopState, elapsed: float, cpu_elapsed: float, path: Path) -> None:
    """last.pt, written by rank 0; it holds every rank's random state (``rng_ranks``), gathered first."""
    rngs = every_rank_rng(parts.world)
    if not parts.world.is_main:
        return
    ckpt.atomic_save(
        {
            "modules": ckpt.module_states(parts.modules),
            "optimizer": parts.optimizer.state_dict(),
            "scheduler": parts.scheduler.state_dict() if parts.scheduler is not None else None,
            "scaler": parts.scaler.state_dict(),
            "state": json.dumps(asdict(state) | {"elapsed": elapsed, "cpu_elapsed": cpu_elapsed}),
            "rng": rngs[0],
            **({"rng_ranks": rngs} if parts.world.distributed else {}),
        },
        path,
    )


def every_rank_rng(world) -> list:
    """Every rank's RNG states (rank 0's first), sent as torch.save bytes (tensors do not survive the objects'
    own pickling across processes)."""
    if not world.distributed:
        return [ckpt.rng_state()]
    buffer = io.BytesIO()
    torch.save(ckpt.rng_state(), buffer)
    return [torch.load(io.BytesIO(blob), weights_only=True) for blob in all_gather_object(buffer.getvalue(), world)]


def resume(parts: Parts, saved: dict) -> LoopState:
    """Restore every state of a loaded last.pt into ``parts``; the loop state to go on from."""
    ckpt.load_module_states(parts.modules, saved["modules"])
    parts.optimizer.load_state_dict(saved["optimizer"])
    if parts.scheduler is not None and saved.get("scheduler"):
        parts.scheduler.load_state_dict(saved["scheduler"])
    if saved.get("scaler"):
        parts.scaler.load_state_dict(saved["scaler"])
    ranks = saved.get("rng_ranks") or []
    world = parts.world
    ckpt.set_rng_state(ranks[world.rank] if len(ranks) == world.world_size else saved["rng"])
    return LoopState(**json.loads(saved["state"]))


def prefixed(prefix: str, metrics: dict) -> dict:
    return {f"{prefix}/{k}": v for k, v in metrics.items()}


def set_backbone_frozen(model, frozen: bool) -> None:
    for p in model.backbone.parameters():
        p.requires_grad_(not frozen)


@contextmanager
def progress_bar(enabled: bool, total: int, desc: str):
    """A tqdm bar over an epoch's steps on an interactive terminal (epoch lines are logged either way)."""
    if not enabled or total < 20 or not sys.stderr.isatty():
        yield None
        return
    with tqdm(total=total, desc=desc, leave=False, dynamic_ncols=True) as bar:
        yield bar
