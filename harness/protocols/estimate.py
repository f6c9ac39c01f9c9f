"""GPU-hours of ``make reproduce PAPER=...``: an ESTIMATE from image counts, epochs and assumed throughputs, not a
measurement (no GPU was lent to measure one). ``python -m harness.protocols.estimate`` prints the table that
docs/howto/reproduce.md shows.

Per run: every epoch trains on the training images at TRAIN_IMAGES_S and embeds the evaluated splits at
EVAL_IMAGES_S (ResNet-50 at 224 px, float32 with TF32 convolutions, one A100-class GPU: public ballpark figures).
The clean protocol trains on the training classes less its validation classes (CUB/Cars 20%, SOP/In-Shop 10%) and
embeds validation and test every epoch (the presets score test every epoch, eval.test_every_epoch); the authors'
protocol trains on every training class and embeds test every epoch. A table is its presets x arms x protocols x
seeds, plus the released baselines.
"""

from __future__ import annotations

TRAIN_IMAGES_S = 1000.0  # assumed: ResNet-50, 224 px, forward + backward
EVAL_IMAGES_S = 3000.0  # assumed: forward only
SEEDS = 3
PROTOCOLS = ("clean", "authors")
# images: training split, evaluated test split (In-Shop: queries + gallery), validation fraction of the clean protocol
DATASETS = {
    "cub": (5864, 5924, 0.2),
    "cars": (8054, 8131, 0.2),
    "sop": (59551, 60502, 0.1),
    "inshop": (25882, 14218 + 12612, 0.1),
}
# paper -> [(preset, dataset, epochs, arms)]: the sweeps/reproduce_<paper>[_released].yaml runs
TABLES = {
    "antico": [("cub_antico", "cub", 100, 2), ("cars_antico", "cars", 300, 2), ("sop_antico", "sop", 400, 2)],
    "nir": [
        ("cub_nir128", "cub", 100, 3),  # baseline, method, released baseline
        ("cars_nir128", "cars", 100, 3),
        ("sop_nir128", "sop", 300, 2),
        ("cub_nir", "cub", 100, 2),
        ("cars_nir", "cars", 100, 2),
        ("sop_nir", "sop", 300, 2),
    ],
    "metrix": [
        ("cub_metrix", "cub", 60, 2),
        ("cars_metrix", "cars", 60, 2),
        ("sop_metrix", "sop", 60, 3),
        ("inshop_metrix", "inshop", 60, 3),
    ],
}


def run_hours(dataset: str, epochs: int, protocol: str) -> float:
    train, test, val_fraction = DATASETS[dataset]
    if protocol == "clean":
        seconds = (1 - val_fraction) * train / TRAIN_IMAGES_S + (val_fraction * train + test) / EVAL_IMAGES_S
    else:
        seconds = train / TRAIN_IMAGES_S + test / EVAL_IMAGES_S
    return epochs * seconds / 3600.0


def table_hours(paper: str) -> tuple[float, list]:
    rows = []
    for preset, dataset, epochs, arms in TABLES[paper]:
        per_run = {p: run_hours(dataset, epochs, p) for p in PROTOCOLS}
        rows.append((preset, epochs, arms, per_run, SEEDS * arms * sum(per_run.values())))
    return sum(r[-1] for r in rows), rows


def main() -> None:
    print(
        f"GPU-hours, ESTIMATED (not measured): ResNet-50 224 px, {TRAIN_IMAGES_S:g} train / {EVAL_IMAGES_S:g} "
        "eval images/s"
    )
    print("| table | preset | epochs | arms | one run, clean / authors (h) | preset total (h) |")
    print("|---|---|---:|---:|---:|---:|")
    for paper in TABLES:
        total, rows = table_hours(paper)
        for preset, epochs, arms, per_run, hours in rows:
            runs = f"{per_run['clean']:.2f} / {per_run['authors']:.2f}"
            print(f"| {paper} | `{preset}` | {epochs} | {arms} | {runs} | {hours:.1f} |")
        print(f"| **{paper}** | all, x {len(PROTOCOLS)} protocols x {SEEDS} seeds | | | | **{total:.0f}** |")


if __name__ == "__main__":
    main()
