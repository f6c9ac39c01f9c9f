"""The sections of ``make gpu-check`` (harness/bench/gpu_check.py): each takes the :class:`Workspace` and returns
``{"table": [header, *rows], "notes": [...], ...}``. Every timed comparison is interleaved (a warm-up round, then at
least 5 rounds) like the other benchmarks."""

from __future__ import annotations

import copy
import shutil
import tempfile
import warnings
from collections import Counter
from pathlib import Path

import torch
from torch.profiler import ProfilerActivity, profile

import harness
from harness.bench import pipeline as bench_pipeline
from harness.bench.common import MIN_ROUNDS, figure, interleave, stats, synchronize
from harness.bench.evaluation import K_LIST, clustered_embeddings
from harness.bench.host_reads import _owner_of, count_host_reads
from harness.bench.pipeline import write_cub_tree
from harness.bench.regularizers import FALLBACK_LOSS, regularizer_files
from harness.bench.training_loop import compose_config
from harness.errors import ConfigError
from harness.evaluation import retrieval
from harness.evaluation.faiss_build import faiss_build
from harness.rundir import records
from harness.runtime import autocast_for
from harness.training.build import build, build_optimizer
from harness.training.fit import Plan
from harness.training.step import Step, train_one_epoch

FULL = dict(backbone="resnet50", size=224, resize=256, batch=90, m=3, embed=512, steps=20, sync_steps=5,
            tree=(40, 12), sop=(60502, 11316), sop_dim=512, resume=("resnet18", 64, 32, 4), tiny=False)  # fmt: skip
TINY = dict(backbone="small_cnn", size=16, resize=18, batch=8, m=2, embed=8, steps=2, sync_steps=2,
            tree=(8, 6), sop=(1500, 300), sop_dim=32, resume=("small_cnn", 16, 8, 2), tiny=True)  # fmt: skip
FAMILIES = ("antico_pair", "nir", "metrix_feature")  # one of each (the tiny run); the full check times every file
SYNC_EVENTS = ("cudaStreamSynchronize", "cudaDeviceSynchronize", "cudaEventSynchronize")


class StopForResume(Exception):
    """Raised after an epoch's evaluation (before its checkpoint): the run stops as a preempted job would."""


class Workspace:
    """A temporary folder with a generated CUB-layout tree of JPEGs, the device and the sizes."""

    def __init__(self, device: torch.device, sizes: dict):
        self.device, self.sizes = device, sizes

    def __enter__(self):
        self.tmp = Path(tempfile.mkdtemp(prefix="gpu-check-"))
        classes, per_class = self.sizes["tree"]
        size = (500, 375) if not self.sizes["tiny"] else (60, 45)  # CUB's typical size; tiny: quick to write
        self.tree = write_cub_tree(self.tmp / "CUB_200_2011", classes=classes, per_class=per_class, size=size)
        return self

    def __exit__(self, *exc):
        shutil.rmtree(self.tmp, ignore_errors=True)

    def overrides(self, *extra, backbone=None, size=None, batch=None) -> list:
        s = self.sizes
        size = size or s["size"]
        return [
            "dataset=cub200",
            f"dataset.root={self.tree}",
            "dataset.val_fraction=0.1",
            f"backbone={backbone or s['backbone']}",
            f"head.embed_dim={s['embed']}",
            f"dataset.transform.size={size}",
            f"dataset.transform.resize={size + size // 8}",
            f"sampler.m={s['m']}",
            f"sampler.batch_size={batch or s['batch']}",
            f"trainer.device={self.device.type}",
            "trainer.progress=false",
            "optimizer=adamw",
            *extra,
        ]

    def build(self, *extra):
        return build(compose_config(self.overrides(*extra)))

    def synthetic(self, parts, steps: int) -> list:
        """``steps`` copies of one batch resident on the device (random images, M-per-class labels)."""
        s = self.sizes
        g = torch.Generator().manual_seed(0)
        x = torch.randn(s["batch"], 3, s["size"], s["size"], generator=g).to(self.device)
        y = torch.arange(s["batch"] // s["m"]).repeat_interleave(s["m"]).to(self.device)
        return [(x, y)] * steps


def run_steps(parts, batches) -> None:
    """The harness's training step over ``batches``, as a run executes it, then wait for the device."""
    if not hasattr(parts, "_step"):
        parts._step = Step.of(parts, Plan.from_config(parts.cfg))
    train_one_epoch(parts._step, batches, 1)
    synchronize(parts.device)


def bare_loop(model, loss, optimizer, batches, device, amp) -> None:
    """What a PyTorch tutorial writes, with the same autocast: forward, loss, zero_grad, backward, step."""
    model.train()
    for x, y in batches:
        with autocast_for(device, amp):
            embeddings = model(x)
        value = loss(embeddings.float(), y)
        optimizer.zero_grad(set_to_none=True)
        value.backward()
        optimizer.step()
    synchronize(device)


def fig_row(f: dict) -> list:
    r = f["ratio"]
    noise = " (within noise)" if f["within_noise"] else ""
    return [f["name"], f"{r['median']:.2f}x ({r['min']:.2f}-{r['max']:.2f}){noise}", f"{f['load'][0]:.1f}"]


# ----------------------------------------------------------------------------------------------- 1 throughput
def throughput(ws: Workspace) -> dict:
    parts = ws.build("regularizer=none")
    batches = ws.synthetic(parts, ws.sizes["steps"])
    model, loss = copy.deepcopy(parts.model), copy.deepcopy(parts.loss)
    opt = build_optimizer(parts.cfg.optimizer, model, loss, torch.nn.ModuleDict(), parts.cfg.lr_mult)
    t = interleave(
        {"harness": lambda: run_steps(parts, batches), "bare": lambda: bare_loop(model, loss, opt, batches,
                                                                                 parts.device, parts.amp)},
        MIN_ROUNDS,
    )  # fmt: skip
    f = figure("training step vs bare loop", "harness step", "bare PyTorch loop", t["harness"], t["bare"], load=t.load)
    images = ws.sizes["batch"] * ws.sizes["steps"]
    ips = {k: images / stats(v)["median"] for k, v in t.items()}
    model = parts.cfg.backbone.get("model_name") or ws.sizes["backbone"]
    name = f"{model} {parts.amp}, {ws.sizes['size']} px, batch {ws.sizes['batch']}"
    return {
        "figures": [f],
        "images_per_s": ips,
        "table": [
            ["what", "images/s", "ratio: median (min-max)", "load"],
            [f"harness step, {name}", f"{ips['harness']:.0f}", *fig_row(f)[1:]],
            [f"bare PyTorch loop, {name}", f"{ips['bare']:.0f}", "", ""],
        ],
        "notes": [f"channels_last {parts.cfg.trainer.channels_last}, cudnn.benchmark, synthetic batches on the device"],
    }


# ----------------------------------------------------------------------------------------------- 2 pipeline
def pipeline(ws: Workspace) -> dict:
    tiny = [f"backbone={ws.sizes['backbone']}", f"head.embed_dim={ws.sizes['embed']}"] if ws.sizes["tiny"] else []
    r = bench_pipeline.run(
        quick=ws.sizes["tiny"], root=str(ws.tree), overrides=[f"trainer.device={ws.device.type}", *tiny]
    )
    return {
        "figures": r["figures"],
        "table": [["figure", "ratio: median (min-max)", "load"], *[fig_row(f) for f in r["figures"]]],
        "notes": r["notes"],
    }


# ----------------------------------------------------------------------------------------------- 3 host syncs
def host_syncs(ws: Workspace) -> dict:
    table = [["step", "sync warnings / step", "profiler syncs / step", "D2H copies / step", "harness's own", "by"]]
    configs = {"base loss alone": ["regularizer=none"]}
    for name in FAMILIES + ("antico_batch_proxy",):
        loss = "proxy_anchor" if name in ("nir", "antico_batch_proxy") else "multi_similarity"
        configs[f"{name} ({loss})"] = [f"regularizer=[{name}]", f"loss={loss}"]
    own_total, steps = 0, ws.sizes["sync_steps"]
    for label, extra in configs.items():
        parts = ws.build(*extra)
        batches = ws.synthetic(parts, steps)
        run_steps(parts, batches)  # warm-up: cudnn.benchmark's search, allocations
        warned = sync_warnings(parts, batches)
        profiled = profiler_syncs(parts, batches)
        with count_host_reads() as reads:
            run_steps(parts, batches)
        own = reads.harness_own()
        own_total += sum(own.values())
        by = ", ".join(f"{k} {n}" for k, n in warned.most_common(4)) or "-"
        per = (lambda n: f"{n / steps:.1f}") if ws.device.type == "cuda" else (lambda n: "n/a (CPU)")
        table.append([label, per(sum(warned.values())), per(profiled[0]), per(profiled[1]), sum(own.values()), by])
    return {
        "harness_own": own_total,
        "table": table,
        "notes": [
            "sync warnings: torch.cuda.set_sync_debug_mode('warn'), every warning counted, charged to its file; "
            "harness's own: harness.bench.host_reads' undeclared count (the allowlist names PML's and torch's)"
        ],
    }


def sync_warnings(parts, batches) -> Counter:
    if parts.device.type != "cuda":
        return Counter()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        torch.cuda.set_sync_debug_mode("warn")
        try:
            run_steps(parts, batches)
        finally:
            torch.cuda.set_sync_debug_mode(0)
    return Counter((_owner_of(w.filename, "") or w.filename).split(":")[0] for w in caught
                   if "synchroniz" in str(w.message))  # fmt: skip


def profiler_syncs(parts, batches) -> tuple:
    """(synchronisations, device-to-host copies) the CUDA profiler saw over ``batches`` (0, 0 on the CPU)."""
    if parts.device.type != "cuda":
        return 0, 0
    with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
        run_steps(parts, batches)
    events = {e.key: e.count for e in prof.key_averages()}
    return sum(n for k, n in events.items() if k in SYNC_EVENTS), sum(n for k, n in events.items() if "DtoH" in k)


# ----------------------------------------------------------------------------------------------- 4 resume
def resume(ws: Workspace) -> dict:
    backbone, size, batch, steps = ws.sizes["resume"]
    epochs = 2 if ws.sizes["tiny"] else 3
    base = ws.overrides(
        f"trainer.epochs={epochs}",
        f"sampler.batches_per_epoch={steps}",
        "trainer.cudnn_benchmark=true",
        "eval.pictures=false",
        *(["eval.nmi=false", "eval.utilization=false"] if ws.sizes["tiny"] else []),
        backbone=backbone,
        size=size,
        batch=batch,
    )

    def stop_at_2(epoch, metrics):
        if epoch == 2:
            raise StopForResume("stopped after epoch 2's evaluation (last.pt holds epoch 1)")

    whole = harness.run(compose_config([*base, f"paths.results={ws.tmp / 'whole'}"]))
    cut = compose_config([*base, f"paths.results={ws.tmp / 'cut'}"])
    try:
        harness.run(cut, on_evaluate=stop_at_2)
    except StopForResume:
        pass
    resumed = harness.run(cut)
    keys = sorted(k for k in whole if k.startswith(("test/", "val/", "selected_epoch")))
    diffs = {k: abs(float(whole[k]) - float(resumed.get(k, float("nan")))) for k in keys}
    rows_a, rows_b = (records.read_epochs(Path(r["run_dir"])) for r in (whole, resumed))
    numeric = lambda row: {k: v for k, v in row.items() if isinstance(v, float) and not k.startswith("time/")}  # noqa: E731
    rows_equal = [numeric(a) == numeric(b) for a, b in zip(rows_a, rows_b)] + [len(rows_a) == len(rows_b)]
    equal = all(d == 0 for d in diffs.values()) and all(rows_equal)
    return {
        "equal": equal,
        "attempts": resumed.get("attempts"),
        "table": [
            ["check", "result"],
            ["record's test/val metrics bit for bit", "equal" if not any(diffs.values()) else "DIFFER"],
            ["largest difference", f"{max(diffs.values(), default=0):.3g}"],
            ["epoch rows equal", f"{sum(rows_equal[:-1])} of {len(rows_a)}"],
            ["resumed run's attempts", resumed.get("attempts")],
        ],
        "notes": [f"{backbone} at {size} px, batch {batch}, {epochs} epochs of {steps} steps, cudnn.benchmark on"],
    }


# ----------------------------------------------------------------------------------------------- 5 faiss
def faiss(ws: Workspace) -> dict:
    n, classes = ws.sizes["sop"]
    x, y = clustered_embeddings(n, classes, d=ws.sizes["sop_dim"])

    def on_cpu():
        with retrieval.cpu_only():
            return retrieval.retrieval_metrics(x, y, k_list=K_LIST)

    t = interleave({"default": lambda: retrieval.retrieval_metrics(x, y, k_list=K_LIST), "cpu": on_cpu}, MIN_ROUNDS)
    gpu_build = faiss_build()
    f = figure(f"retrieval metrics, {n:,} x {ws.sizes['sop_dim']}, {classes:,} classes", "faiss (GPU where built)",
               "faiss-cpu", t["default"], t["cpu"], show="speedup", load=t.load)  # fmt: skip
    a, b = retrieval.retrieval_metrics(x, y, k_list=K_LIST), on_cpu()
    diff = max(abs(a[k] - b[k]) for k in a if k != "num_queries")
    s = f["speedup"]
    return {
        "figures": [f],
        "table": [
            ["what", "seconds (median)", "speedup: median (min-max)", "largest metric difference"],
            [
                f"faiss, {gpu_build.describe()}",
                f"{f['subject_s']['median']:.3g}",
                f"{s['median']:.2f}x ({s['min']:.2f}-{s['max']:.2f}){' (within noise)' if f['within_noise'] else ''}",
                f"{diff:.2g}",
            ],
            ["faiss-cpu", f"{f['alternative_s']['median']:.3g}", "", ""],
        ],  # fmt: skip
        "notes": [f"threads: torch {torch.get_num_threads()}; metrics {', '.join(sorted(a))}"],
    }


# ----------------------------------------------------------------------------------------------- 6 regularizers
def regularizers(ws: Workspace) -> dict:
    names = list(FAMILIES) if ws.sizes["tiny"] else regularizer_files()
    table = [["regularizer", "loss", "extra ms / step", "ratio: median (min-max)", "load"]]
    steps, figures, bases = ws.sizes["steps"], [], {}
    small = (
        ["regularizer.nir.blocks=2", "regularizer.nir.depth=2", "regularizer.nir.width=16"] if ws.sizes["tiny"] else []
    )
    for name in names:
        for loss in ("multi_similarity", FALLBACK_LOSS):
            try:
                with_reg = ws.build(f"regularizer=[{name}]", f"loss={loss}", *(small if name == "nir" else []))
            except ConfigError:
                continue
            break
        if loss not in bases:  # one base per loss, shared by the regularizers that use it
            bases[loss] = ws.build("regularizer=none", f"loss={loss}")
        base = bases[loss]
        batches = ws.synthetic(base, steps)
        t = interleave({"with": lambda: run_steps(with_reg, batches), "base": lambda: run_steps(base, batches)},  # noqa: B023
                       MIN_ROUNDS)  # fmt: skip
        f = figure(f"{name} ({loss})", f"step + {name}", "step alone", t["with"], t["base"], load=t.load)
        extra = 1e3 * (f["subject_s"]["median"] - f["alternative_s"]["median"]) / steps
        figures.append(f)
        table.append([name, loss, f"{extra:+.1f}", *fig_row(f)[1:]])
    return {"figures": figures, "table": table, "notes": [f"{ws.sizes['backbone']}, synthetic batches, {steps} steps"]}
