"""Conclusions a reviewer trusts, through the real tables on synthetic records with known answers: a zero and a
clear true difference, runs of other library versions, a copied run directory, a baseline with another knob."""

from __future__ import annotations

import json
import re
import shutil

import numpy as np
import pytest
from test_tables import write_run

from harness import tables
from harness.errors import ConfigError

SEEDS = 5
BASE = np.array([0.60, 0.64, 0.58, 0.62, 0.66])  # the baseline's recall@1 over seeds (MAP@R = recall@1 - 0.02)


def ablation(root, zero_diffs, clear_diffs, **kwargs):
    """ms: none / zero (true difference 0: small symmetric noise) / clear (+5 points, small noise)."""
    for seed in range(SEEDS):
        write_run(root, "ms", "none", seed, BASE[seed], **kwargs)
        write_run(root, "ms", "zero", seed, BASE[seed] + zero_diffs[seed], **kwargs)
        write_run(root, "ms", "clear", seed, BASE[seed] + clear_diffs[seed], **kwargs)
    return root


@pytest.fixture
def known(tmp_path):
    zero = [0.004, -0.006, 0.002, -0.001, 0.0015]
    clear = [0.050, 0.046, 0.053, 0.049, 0.052]
    return ablation(tmp_path / "results", zero, clear)


def by_arm(result) -> dict:
    return {(c.arm[1], c.metric): c for c in result["comparisons"]}


def test_a_zero_true_difference_is_not_marked_and_a_clear_one_is(known):
    result = tables.make_tables([known], plots=False)
    c = by_arm(result)
    zero, clear = c[("zero", "test/map@r")], c[("clear", "test/map@r")]
    assert zero.paired.n == clear.paired.n == SEEDS
    assert zero.p_holm > 0.5 and clear.p_holm < 0.001
    assert zero.paired.low < 0 < zero.paired.high and clear.paired.low > 0.04
    assert clear.p_holm == pytest.approx(min(1.0, 2 * clear.paired.p))  # the smallest of a family of 2
    delta, tests = result["texts"]["delta.md"], result["texts"]["significance.md"]
    assert re.search(r"\| ms +\| clear +\|.*\| \*\*\+5\.0 ± \d\.\d\*\* +\|", delta)  # MAP@R: bold
    assert not re.search(r"\| ms +\| zero .*\*\*", delta)
    assert re.search(r"\| ms +\| clear +\| 5 +\| \*\*\+5\.0\*\* +\|", tests) and tests.startswith("*digits: paired")
    assert "2/2^n (0.0625 at 5 seeds), so at 5 seeds it can never reach α = 0.05" in tests  # the floor, said
    assert "Family: MAP@R across the table's 2 comparisons" in tests
    csv = result["out"] / "significance.csv"
    assert csv.exists() and "p_holm" in csv.read_text().splitlines()[0]


def test_alpha_and_family_change_what_is_tested(known):
    result = tables.make_tables([known], plots=False, alpha=1e-9, family="recall@1")
    c = by_arm(result)
    assert np.isnan(c[("clear", "test/map@r")].p_holm) and c[("clear", "test/recall@1")].p_holm > 1e-9
    assert "**" not in result["texts"]["delta.md"].split("\n\n", 2)[1]  # nothing below α = 1e-9
    with pytest.raises(ConfigError, match="--family nope"):
        tables.make_tables([known], plots=False, family="nope")
    with pytest.raises(ConfigError, match="--alpha 1.5"):
        tables.make_tables([known], plots=False, alpha=1.5)


def test_unpaired_seeds_are_named_and_left_out(known):
    for run in (known / "runs" / "digits").glob("ms__clear__*__seed4"):
        shutil.rmtree(run)
    c = by_arm(tables.make_tables([known], plots=False))[("clear", "test/map@r")]
    assert c.paired.n == 4 and c.seeds == [0, 1, 2, 3] and c.unpaired == "baseline 4"


def test_a_group_of_two_torch_versions_is_split_and_listed_and_a_build_label_is_no_version(tmp_path):
    root = tmp_path / "results"
    for seed, r1 in enumerate((0.90, 0.92, 0.94)):
        torch = "2.15.0" if seed == 2 else ("2.14.1+cu130" if seed == 0 else "2.14.1")
        write_run(root, "ms", "none", seed, r1, extra={"versions/torch": torch, "versions/hydra": str(seed)})
        write_run(root, "ms", "antico", seed, r1 + 0.03, extra={"versions/torch": "2.14.1"})
    result = tables.make_tables([root], plots=False)
    index = result["table"].mean.index.tolist()
    assert ("ms", "none", "2.14.1") in index and ("ms", "none", "2.15.0") in index  # hydra never splits
    assert result["table"].seeds.tolist() == ["2/3", "1/3", "3"]  # none (2.14.1), none (2.15.0), antico
    (c,) = [c for c in result["comparisons"] if c.metric == "test/map@r"]
    assert c.base == ("ms", "none", "2.14.1") and c.seeds == [0, 1]  # like with like: the same torch
    problems = (result["out"] / "problems.md").read_text()
    assert re.search(
        r"\| ms, none, digits +\| torch +\| 2\.14\.1 \(seeds 0,1\); 2\.15\.0 \(seed 2\) +\| split into rows", problems
    )
    assert "1 mixed group" in result["problems_line"]

    kept = tables.make_tables([root], plots=False, allow_mixed=["torch"])
    assert kept["table"].mean.index.tolist() == [("ms", "none"), ("ms", "antico")]
    assert (
        "--allow-mixed torch: the row ms, none, digits averages runs of 2.14.1 (seeds 0,1); 2.15.0 (seed 2)"
        in (kept["texts"]["table.md"])
    )
    with pytest.raises(ConfigError, match="--allow-mixed cuda: pick one of code, precision, device, data"):
        tables.make_tables([root], plots=False, allow_mixed=["cuda"])


def test_code_precision_and_device_split_a_group_but_the_thread_count_does_not(tmp_path):
    root = tmp_path / "results"
    for seed in range(3):
        code, precision = ("aaaa", "float32") if seed < 2 else ("bbbb", "bf16")
        device = f"cpu (x86_64, {seed + 1} threads)"
        extra = {"code/numerical": code, "precision": precision, "device": device}
        write_run(root, "ms", "none", seed, 0.9, extra=extra)
    result = tables.make_tables([root], plots=False)
    assert {m.key for m in result["mixed"]} == {"code", "precision"}
    assert len(result["table"].mean) == 2


def test_a_copied_run_directory_does_not_shift_the_mean_and_is_listed(tmp_path):
    root = tmp_path / "results"
    for seed, r1 in enumerate((0.90, 0.92, 0.97)):
        write_run(root, "ms", "none", seed, r1)
    before = tables.make_tables([root], plots=False)["summary"]
    original = next((root / "runs" / "digits").glob("*seed0"))
    shutil.copytree(original, root / "copies" / original.name)
    result = tables.make_tables([root], plots=False, cache=False)
    assert result["summary"]["mean/test/map@r"].tolist() == before["mean/test/map@r"].tolist()
    assert result["summary"]["n"].tolist() == [3]
    problems = (result["out"] / "problems.md").read_text()
    assert str(root / "copies" / original.name / "record.json") in problems and "a copied run directory" in problems
    assert str(original / "record.json") in problems  # the record kept, beside it
    assert "1 duplicate record" in result["problems_line"]


def test_of_two_records_of_one_run_the_newest_finished_is_kept(tmp_path):
    root = tmp_path / "results"
    first = write_run(root, "ms", "none", 0, 0.90, extra={"finished_at": "2026-01-01T10:00:00+0000"})
    second = root / "elsewhere" / first.name
    shutil.copytree(first, second)
    record = json.loads((second / "record.json").read_text())
    record.update({"finished_at": "2026-02-01T10:00:00+0000", "test/map@r": 0.5})
    (second / "record.json").write_text(json.dumps(record))
    result = tables.make_tables([root], plots=False)
    assert result["summary"]["mean/test/map@r"].tolist() == [0.5]
    assert [d.path for d in result["duplicates"]] == [str(first / "record.json")]


def test_a_baseline_trained_for_other_epochs_marks_the_delta_and_names_the_knob(tmp_path):
    root = tmp_path / "results"
    for seed, r1 in enumerate((0.90, 0.92, 0.94)):
        write_run(root, "ms", "none", seed, r1, config={"trainer.epochs": 20})
        write_run(root, "ms", "antico", seed, r1 + 0.04)  # write_run's default: 30 epochs
        write_run(root, "pa", "none", seed, r1)
        write_run(root, "pa", "antico", seed, r1 + 0.04)
    result = tables.make_tables([root], plots=False)
    delta = result["texts"]["delta.md"]
    assert re.search(r"\| ms +\| antico +\| \+4\.0 ± 0\.0 ≠", delta)
    assert re.search(r"\| pa +\| antico +\| \+4\.0 ± 0\.0 +\|", delta)  # like with like: no mark
    assert "≠ ms/antico vs. ms/none: the arms differ in trainer.epochs 30 vs 20" in delta
    assert "+4.0 ≠" in result["texts"]["significance.md"]
