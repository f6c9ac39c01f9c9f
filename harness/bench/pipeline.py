"""Image pipeline: does data loading starve the training step?

Three numbers in images/s, on the same config, built by ``harness.training.build`` exactly as a run is
(``dataset`` loader, M-per-class sampler, the loader with its workers, pinned memory and
persistent workers, the model with ``accelerate``, AMP as ``trainer.amp`` resolves):

* loader alone: iterate the run's DataLoader (decode, augment, collate; pinned memory on CUDA);
* step alone: ``train_one_epoch`` on one batch already on the device, repeated (the GPU/CPU-bound floor);
* both: ``train_one_epoch`` on the real loader, i.e. what an epoch achieves;
* the loader again with every JPEG decoded at full size (``dataset.fast_decode=false``), to show what
  decoding at a reduced scale (PIL's ``draft``, JPEG DCT scaling) buys at low resolution;
* the loader's floor: a bare torchvision loop over the same files, the same batches and the same worker count,
  that only decodes (at the same reduced scale) and resizes to the training size (``v2.RandomResizedCrop``,
  ``ToImage``, ``ToDtype``) with torch's default collate: the least any training image loader must do. The
  loader's images/s is read as a ratio to it, not as an absolute.

The figures are loader time over step time per batch (above 1 the loader is the bottleneck: add
``trainer.num_workers``, lower the resolution, or use ``dataset.fast_decode``) and loader time over its floor
(what the harness's augmentation, sampler and collation add); on a GPU also the loader with
``trainer.decode_on_device`` (nvJPEG) against the default. Without a dataset root it writes a CUB-layout tree
of JPEGs at CUB's typical size (500 x 375) into a temporary folder. On the CPU the full-epoch candidate is left
out (the step alone dominates it and it would double the benchmark's time).

    python -m harness.bench.pipeline                       # GPU: ResNet-50, 224 px, batch 90; CPU: ResNet-18, 64 px
    python -m harness.bench.pipeline dataset.root=/data/CUB_200_2011 trainer.num_workers=16
    python -m harness.bench.pipeline --quick --out=/tmp/pipeline.json   # JSON default: results/bench/pipeline.json
"""

from __future__ import annotations

import copy
import json
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from harness.bench.common import MIN_ROUNDS, describe_machine, figure, interleave, machine, synchronize
from harness.bench.training_loop import compose_config
from harness.runtime import torch_threads
from harness.training.build import build, build_loader
from harness.training.fit import Plan
from harness.training.step import Step, train_one_epoch

GPU_DEFAULTS = [
    "backbone=resnet50",
    "head.embed_dim=512",
    "head.pooling=double",
    "sampler.m=3",
    "sampler.batch_size=90",
    "trainer.num_workers=8",
    "optimizer=adamw",
]
QUICK_CPU = ["dataset.transform.size=32", "dataset.transform.resize=36", "sampler.batch_size=12"]  # a smoke run
CPU_DEFAULTS = [
    "backbone=resnet18",
    "head.embed_dim=128",
    "dataset.transform.size=64",
    "dataset.transform.resize=73",
    "sampler.m=3",
    "sampler.batch_size=30",
    "trainer.num_workers=1",
    "optimizer=adamw",
]


class FloorDataset(torch.utils.data.Dataset):
    """What a torchvision tutorial's training loader does, and no more: open, decode (PIL's reduced-scale JPEG
    decoding when the run uses it), the random resized crop to the training size, to a float tensor. No flip,
    normalisation, corrupt-file handling or label logic. The crop resizes the PIL image, as the run's transform does."""

    def __init__(self, paths, size: int, draft_size: int | None):
        # lazy: heavy (torchvision, ~1 s after torch), only for this floor loader
        from torchvision.transforms import v2

        self.paths, self.draft_size = list(paths), draft_size
        self.transform = v2.Compose(
            [v2.RandomResizedCrop(size, antialias=True), v2.ToImage(), v2.ToDtype(torch.float32, scale=True)]
        )

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i):
        img = Image.open(self.paths[i])
        if self.draft_size and img.format == "JPEG":
            img.draft(None, (self.draft_size, self.draft_size))
        return self.transform(img.convert("RGB")), 0


def write_cub_tree(root: Path, classes: int = 40, per_class: int = 12, size=(500, 375)) -> Path:
    """A CUB_200_2011-layout tree of smooth random JPEGs (natural-image file sizes, ~20-40 KB)."""
    images, labels, i = [], [], 0
    rng = np.random.default_rng(0)
    for c in [*range(1, classes + 1), 101, 102]:  # training classes, and two test classes (101+)
        for k in range(per_class):
            i += 1
            rel = f"{c:03d}.Class_{c}/img_{k:04d}.jpg"
            small = rng.integers(0, 256, (12, 16, 3), dtype=np.uint8)
            img = Image.fromarray(small).resize(size, Image.BICUBIC)
            noisy = np.clip(np.asarray(img, np.int16) + rng.integers(-12, 13, (size[1], size[0], 3)), 0, 255)
            (root / "images" / rel).parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(noisy.astype(np.uint8)).save(root / "images" / rel, quality=90)
            images.append(f"{i} {rel}")
            labels.append(f"{i} {c}")
    (root / "images.txt").write_text("\n".join(images) + "\n")
    (root / "image_class_labels.txt").write_text("\n".join(labels) + "\n")
    return root


class Pipeline:
    """The run's loader and training step, built as ``harness.run`` builds them."""

    def __init__(self, overrides, steps: int):
        parts = build(compose_config([*overrides, f"sampler.batches_per_epoch={steps}", "seed=0"]))
        self.cfg, self.data, self.device, self.amp = parts.cfg, parts.data, parts.device, parts.amp
        self.model, self.loss, self.regularizers = parts.model, parts.loss, parts.regularizers
        self.optimizer, self.sampler, self.loader = parts.optimizer, parts.sampler, parts.loader
        self.train_step = Step.of(parts, Plan.from_config(parts.cfg))
        x, y = next(iter(self.loader))
        self.batch = [(x.to(self.device), y.to(self.device))] * steps
        workers = int(self.cfg.trainer.num_workers)
        full = copy.copy(self.data.train)  # the same split, decoding every JPEG at full resolution
        full.draft_size = None
        self.full_decode_loader = build_loader(full, self.sampler, workers, 0, self.device)
        train = self.data.train
        floor = FloorDataset(train.paths, int(self.cfg.dataset.transform.size), train.draft_size)
        self.floor_loader = torch.utils.data.DataLoader(
            floor,
            batch_sampler=self.sampler,
            num_workers=workers,
            pin_memory=self.device.type == "cuda",
            persistent_workers=workers > 0,
        )

    def load(self, loader=None) -> None:
        for x, _ in loader or self.loader:
            x.to(self.device, non_blocking=True)
        synchronize(self.device)

    def load_full_decode(self) -> None:
        self.load(self.full_decode_loader)

    def load_floor(self) -> None:
        self.load(self.floor_loader)

    def load_decoded_on_device(self) -> None:
        """The loader with trainer.decode_on_device: workers read bytes, the device decodes and augments."""
        if not hasattr(self, "device_loader"):
            workers = int(self.cfg.trainer.num_workers)
            self.device_loader = build_loader(self.data.train, self.sampler, workers, 0, self.device, decode_on=True)
        self.load(self.device_loader)

    def step(self, loader=None) -> None:
        train_one_epoch(self.train_step, loader or self.batch, 1)
        synchronize(self.device)

    def epoch(self) -> None:
        self.step(self.loader)


def run(quick: bool = False, full: bool = False, overrides=(), root: str | None = None) -> dict:
    gpu = torch.cuda.is_available()
    steps = 3 if quick else (40 if gpu else 4)
    with tempfile.TemporaryDirectory() as tmp:
        has_root = root or any(o.startswith("dataset.root=") for o in overrides)
        if not has_root:
            classes, per_class = (40, 12) if gpu else ((8, 6) if quick else (20, 12))
            root = str(write_cub_tree(Path(tmp) / "CUB_200_2011", classes=classes, per_class=per_class))
        base = ["dataset=cub200", "dataset.val_fraction=0.1", "trainer.progress=false"]
        if root:
            base.append(f"dataset.root={root}")
        sizes = QUICK_CPU if quick and not gpu else []
        p = Pipeline([*base, *(GPU_DEFAULTS if gpu else CPU_DEFAULTS), *sizes, *overrides], steps)
        candidates = {"loader": p.load, "floor": p.load_floor, "step": p.step, "full_decode": p.load_full_decode}
        if gpu:
            candidates["epoch"] = p.epoch
            candidates["device_decode"] = p.load_decoded_on_device
        with torch_threads(None if gpu else 1):  # as the other CPU figures: one thread (two crawl on a busy machine)
            t = interleave(candidates, MIN_ROUNDS)
    bs = int(p.cfg.sampler.batch_size)
    per_s = {k: steps * bs / float(np.median(v)) for k, v in t.items()}
    backbone, size = p.cfg.backbone.get("model_name", "backbone"), p.cfg.dataset.transform.size
    workers = int(p.cfg.trainer.num_workers)
    fig = figure(
        f"image pipeline, {backbone} at {size} px, batch {bs}",
        "loader alone (decode + augment + collate)",
        "training step alone (batch resident on the device)",
        t["loader"],
        t["step"],
        load=t.load,
    )
    fig.update({f"{k}_images_per_s": v for k, v in per_s.items()})
    floor = figure(
        f"image loader vs its floor, {size} px, batch {bs}, {workers} worker(s)",
        "the run's loader (sampler, decode, augment, collate)",
        "bare torchvision loop (decode + resize, the same files and workers)",
        t["loader"],
        t["floor"],
        load=t.load,
        floor=True,
    )
    slower = "loader" if per_s["loader"] < per_s["step"] else "training step"
    draft = figure(
        f"JPEG decoding at reduced scale (dataset.fast_decode), {size} px",
        "loader, fast_decode=true",
        "loader, every JPEG decoded at full size",
        t["loader"],
        t["full_decode"],
        load=t.load,
    )
    epoch = f", full epoch {per_s['epoch']:.0f}" if "epoch" in per_s else ""
    device_decode = []
    if "device_decode" in t:  # GPU only: nvJPEG in the main process against PIL in the workers
        device_decode.append(
            figure(
                f"JPEG decoding on the GPU (trainer.decode_on_device), {size} px",
                "loader, decode + augment on the GPU",
                "loader, PIL in the workers (the default)",
                t["device_decode"],
                t["loader"],
                load=t.load,
            )
        )
    return {
        "figures": [fig, floor, draft, *device_decode],
        "params": {
            "steps_per_round": steps,
            "batch_size": bs,
            "backbone": backbone,
            "image_size": int(size),
            "num_workers": workers,
            "amp": p.amp,
            "device": str(p.device),
            "dataset_root": root or "generated CUB-layout tree (500x375 JPEGs)",
            "channels_last": str(p.cfg.trainer.get("channels_last")),
            "compile": bool(p.cfg.trainer.get("compile")),
        },
        "notes": [
            f"images/s: loader {per_s['loader']:.0f} ({floor['ratio']['median']:.2f}x the time of its floor, "
            f"{per_s['floor']:.0f}), training step {per_s['step']:.0f}{epoch} (medians over {MIN_ROUNDS} rounds of "
            f"{steps} batches); the slower is the {slower}",
            f"fast_decode: loader {per_s['loader']:.0f} vs {per_s['full_decode']:.0f} images/s decoding at full size",
        ],
        "ok": True,
    }


def main(argv) -> None:
    quick = "--quick" in argv
    out = Path(next((a.split("=", 1)[1] for a in argv if a.startswith("--out=")), "results/bench/pipeline.json"))
    overrides = [a for a in argv if not a.startswith("--")]
    result = {**machine(), **run(quick=quick, overrides=overrides)}
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2, default=str) + "\n")
    print(describe_machine(result))
    for note in result["notes"]:
        print(note)
    print(f"written: {out}")


if __name__ == "__main__":
    main(sys.argv[1:])
