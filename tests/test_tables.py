"""Tables from run records: the DataFrame, means and stds over seeds, bold cells, flags, LaTeX shape, the
cache, and a real digits grid run through Hydra's multirun and tabled from the command line."""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from conftest import REPO

from harness import tables
from harness.io import atomic_write_json
from harness.tables.render import to_markdown

METRICS = ("recall@1", "recall@2", "map@r", "nmi")


def write_run(root, loss, regularizer, seed, r1, status="finished", dataset="digits", config=None, extra=None):
    """A run directory as harness.training.task writes it, with known metric values (recall@1 = r1, the others
    from it)."""
    config = {"seed": seed, "loss.name": loss, "trainer.epochs": 30, "paths.results": str(root), **(config or {})}
    semantic = {k: v for k, v in config.items() if k not in ("seed", "paths.results")}
    config_hash = hashlib.sha1(json.dumps([dataset, regularizer, semantic], sort_keys=True).encode()).hexdigest()[:8]
    name = f"{loss}__{regularizer}__mlp__{config_hash}__seed{seed}"
    run_dir = root / "runs" / dataset / name
    run_dir.mkdir(parents=True)
    (run_dir / "config.yaml").write_text(f"seed: {seed}\n")
    (run_dir / "overrides.txt").write_text(f"sweep=grid\nseed={seed}\n")
    epochs = [{"epoch": 0, "init/val/map@r": 0.3}] + [
        {"epoch": e, "train/base": 1.0 / e, "train/loss": 1.0 / e, "train/steps": 8, "val/map@r": 0.5 + e / 100}
        for e in (1, 2, 3)
    ]
    (run_dir / "epochs.jsonl").write_text("".join(json.dumps(r) + "\n" for r in epochs))
    record = {
        "run_dir": str(run_dir),
        "name": name,
        "dataset": dataset,
        "backbone": "mlp",
        "loss": loss,
        "regularizer": regularizer,
        "seed": seed,
        "config_hash": config_hash,
        "selection/metric": "val/map@r",
        "epochs": 3,
        "selected_epoch": 3,
        **{f"test/{m}": r1 - 0.01 * i for i, m in enumerate(METRICS)},
        **{f"raw/test/{m}": 0.99 for m in METRICS},
        **{f"init/test/{m}": 0.5 + seed / 100 for m in METRICS},
        "val/map@r": 0.53,
        "diag/test/coding_rate": 10.0 + seed,
        "diag/test/intra_inter_ratio": 0.5,
        **{f"config/{k}": v for k, v in config.items()},
        "config/regularizer": {} if regularizer == "none" else {regularizer: {"weight": 0.1}},
        "overrides": [f"loss={loss}", f"regularizer={regularizer}", f"seed={seed}", "sweep=grid"],
        "wall_time_s": 5.0,
        "train_time_s": 4.0,
        "device": "cpu",
        **(extra or {}),
        "status": status,
    }
    if status == "failed":
        (run_dir / "error.txt").write_text("Traceback ...\nRuntimeError: boom\n")
        record.update(error="RuntimeError: boom", error_file=str(run_dir / "error.txt"))
    atomic_write_json(run_dir / "record.json", record)
    return run_dir


@pytest.fixture
def grid(tmp_path):
    """Known test R@1 values: ms/none 90,92,94; ms/antico 95,96,97 (the best); pa/none 98,100 and a failed
    seed (flagged, never bold); pa/antico 93,93,93 and a pruned seed (the failed and pruned records carry
    absurd values that must not enter a mean); one run still running (no record.json)."""
    root = tmp_path / "results"
    for seed, r1 in enumerate((0.90, 0.92, 0.94)):
        write_run(root, "ms", "none", seed, r1)
    for seed, r1 in enumerate((0.95, 0.96, 0.97)):
        write_run(root, "ms", "antico", seed, r1)
    for seed, r1 in enumerate((0.98, 1.00)):
        write_run(root, "pa", "none", seed, r1)
    write_run(root, "pa", "none", 2, 0.0, status="failed")
    for seed in range(3):
        write_run(root, "pa", "antico", seed, 0.93)
    write_run(root, "pa", "antico", 3, 5.0, status="pruned", extra={"pruned_epoch": 2})
    running = root / "runs" / "digits" / "ms__none__mlp__0000abcd__seed7"
    running.mkdir(parents=True)
    (running / "config.yaml").write_text("seed: 7\n")
    (running / "epochs.jsonl").write_text(json.dumps({"epoch": 0}) + "\n" + json.dumps({"epoch": 1}) + "\n")
    (running / "overrides.txt").write_text("sweep=grid\n")
    return root


def test_dataframe_has_one_row_per_run_with_status_config_and_metrics(grid):
    runs = tables.load_runs(grid)
    assert len(runs) == 14
    assert runs["status"].value_counts().to_dict() == {"finished": 11, "failed": 1, "pruned": 1, "running": 1}
    for col in (
        "dataset",
        "loss",
        "regularizer",
        "seed",
        "config/trainer.epochs",
        "test/recall@1",
        "test/map@r",
        "diag/test/coding_rate",
        "wall_time_s",
        "train_time_s",
        "path",
    ):
        assert col in runs.columns, col
    running = runs[runs["status"] == "running"].iloc[0]
    assert (running["loss"], running["regularizer"], running["seed"], running["last_epoch"]) == ("ms", "none", 7, 1)
    assert json.loads(running["overrides"]) == ["sweep=grid"]
    assert pd.api.types.is_float_dtype(runs["test/recall@1"])
    assert runs["config/regularizer"].dropna().map(type).eq(str).all()  # dicts became JSON text: one type per column


def test_means_stds_seeds_bold_and_flags(grid):
    result = tables.make_tables([grid], plots=False)
    summary = result["summary"].set_index(["loss", "regularizer"])
    ms_none = summary.loc[("ms", "none")]
    assert ms_none["mean/test/recall@1"] == pytest.approx(0.92)
    assert ms_none["std/test/recall@1"] == pytest.approx(0.02)  # sample std (ddof=1) over the 3 seeds
    assert (ms_none["n"], ms_none["seeds"]) == (3, "0,1,2")
    pa_anti = summary.loc[("pa", "antico")]
    assert pa_anti["mean/test/recall@1"] == pytest.approx(0.93) and pa_anti["n"] == 3 and pa_anti["pruned"] == 1
    pa_none = summary.loc[("pa", "none")]
    assert (pa_none["n"], pa_none["failed"]) == (2, 1) and pa_none["mean/test/recall@1"] == pytest.approx(0.99)

    table = result["table"]
    assert table.mean.columns.tolist()[:2] == [("digits", "R@1"), ("digits", "R@2")]
    assert table.mean.index.tolist() == [("ms", "none"), ("ms", "antico"), ("pa", "none"), ("pa", "antico")]
    r1 = ("digits", "R@1")
    assert table.mean.loc[("ms", "antico"), r1] == pytest.approx(96.0)
    # pa/none has the highest mean but only 2 of 3 seeds: flagged, and the bold goes to ms/antico
    assert table.flagged.loc[("pa", "none"), r1] and not table.bold.loc[("pa", "none"), r1]
    assert table.bold[r1].tolist() == [False, True, False, False]
    assert table.seeds.tolist() == ["3", "3", "2/3", "3"]

    md = result["texts"]["table.md"]
    assert re.search(r"\| ms +\| antico +\| 3 +\| \*\*96\.0 ± 1\.0\*\* +\|", md)
    assert "99.0 ± 1.4 †" in md and "92.0 ± 2.0" in md and "fewer than 3 finished seeds" in md
    assert "digits: mean ± std over seeds (3 expected), test split" in md


def test_reference_rows_are_the_raw_inputs_and_the_untrained_network(grid):
    references = tables.make_tables([grid], plots=False)["texts"]["references.md"]
    assert re.search(r"\| raw inputs +\| 99\.0 ± 0\.0 ", references)
    # untrained: the 11 finished runs' init/test values, 50 + seed (seeds 0,1,2 x 3 groups, seeds 0,1 x 1)
    values = [50 + s for s in (0, 1, 2) * 3 + (0, 1)]
    mean, std = pd.Series(values).mean(), pd.Series(values).std()
    assert f"| untrained mlp | {mean:.1f} ± {std:.1f} " in references and "**" not in references


def test_delta_view_subtracts_the_no_regularizer_row_of_the_same_loss(grid):
    delta = tables.make_tables([grid], plots=False)["delta"]
    r1 = ("digits", "R@1")
    assert delta.mean.index.tolist() == [("ms", "antico"), ("pa", "antico")]
    assert delta.mean.loc[("ms", "antico"), r1] == pytest.approx(4.0)
    assert delta.mean.loc[("pa", "antico"), r1] == pytest.approx(-6.0)
    assert delta.flagged.loc[("pa", "antico"), r1]  # its baseline is short of seeds
    text = to_markdown(delta)
    assert "+4.0" in text and "-6.0 †" in text


def balanced(text: str) -> bool:
    depth = 0
    for ch in re.sub(r"\\[{}]", "", text):
        depth += {"{": 1, "}": -1}.get(ch, 0)
        if depth < 0:
            return False
    return depth == 0


def test_latex_is_booktabs_with_balanced_braces_and_full_rows(grid):
    texts = tables.make_tables([grid], plots=False)["texts"]
    tex = texts["table.tex"]
    assert balanced(tex) and balanced(texts["delta.tex"])
    lines = tex.splitlines()
    assert lines.index(r"\toprule") < lines.index(r"\midrule") < lines.index(r"\bottomrule")
    assert tex.count(r"\begin{") == tex.count(r"\end{") == 2
    spec = re.search(r"\\begin\{tabular\}\{(\w+)\}", tex).group(1)
    rows = [line for line in lines if line.endswith(r"\\")]
    assert len(rows) == 1 + 4 and all(line.count(" & ") == len(spec) - 1 for line in rows)
    assert r"\textbf{96.0 $\pm$ 1.0}" in tex and r"99.0 $\pm$ 1.4$^\dagger$" in tex
    assert r"R@1" in tex and "ms" in tex and "_" not in tex.replace(r"\_", "")


def test_latex_groups_several_datasets_under_multicolumn_headers(tmp_path):
    root = tmp_path / "results"
    for dataset in ("cub", "cars"):
        for loss in ("ms", "my_loss"):
            for seed in range(2):
                write_run(root, loss, "none", seed, 0.6 + seed / 100, dataset=dataset)
    result = tables.make_tables([root], plots=False, metrics=["recall@1", "map@r"])
    tex = result["texts"]["table.tex"]
    assert r"\multicolumn{2}{c}{cars} & \multicolumn{2}{c}{cub}" in tex
    assert r"\cmidrule(lr){3-4} \cmidrule(lr){5-6}" in tex and r"my\_loss" in tex and balanced(tex)
    assert "| cars R@1" in result["texts"]["table.md"]


def test_failed_pruned_and_running_runs_are_listed_with_their_paths(grid):
    damaged = grid / "runs" / "digits" / "ms__none__mlp__0000dead__seed5"
    damaged.mkdir()
    (damaged / "record.json").write_text('{"status": "fin')
    result = tables.make_tables([grid], plots=False)
    assert len(result["table"].mean) == 4  # the damaged record is in no group
    problems = result["texts"]["problems.md"]
    assert "unreadable record.json" in problems
    assert "RuntimeError: boom" in problems and str(grid / "runs" / "digits") in problems
    assert "error.txt" in problems and "pruned at epoch 2" in problems
    assert "no record.json (running, or killed): last epoch 1" in problems


def test_an_unnamed_swept_knob_becomes_a_row_column_and_a_plot(tmp_path):
    root = tmp_path / "results"
    for weight in (0.1, 0.3):
        for seed in range(2):
            write_run(
                root, "ms", "antico", seed, 0.9 + weight / 10 + seed / 100, config={"regularizer.antico.weight": weight}
            )
    result = tables.make_tables([root], metrics=["recall@1"])
    assert result["table"].mean.index.names == ["loss", "regularizer", "config/regularizer.antico.weight"]
    assert result["table"].mean.iloc[:, 0].round(2).tolist() == [91.5, 93.5]
    assert result["texts"]["table.md"].splitlines()[2].startswith("| loss | regularizer | antico.weight | seeds |")
    plots = [p.name for p in result["written"] if p.suffix == ".png"]
    assert sorted(plots) == ["curves.png", "regularizer.antico.weight.png"]  # the knob plot; every group's curves


def test_selection_by_sweep_and_where(grid, tmp_path):
    write_run(grid, "ms", "none", 9, 0.5, extra={"overrides": ["seed=9"]})  # not launched by sweep=grid
    runs = tables.load_runs(grid)
    assert len(tables.select_runs(runs, sweep="grid")) == 14
    assert set(tables.select_runs(runs, where=["loss=pa", "seed=1"])["regularizer"]) == {"none", "antico"}
    assert len(tables.select_runs(runs, where=["trainer.epochs=30", "regularizer=none", "loss=ms"])) == 4


def test_the_index_cache_matches_a_cold_read_and_sees_changed_records(grid):
    cold = tables.load_runs(grid, cache=False)
    tables.load_runs(grid)  # writes the index
    assert (grid / tables.INDEX_FILE).exists()
    warm = tables.load_runs(grid)
    pd.testing.assert_frame_equal(
        warm.drop(columns="updated_s_ago"), cold.drop(columns="updated_s_ago"), check_like=True
    )
    # a rerun rewrites a record: the cached row is replaced
    path = warm[(warm["loss"] == "ms") & (warm["regularizer"] == "none") & (warm["seed"] == 0)]["path"].item()
    record = json.loads((grid / path / "record.json").read_text())
    record["test/recall@1"] = 0.5
    atomic_write_json(grid / path / "record.json", record)
    again = tables.load_runs(grid)
    assert again.set_index("path").loc[path, "test/recall@1"] == 0.5


def test_unchanged_records_come_from_the_index_and_an_old_index_is_not_trusted(grid):
    tables.load_runs(grid)  # writes the index
    index_path = grid / tables.INDEX_FILE
    index = pd.read_parquet(index_path)
    index["test/recall@1"] = 0.123  # a value no record holds: it can only come from the index
    index.to_parquet(index_path, index=False)
    assert (tables.load_runs(grid)["test/recall@1"].dropna() == 0.123).all()
    first = index["path"].iloc[0]
    record = (Path(first) / "record.json").read_text()
    (Path(first) / "record.json").write_text(record + " ")  # a rewritten record (new size): read again
    warm = tables.load_runs(grid).set_index("path")["test/recall@1"]
    assert warm[first] == json.loads(record)["test/recall@1"] and (warm.drop(first).dropna() == 0.123).all()
    index["_stamp"] = index["_stamp"].str.split(":", n=1).str[1]  # an index written before its version
    index.to_parquet(index_path, index=False)
    assert not (tables.load_runs(grid)["test/recall@1"] == 0.123).any()


def test_command_line_errors_are_one_line(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    proc = subprocess.run(
        [sys.executable, "-m", "harness.tables", str(empty)], capture_output=True, text=True, cwd=REPO
    )
    assert (
        proc.returncode == 2
        and proc.stderr.strip().startswith("error: no runs under")
        and "\n" not in proc.stderr.strip()
    )


def test_real_digits_grid_through_hydra_multirun_then_tables(digits_ablation, tmp_path):
    """make run's grid (2 losses x 2 regularizers x 3 seeds of digits, sweep=digits_ablation, run once per suite),
    tabled from the command line."""
    results = digits_ablation
    out = tmp_path / "tables"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "harness.tables",
            str(results),
            "--sweep",
            "digits_ablation",
            "--seeds",
            "3",
            "--out",
            str(out),
        ],
        capture_output=True,
        text=True,
        cwd=REPO,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    lines = [line for line in proc.stdout.splitlines() if line.startswith("| ")]
    body = [line for line in lines if line.startswith(("| multi_similarity", "| proxy_anchor"))]
    assert len(body) == 4 + 2  # the table's 4 rows and the Δ view's 2
    assert all(re.search(r"\d+\.\d ± \d+\.\d", line) for line in body[:4])
    assert "12 runs (12 finished, 0 failed, 0 pruned, 0 running), 4 groups, 3 seeds expected" in proc.stdout
    runs = pd.read_parquet(out / "runs.parquet")
    assert len(runs) == 12 and set(runs["regularizer"]) == {"none", "antico_pair"}
    assert runs.groupby(["loss", "regularizer"])["seed"].nunique().eq(3).all()
    csv = pd.read_csv(out / "table.csv")
    assert len(csv) == 4 and (csv["n"] == 3).all()
    assert (out / "table.md").read_text() in proc.stdout and (out / "delta.md").read_text() in proc.stdout
    for name, body_rows in (("table.tex", 4), ("delta.tex", 2)):
        tex = (out / name).read_text()
        assert balanced(tex) and len([line for line in tex.splitlines() if line.endswith(r"\\")]) == 1 + body_rows
    assert (out / "plots" / "curves.png").is_file()  # the 4 groups' curves on shared axes, in one figure


# ----------------------------------------------------------------------------------------------- bad records
def finished_record(**changes):
    """A finished record's JSON text, as ``write_run`` writes it, with keys changed (None: removed)."""

    def mutate(record):
        for key, value in changes.items():
            if value is None:
                record.pop(key, None)
            else:
                record[key] = value
        return json.dumps(record).encode()

    return mutate


def without_test_metrics(record):
    return json.dumps({k: v for k, v in record.items() if not k.startswith("test/")}).encode()


BAD_RECORDS = {  # name: (the record.json bytes, or a function of the good record -> bytes; the reason listed)
    "binary": (b"\x89PNG\r\n\x1a\n\x00\xff\xfe\x00", "record.json is not UTF-8 text (a binary file?)"),
    "truncated": (b'{"status": "finished", "test/recall@1": 0.9', "unreadable record.json (truncated, or not JSON)"),
    "empty": (b"", "empty record.json (0 bytes)"),
    "not an object": (b"[1, 2, 3]", "record.json holds a list, not an object"),
    "stub": (b'{"name": "ms__none__mlp__0000beef__seed5"}', "record.json has no status"),
    "metric as text": (finished_record(**{"test/recall@1": "high"}), "test/recall@1 is text ('high'), not a number"),
    "seed as text": (finished_record(seed="5"), "seed is text ('5'), not an integer"),
    "dataset as a list": (finished_record(dataset=["digits"]), "dataset is a list"),
    "status unknown": (finished_record(status="done"), "status 'done' is none of finished, failed, pruned"),
    "finished without metrics": (without_test_metrics, "finished, but no test metrics"),
    "finished without config hash": (finished_record(config_hash=None), "finished, but no config_hash"),
}


def plant_bad_record(root, content):
    """A run ms/none seed 5 whose R@1 (0.10) would pull its group's mean down, with its record.json replaced."""
    run_dir = write_run(root, "ms", "none", 5, 0.10)
    path = run_dir / "record.json"
    path.write_bytes(content(json.loads(path.read_text())) if callable(content) else content)
    return path


@pytest.mark.parametrize("case", BAD_RECORDS)
def test_a_bad_record_is_listed_with_its_reason_and_the_tables_are_still_written(grid, case):
    content, reason = BAD_RECORDS[case]
    path = plant_bad_record(grid, content)
    result = tables.make_tables([grid], plots=False)
    assert [(p.path, p.effect) for p in result["problems"]] == [(str(path), "in no table")]
    assert reason in result["problems"][0].reason
    row = next(line for line in result["texts"]["problems.md"].splitlines() if line.startswith(f"| {path} "))
    assert reason in row and "in no table" in row
    # the rest as without it: ms/none is still 90, 92, 94 over 3 seeds; the bad run is no failed run either
    assert result["table"].mean.loc[("ms", "none"), ("digits", "R@1")] == pytest.approx(92.0)
    assert result["table"].seeds.tolist() == ["3", "3", "2/3", "3"]
    assert len(result["runs"]) == 14 and str(path.parent) not in set(result["runs"]["path"])
    assert (result["out"] / "problems.md").read_text() == result["texts"]["problems.md"]
    for name in ("table.md", "table.tex", "delta.md", "references.md", "table.csv", "runs.parquet"):
        assert (result["out"] / name).exists()


def test_a_bad_record_is_never_cached_and_is_read_again_once_fixed(grid, tmp_path):
    path = plant_bad_record(grid, b"\x00\x01")
    assert len(tables.make_tables([grid], plots=False)["problems"]) == 1
    assert len(tables.make_tables([grid], plots=False)["problems"]) == 1  # the index does not hide it
    good = write_run(tmp_path / "elsewhere", "ms", "none", 5, 0.10) / "record.json"
    path.write_bytes(good.read_bytes())
    result = tables.make_tables([grid], plots=False)
    assert result["problems"] == [] and "files with problems" not in result["texts"]["problems.md"]
    assert result["table"].mean.loc[("ms", "none"), ("digits", "R@1")] == pytest.approx((90 + 92 + 94 + 10) / 4)


def test_a_problems_list_of_an_earlier_call_does_not_outlive_its_problems(tmp_path):
    root = tmp_path / "results"
    for seed in range(2):
        write_run(root, "ms", "none", seed, 0.9)
    path = plant_bad_record(root, b"{}")
    out = tables.make_tables([root], plots=False)["out"]
    assert str(path) in (out / "problems.md").read_text()
    shutil.rmtree(path.parent)  # the bad run removed
    result = tables.make_tables([root], plots=False)
    assert "problems.md" not in result["texts"] and not (out / "problems.md").exists()
    assert result["problems_line"] is None and (out / "table.md").exists()


def test_a_finished_run_without_one_metric_is_listed_and_its_cell_flagged(grid):
    run = next(
        p for p in (grid / "runs" / "digits").iterdir() if p.name.startswith("ms__none__") and p.name.endswith("seed2")
    )
    record = json.loads((run / "record.json").read_text())
    del record["test/map@r"]
    atomic_write_json(run / "record.json", record)
    result = tables.make_tables([grid], plots=False)
    assert [(p.path, p.reason) for p in result["problems"]] == [
        (str(run / "record.json"), "finished, but no test/map@r")
    ]
    table, key = result["table"], ("ms", "none")
    assert table.mean.loc[key, ("digits", "MAP@R")] == pytest.approx(89.0)  # seeds 0 and 1: 88 and 90
    assert table.flagged.loc[key, ("digits", "MAP@R")] and not table.flagged.loc[key, ("digits", "R@1")]
    assert table.mean.loc[key, ("digits", "R@1")] == pytest.approx(92.0) and table.seeds.loc[key] == "2/3"
    csv = pd.read_csv(result["out"] / "table.csv").set_index(["loss", "regularizer"])
    assert (csv.loc[key, "n"], csv.loc[key, "n/test/map@r"], csv.loc[key, "n/test/recall@1"]) == (3, 2, 3)


def test_unreadable_epoch_logs_are_listed_and_the_curves_drawn_without_them(grid):
    finished = next(p for p in (grid / "runs" / "digits").iterdir() if p.name.startswith("ms__antico__"))
    (finished / "epochs.jsonl").write_bytes(b"\xff\xfe\x00binary")
    running = grid / "runs" / "digits" / "ms__none__mlp__0000abcd__seed7"
    (running / "epochs.jsonl").write_text('{"epoch": 0}\nnot json\n{"epoch": 2}\n')
    writing = grid / "runs" / "digits" / "pa__none__mlp__0000abce__seed8"  # a line being written: no problem
    writing.mkdir()
    (writing / "config.yaml").write_text("seed: 8\n")
    (writing / "epochs.jsonl").write_text('{"epoch": 0}\n{"epoch": 1}\n{"epo')
    result = tables.make_tables([grid], max_curves=4)
    problems = {p.path: (p.reason, p.effect) for p in result["problems"]}
    assert problems == {
        str(finished / "epochs.jsonl"): (
            "epochs.jsonl is not UTF-8 text (a binary file?)",
            "left out of the training curves",
        ),
        str(running / "epochs.jsonl"): (
            "epochs.jsonl line 2 is not JSON: Expecting value: line 1 column 1 (char 0)",
            "the run is listed without its last epoch",
        ),
    }
    runs = result["runs"].set_index("path")
    assert runs.loc[str(writing), "last_epoch"] == 1 and pd.isna(runs.loc[str(running), "last_epoch"])
    assert [p.name for p in result["written"] if p.name == "curves.png"] == ["curves.png"]  # drawn without it


def test_the_console_says_how_many_problems_and_where_in_one_line(grid, tmp_path):
    plant_bad_record(grid, b"\x00")
    out = tmp_path / "tables"
    proc = subprocess.run(
        [sys.executable, "-m", "harness.tables", str(grid), "--out", str(out), "--no-plots"],
        capture_output=True,
        text=True,
        cwd=REPO,
    )
    assert proc.returncode == 0, proc.stderr
    lines = [line for line in proc.stdout.splitlines() if line.startswith("problems:")]
    assert lines == [f"problems: 1 file with a problem, 1 failed, 1 pruned, 1 running; listed in {out / 'problems.md'}"]
    assert "Traceback" not in proc.stderr and (out / "table.md").exists()


def test_only_bad_records_is_one_line_naming_them(tmp_path):
    root = tmp_path / "results"
    plant_bad_record(root, b"[]")
    proc = subprocess.run(
        [sys.executable, "-m", "harness.tables", str(root), "--no-plots"], capture_output=True, text=True, cwd=REPO
    )
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.strip() == (
        f"error: no finished run under {root} (all failed, pruned or running, "
        "1 with records that cannot be read: listed above)"
    )
    assert "record.json holds a list, not an object" in proc.stdout
