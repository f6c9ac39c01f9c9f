"""`make reproduce PAPER=...`: one command per seed table (issues 13, 25), end to end on CPU, and its paper view.

Tiny trees in each dataset's published layout (CUB_200_2011/, cars196/, Stanford_Online_Products/, inshop/), the
command a lab types, shrunk by overrides (ResNet-18 at 32 px instead of the pretrained ResNet-50, one epoch,
batches of 10, one preset and one seed of each paper). It runs the preset x {baseline, method} x {clean, authors'
protocol} of sweeps/reproduce_<paper>.yaml and the paper's released baselines (sweeps/reproduce_<paper>_released.yaml),
skips what is finished when typed again, and writes the paper's tables, whose paper view is published | authors'
protocol ‡ | clean protocol.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REPO, paper_presets
from omegaconf import OmegaConf
from test_datasets import make_cars_official, make_cub, make_inshop, make_sop
from test_tables import write_run

from harness import tables

VENV = Path(sys.prefix)
# ++: keys the presets have but the default config (digits, MLP), which Hydra composes first to read the sweep, lacks
SHRINK = [
    "++backbone.model_name=resnet18",
    "++backbone.pretrained=false",
    "head.embed_dim=16",
    "++dataset.transform.size=32",
    "++dataset.transform.resize=36",
    "trainer.epochs=1",
    "sampler.batch_size=10",
    "trainer.num_workers=0",
    "eval.batch_size=64",
    "eval.utilization=false",
    "trainer.progress=false",
    "eval.pictures=false",
]  # pictures: tests/test_inspect.py


@pytest.fixture(scope="module")
def data_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("data")
    make_cub(root / "CUB_200_2011", classes=tuple(range(1, 11)) + (101, 102, 103, 104), per_class=4)
    make_cars_official(root / "cars196", classes=tuple(range(1, 11)) + (99, 100, 101, 102), per_class=4)
    make_sop(root / "Stanford_Online_Products", train=tuple(range(1, 21)), test=(11319, 11320, 11321, 11322))
    make_inshop(root / "inshop", train=tuple(range(1, 21)), test=(21, 22, 23, 24))
    return root


# make's install stamps (one per faiss build), taken as up to date: the test never pip-installs into the venv it runs in
NO_INSTALL = [arg for build in ("cpu", "gpu") for arg in ("-o", f"{VENV}/.installed-{build}")]


def reproduce(paper: str, data: Path, results: Path, *extra: str) -> subprocess.CompletedProcess:
    args = " ".join(SHRINK + [f"paths.data={data}", *extra])
    cmd = [
        "make",
        "-s",
        *NO_INSTALL,
        "reproduce",
        f"PAPER={paper}",
        f"VENV={VENV}",
        f"REPRODUCE_ARGS={args}",
        "TABLES_ARGS=--no-plots",
    ]
    return subprocess.run(
        cmd,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=900,
        env={
            "PATH": "/usr/bin:/bin",
            "OMP_NUM_THREADS": "1",
            "HARNESS_RESULTS": str(results),
            "HOME": str(results.parent),
        },
    )


def records_of(results: Path) -> list:
    return [json.loads(p.read_text()) for p in sorted(results.glob("runs/*/*/record.json"))]


def paper_rows(text: str, first: str) -> list:
    return [
        [c.strip() for c in line.strip("|").split("|")] for line in text.splitlines() if line.startswith(f"| {first}")
    ]


PAPER_HEADER = ["metric", "published", "authors' protocol ‡", "clean protocol", "Δ ‡", "Δ clean", "seeds", "source"]


def cell(row: list, column: str) -> str:
    """A paper-view row's cell under one of PAPER_HEADER's columns (the group key columns come first)."""
    return row[PAPER_HEADER.index(column) - len(PAPER_HEADER)]


@pytest.mark.slow
@pytest.mark.parametrize(
    "paper,preset,arms",
    [
        # NIR at 128-d: published numbers for the method and for the released ProxyAnchor baseline (its own row)
        ("nir", "cub_nir128", {"none", "nir", "none (released baseline)"}),
        # Metrix on In-Shop's layout (query/gallery): the release's In-Shop baseline command, its own row
        ("metrix", "inshop_metrix", {"none", "metrix_feature", "none (released baseline)"}),
        # AntiCo's SOP guess (ProxyAnchor + NIR flow + AntiCo): nothing published, the column empty
        ("antico", "sop_antico", {"none", "antico_batch_proxy+nir"}),
    ],
)
def test_reproduce_runs_both_protocols_of_both_arms_and_the_released_baseline_and_writes_the_paper_view(
    paper, preset, arms, data_root, tmp_path
):
    results = tmp_path / "results"
    done = reproduce(paper, data_root, results, "seed=0", f"experiment={preset}")
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    records = records_of(results)
    assert all(r["status"] == "finished" for r in records)
    label = {"released_baseline": "none (released baseline)"}
    runs = {
        (label.get(r.get("config/published.arm"), r["regularizer"]), r.get("config/protocol.name", "clean"))
        for r in records
    }
    assert len(records) == len(runs) == 2 * len(arms) and runs == {(a, p) for a in arms for p in ("clean", "authors")}
    for r in records:  # the authors' protocol: every training class, the epoch chosen on test, and the record says so
        authors = r.get("config/protocol.name") == "authors"
        assert r["selection"] == ("test (optimistic)" if authors else "validation")
        assert ("val/recall@1" in r) != authors
    paper_md = (results / "tables" / f"reproduce_{paper}" / "paper.md").read_text()
    assert paper_rows(paper_md, "loss")[0][-len(PAPER_HEADER) :] == PAPER_HEADER
    rows = paper_rows(paper_md, "proxy_anchor" if paper != "metrix" else "contrastive")
    assert {row[1] for row in rows} == arms  # every arm is a row, the released baseline labelled as such
    for row in rows:  # both protocols in every row (the tiny trees measure R@1 and NMI, no R@10); published where known
        measured = cell(row, "metric") in ("R@1", "NMI")
        assert (cell(row, "authors' protocol ‡") != "—") == measured and (
            cell(row, "clean protocol") != "—"
        ) == measured
    published = {row[1]: cell(row, "published") for row in rows if cell(row, "metric") == "R@1"}
    want = {
        "nir": {"nir": "66.0", "none (released baseline)": "64.4", "none": "—"},
        "metrix": {"metrix_feature": "89.1", "none (released baseline)": "86.4", "none": "—"},
        "antico": {"antico_batch_proxy+nir": "—", "none": "—"},
    }
    assert published == want[paper]
    table = (results / "tables" / f"reproduce_{paper}" / "table.md").read_text()
    assert "authors ‡" in table and "‡ authors' protocol" in table  # marked in the main table too
    delta = (results / "tables" / f"reproduce_{paper}" / "delta.md").read_text()
    assert "released" not in delta  # never the paired baseline, never paired itself

    if paper == "nir":  # typed again: nothing retrains (one paper is enough to show it)
        again = reproduce(paper, data_root, results, "seed=0", f"experiment={preset}")
        assert again.returncode == 0, again.stderr[-3000:]
        assert [r["wall_time_s"] for r in records_of(results)] == [r["wall_time_s"] for r in records]


@pytest.mark.parametrize("paper", ["antico", "nir", "metrix"])
def test_every_reproduce_sweep_is_every_preset_by_both_arms_both_protocols_and_three_seeds(paper):
    params = OmegaConf.load(REPO / "sweeps" / f"reproduce_{paper}.yaml").hydra.sweeper.params
    assert params.seed == "0,1,2" and params.arm == "baseline,method" and params.protocol == "clean,authors"
    presets = params.experiment.split(",")
    assert sorted(presets) == sorted(p for p in paper_presets() if p.split("_", 1)[1].startswith(paper))
    released = REPO / "sweeps" / f"reproduce_{paper}_released.yaml"
    arms = REPO / "conf" / "experiment" / "arms" / "released_baseline"
    with_own = sorted(p for p in presets if "arm:" in (arms / f"{p}.yaml").read_text())  # not a one-line refusal
    if not with_own:
        assert not released.exists()
        return
    extra = OmegaConf.load(released).hydra.sweeper.params
    assert sorted(extra.experiment.split(",")) == with_own and extra.arm == "released_baseline"
    assert extra.protocol == params.protocol and extra.seed == params.seed


def test_make_reproduce_names_the_papers_it_knows():
    out = subprocess.run(
        ["make", "-s", *NO_INSTALL, "reproduce", "PAPER=mcr2", f"VENV={VENV}"],
        cwd=REPO,
        capture_output=True,
        text=True,
    )
    assert out.returncode != 0 and "set PAPER=antico, nir or metrix" in out.stdout + out.stderr


# ----------------------------------------------------------------------------------------------- the paper view
def test_the_paper_view_is_published_authors_protocol_and_clean_protocol_and_never_pools_them(tmp_path):
    root = tmp_path / "results"
    where = {"published.source": "Kim et al. CVPR 2020", "published.table": 2, "published.arxiv": "2003.13911v1"}
    authors = {"protocol.name": "authors", "selection.split": "test"}
    for seed, (clean, best) in enumerate([(0.70, 0.73), (0.72, 0.75), (0.74, 0.77)]):
        write_run(root, "pa", "none", seed, clean, dataset="cub", config={"published.recall@1": 69.5, **where})
        write_run(
            root, "pa", "none", seed, best, dataset="cub", config={"published.recall@1": 69.5, **where, **authors}
        )
    for seed, r1 in enumerate((0.76, 0.78)):  # nothing published for it: its row stays, the published cell empty
        write_run(root, "pa", "nir", seed, r1, dataset="cub", config={"published.source": "Roth et al."})
    write_run(root, "ms", "none", 0, 0.50, dataset="cub")  # no paper's: not in the view
    result = tables.make_tables([root], plots=False)
    paper = result["texts"]["paper.md"]
    assert paper_rows(paper, "loss")[0] == ["loss", "regularizer", "dataset", *PAPER_HEADER]
    assert paper_rows(paper, "pa") == [
        ["pa", "none", "cub", "R@1", "69.5", "75.0 ± 2.0", "72.0 ± 2.0", "+5.5", "+2.5", "3 ‡, 3 clean",
         "Kim et al. CVPR 2020, Table 2, arXiv 2003.13911v1"],
        ["pa", "nir", "cub", "MAP@R", "—", "—", "75.0 ± 1.4", "—", "—", "2 clean", "Roth et al."],
    ]  # fmt: skip
    assert not paper_rows(paper, "ms")
    assert paper.rstrip().splitlines()[-1].startswith("‡ authors' protocol (protocol=authors)")
    # the main table: the protocol is a row key, so no mean pools the two selections, and the authors' rows are marked
    mean = result["table"].mean
    assert mean.loc[("pa", "none", "authors ‡"), ("cub", "R@1")] == pytest.approx(75.0)
    assert mean.loc[("pa", "none", "clean"), ("cub", "R@1")] == pytest.approx(72.0)
    assert "‡ authors' protocol" in result["texts"]["table.md"]


def test_a_released_baseline_is_its_own_row_and_never_the_paired_baseline(tmp_path):
    root = tmp_path / "results"
    released = {"published.arm": "released_baseline", "published.source": "Roth et al.", "loss.lr_mult": 2000}
    for seed in (0, 1):
        write_run(root, "pa", "none", seed, 0.60, dataset="cub", config={"published.source": "Roth et al."})
        write_run(root, "pa", "none", seed, 0.50, dataset="cub", config=released)
        write_run(root, "pa", "nir", seed, 0.65, dataset="cub", config={"published.source": "Roth et al."})
    result = tables.make_tables([root], plots=False)
    assert sorted(result["table"].mean.index.get_level_values("regularizer")) == [
        "nir",
        "none",
        "none (released baseline)",
    ]
    delta = result["delta"].mean
    assert list(delta.index.get_level_values("regularizer")) == ["nir"]
    assert delta.iloc[0][("cub", "R@1")] == pytest.approx(5.0)  # against the matched baseline, not the released one
