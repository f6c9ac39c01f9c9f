"""Every paper preset is the authors' released run, knob by knob (issues 13, 25), and the protocols run as named.

``tests/data/protocols/<preset>.yaml`` transcribes the authors' command of a preset (``<preset>.<arm>.yaml``: of one
of its arms, e.g. arm=released_baseline): each knob's value in our units, the authors' flag and its source
(repo@commit:file:line). The preset (with that arm) is composed and compared: a preset without a transcription
fails, a knob that differs fails unless the transcription records the difference as deliberate (and then the
preset must really differ), and every source is a well-formed citation of the release the transcription names.

The Metrix presets are checked a second way, from the commands themselves: ``METRIX_COMMANDS`` holds every run
command of billpsomas/metrix@b679703's README, verbatim, and ``main.py``'s argument defaults; each command is
parsed as main.py would, mapped to harness keys, and compared with the preset and arm that claims it.

Then the protocols: the Reality Check's class-disjoint folds, its fold runs read back as separated and concatenated
rows, a search's objective under it (the mean over folds), and the authors' protocol (selection on test, recorded
and marked, never pooled, never searched).
"""

from __future__ import annotations

import json
import math
import re
import shlex
from functools import partial
from pathlib import Path

import numpy as np
import pytest
import yaml
from conftest import REPO, compose_cfg, group_options, paper_presets, tiny
from omegaconf import OmegaConf

from harness.config import validate_config
from harness.data.splits import carve_validation
from harness.errors import ConfigError

DATA = Path(__file__).parent / "data" / "protocols"
PRESETS = paper_presets()
TRANSCRIPTIONS = sorted(p.stem for p in DATA.glob("*.yaml"))
SOURCE = re.compile(r"^(?P<repo>[\w.-]+/[\w.-]+)@(?P<commit>[0-9a-f]{40}):(?P<path>[\w./-]+):(?P<line>[1-9]\d*)$")
# The AntiCo release imports datasampler/ but does not contain it: its sampler is cited from the NIR release.
FOREIGN_SOURCES = {"NUST-Machine-Intelligence-Laboratory/Anti-Collapse-Loss": {"ExplainableML/NonIsotropicProxyDML"}}


def transcription(name: str) -> dict:
    path = DATA / f"{name}.yaml"
    assert path.exists(), (
        f"conf/experiment/{name}.yaml has no transcription of the authors' run: add "
        f"tests/data/protocols/{name}.yaml (tests/data/protocols/README.md says how)"
    )
    return yaml.safe_load(path.read_text())


def composed(name: str):
    """The config a transcription describes: its preset, with its arm when the file is ``<preset>.<arm>.yaml``."""
    preset, _, arm = name.partition(".")
    return compose_cfg([f"experiment={preset}", *([f"arm={arm}"] if arm else [])])


def same(ours, theirs) -> bool:
    if isinstance(theirs, bool) or theirs is None or isinstance(theirs, str):
        return ours == theirs and type(ours) is type(theirs)
    if isinstance(theirs, (int, float)):
        return (
            isinstance(ours, (int, float)) and not isinstance(ours, bool) and math.isclose(ours, theirs, rel_tol=1e-12)
        )
    if isinstance(theirs, list):
        return isinstance(ours, list) and len(ours) == len(theirs) and all(same(a, b) for a, b in zip(ours, theirs))
    return ours == theirs


def select(cfg, key: str):
    """The value at a dotted key of a config (a DictConfig, or a plain dict), ``<missing>`` where there is none."""
    ours = OmegaConf.select(cfg if OmegaConf.is_config(cfg) else OmegaConf.create(cfg), key, default="<missing>")
    return OmegaConf.to_container(ours) if OmegaConf.is_config(ours) else ours


@pytest.mark.parametrize("name", TRANSCRIPTIONS)
def test_preset_equals_the_authors_released_run(name):
    doc = transcription(name)
    assert doc["preset"] == name.partition(".")[0] and doc.get("arm") == (name.partition(".")[2] or None)
    cfg = composed(name)
    wrong = []
    for knob in doc["knobs"]:
        if knob["key"] is None:
            assert knob.get("expressible") is False and knob.get("note"), knob
            continue
        ours = select(cfg, knob["key"])
        if "deviation" in knob:
            assert not same(ours, knob["value"]), (
                f"{name}: {knob['key']} is recorded as a deliberate difference "
                f"but the preset has the authors' value {ours!r}"
            )
            assert knob["deviation"].get("why"), knob
        elif not same(ours, knob["value"]):
            wrong.append(
                f"{knob['key']}: preset {ours!r}, authors {knob['value']!r} ({knob['flag']}; {knob['source']})"
            )
    assert not wrong, f"{name} differs from the authors' released run:\n  " + "\n  ".join(wrong)


@pytest.mark.parametrize("name", TRANSCRIPTIONS)
def test_every_knob_cites_the_release(name):
    doc = transcription(name)
    assert re.fullmatch(r"[0-9a-f]{40}", doc["commit"]) and doc["repo"] and doc["command"] and doc["arxiv"]
    keys = [k["key"] for k in doc["knobs"] if k["key"]]
    assert len(keys) == len(set(keys)), f"{name}: a key is transcribed twice"
    for knob in doc["knobs"]:
        assert {"key", "value", "flag", "source"} <= set(knob), knob
        m = SOURCE.match(knob["source"])
        assert m, f"{name}: {knob['source']!r} is not repo@commit:file:line"
        if m["repo"] == doc["repo"]:
            assert m["commit"] == doc["commit"], knob["source"]
        else:
            assert m["repo"] in FOREIGN_SOURCES.get(doc["repo"], set()), knob["source"]


def test_every_preset_has_its_transcription_and_every_transcription_its_preset_and_arm():
    assert sorted(set(PRESETS) - set(TRANSCRIPTIONS)) == []
    arms = set(group_options("arm"))
    orphans = [
        t for t in TRANSCRIPTIONS if t.partition(".")[0] not in PRESETS or (t.partition(".")[2] or "method") not in arms
    ]
    assert not orphans, f"transcriptions without a conf/experiment preset or arm: {orphans}"


def test_the_antico_presets_have_no_pair_based_loss_and_the_authors_proxy_settings():
    """The issue's first finding: --loss antico is ProxyAnchor (alpha 64, w_align 0.0035) + AntiCo, nothing else."""
    for preset in ("cub_antico", "cars_antico"):
        cfg = compose_cfg([f"experiment={preset}"])
        assert cfg.loss.name == "proxy_anchor" and list(cfg.regularizer) == ["antico_batch_proxy"]
        assert cfg.loss.loss.alpha == 64 and cfg.loss.weight == 0.0035 and cfg.loss.lr_mult == 2000
        assert cfg.regularizer.antico_batch_proxy.scale == "reference"
        assert cfg.optimizer._target_ == "torch.optim.Adam" and cfg.optimizer.weight_decay == 4e-4


# ----------------------------------------------------------------------------------------------- the Metrix commands
METRIX = "billpsomas/metrix@b6797035fd82baf46ad89f8856721ae01afdf4f0"
# main.py's argument defaults (main.py:30-51), the ones the README's commands leave out
METRIX_DEFAULTS = {
    "seed": 1,  # main.py:30
    "dataset": "cub",  # :31
    "batch_size": 32,  # :34
    "num_workers": 4,  # :35
    "embedding_size": 128,  # :36
    "bn_freeze": 1,  # :37
    "l2_norm": 1,  # :38
    "num_epochs": 60,  # :39
    "warm": 5,  # :41
    "lr_decay_step": 10,  # :42
    "lr_decay_gamma": 0.1,  # :43
    "lr": 1e-4,  # :45
    "weight_decay": 1e-4,  # :46
    "loss": "contrastive",  # :47
    "images_per_class": 5,  # :48
    "save_model": False,  # :49
    "mode": "feature",  # :50
    "alpha": 2.0,  # :51
}
P = "python3 main.py --data_root /path/to/datasets/ --save_root /path/to/output/ --batch_size 100 --num_workers 4"
# README.md line -> the command, verbatim (the --data_root / --save_root paths shortened into P where they appear)
METRIX_COMMANDS = {
    46: f"{P} --dataset cub --embedding_size 512 --num_epochs 60 --lr 1e-4 --lr_decay_gamma 0.1 --loss contrastive --mode baseline --alpha 2.0 --save_model True",  # noqa: E501
    52: f"{P} --dataset cars --embedding_size 512 --num_epochs 60 --lr 1e-4 --lr_decay_gamma 0.1 --loss contrastive --mode baseline --alpha 2.0 --save_model True",  # noqa: E501
    58: "python3 main.py --dataset sop --batch_size 100 --num_workers 4 --embedding_size 512 --num_epochs 60 --lr 3e-5 --lr_decay_gamma 0.25 --bn_freeze 0 --loss contrastive --images_per_class 5 --mode baseline --alpha 2.0 --save_model True",  # noqa: E501
    64: "python3 main.py --dataset sop --batch_size 100 --num_workers 4 --embedding_size 512 --num_epochs 60 --lr 3e-5 --lr_decay_step 5 --lr_decay_gamma 0.25 --warm 1 --bn_freeze 0 --loss contrastive --images_per_class 5 --mode baseline --alpha 2.0 --save_model True",  # noqa: E501
    84: f"{P} --dataset cub --embedding_size 512 --num_epochs 60 --lr 1e-4 --lr_decay_gamma 0.1 --loss contrastive --mode feature --alpha 2.0 --save_model True",  # noqa: E501
    90: f"{P} --dataset cars --embedding_size 512 --num_epochs 60 --lr 1e-4 --lr_decay_gamma 0.1 --loss contrastive --mode feature --alpha 2.0 --save_model",  # noqa: E501
    96: f"{P} --dataset sop --embedding_size 512 --num_epochs 60 --lr 3e-5 --lr_decay_gamma 0.25 --loss contrastive --images_per_class 5 --mode feature --alpha 2.0 --save_model",  # noqa: E501
    102: f"{P} --dataset inshop --embedding_size 512 --num_epochs 60 --lr 1e-4 --lr_decay_gamma 0.25 --loss contrastive --images_per_class 5 --mode feature --alpha 2.0 --save_model",  # noqa: E501
    203: f"{P} --dataset cub --embedding_size 512 --num_epochs 60 --lr 1e-4 --lr_decay_step 5 --lr_decay_gamma 0.5 --loss multisimilarity --mode baseline --alpha 2.0 --save_model",  # noqa: E501
    209: f"{P} --dataset cars --embedding_size 512 --num_epochs 60 --lr 1e-4 --lr_decay_step 5 --lr_decay_gamma 0.5 --loss multisimilarity --mode baseline --alpha 2.0 --save_model",  # noqa: E501
    215: f"{P} --dataset sop --embedding_size 512 --num_epochs 60 --lr 6e-4 --lr_decay_step 20 --lr_decay_gamma 0.25 --warm 1 --images_per_class 5 --bn_freeze 0 --loss multisimilarity --mode baseline --alpha 2.0 --save_model",  # noqa: E501
    221: f"{P} --dataset inshop --embedding_size 512 --num_epochs 60 --lr 6e-4 --lr_decay_step 20 --lr_decay_gamma 0.25 --warm 1 --images_per_class 5 --bn_freeze 0 --loss multisimilarity --mode baseline --alpha 2.0 --save_model",  # noqa: E501
    229: f"{P} --dataset cub --embedding_size 512 --num_epochs 100 --lr 1e-4 --lr_decay_gamma 0.5 --loss multisimilarity --mode feature --alpha 2.0 --save_model",  # noqa: E501
    331: f"{P} --dataset cub --embedding_size 512 --num_epochs 60 --lr 1e-4 --lr_decay_step 5 --lr_decay_gamma 0.5 --loss proxyanchor --mode baseline --alpha 2.0 --save_model",  # noqa: E501
    337: f"{P} --dataset cars --embedding_size 512 --num_epochs 60 --lr 1e-4 --lr_decay_step 5 --lr_decay_gamma 0.5 --loss proxyanchor --mode baseline --alpha 2.0 --save_model",  # noqa: E501
    343: f"{P} --dataset sop --embedding_size 512 --num_epochs 60 --lr 6e-4 --lr_decay_step 20 --lr_decay_gamma 0.25 --warm 1 --images_per_class 5 --bn_freeze 0 --loss proxyanchor --mode baseline --alpha 2.0 --save_model",  # noqa: E501
    349: f"{P} --dataset inshop --embedding_size 512 --num_epochs 60 --lr 6e-4 --lr_decay_step 20 --lr_decay_gamma 0.25 --warm 1 --images_per_class 5 --bn_freeze 0 --loss proxyanchor --mode baseline --alpha 2.0 --save_model",  # noqa: E501
    358: f"{P} --dataset cub --embedding_size 512 --num_epochs 100 --lr 1e-4 --lr_decay_gamma 0.5 --loss proxyanchor --mode feature --alpha 2.0 --save_model",  # noqa: E501
}
# README.md line -> (preset, arm) that claims the command
METRIX_CLAIMS = {
    46: (
        "cub_metrix",
        "baseline",
    ),  # the matched baseline IS the released one: --mode feature -> baseline, nothing else
    52: ("cars_metrix", "baseline"),
    58: ("sop_metrix", "released_baseline"),  # --bn_freeze 0: not the matched baseline
    64: ("inshop_metrix", "released_baseline"),  # lr, decay step, warm-up, BatchNorm: not the matched baseline
    84: ("cub_metrix", "method"),
    90: ("cars_metrix", "method"),
    96: ("sop_metrix", "method"),
    102: ("inshop_metrix", "method"),
}
# README.md line -> {key: why the preset differs}: what is declared, nothing else may differ
METRIX_DECLARED = {64: {"dataset._target_": "--dataset sop under the In-Shop heading (README.md:61): read as In-Shop"}}
# README.md line -> why no preset claims it
METRIX_UNCLAIMED = {
    **dict.fromkeys((203, 209, 215, 221), "multi-similarity baseline: runnable, but no preset claims a MS setting"),
    **dict.fromkeys((331, 337, 343, 349), "ProxyAnchor baseline: runnable, but no preset claims a PA setting"),
    229: "MS + Metrix: main.py:249-256 has no feature-level branch for multisimilarity: it stops at its first step",
    358: "PA + Metrix: main.py:257-259 trains proxyanchor in baseline mode only, the run stops at its first step",
}
METRIX_DATASETS = {
    "cub": "harness.data.cub200.load_cub200",
    "cars": "harness.data.cars196.load_cars196",
    "sop": "harness.data.sop.load_sop",
    "inshop": "harness.data.inshop.load_inshop",
}


def parse_metrix(command: str) -> dict:
    """The arguments main.py would see: its defaults, then the command's flags (``--save_model`` may go bare)."""
    words = shlex.split(command)[2:]
    args, i = dict(METRIX_DEFAULTS), 0
    while i < len(words):
        name = words[i].removeprefix("--")
        assert name in METRIX_DEFAULTS or name in ("data_root", "save_root"), f"main.py has no flag --{name}"
        bare = i + 1 == len(words) or words[i + 1].startswith("--")
        value, i = ("True", i + 1) if bare else (words[i + 1], i + 2)
        default = METRIX_DEFAULTS.get(name, "")
        number = isinstance(default, (int, float)) and not isinstance(default, bool)
        args[name] = type(default)(float(value)) if number else value
    return args


def metrix_expected(args: dict) -> dict:
    """The command's arguments in harness keys (main.py:59-200, train.py)."""
    balanced = args["dataset"] in (
        "sop",
        "inshop",
    )  # main.py:68-88: random batches on CUB/Cars, balanced on SOP/In-Shop
    out = {
        "dataset._target_": METRIX_DATASETS[args["dataset"]],
        "loss.name": args["loss"],
        "sampler._target_": "harness.data.samplers." + ("MPerClassBatchSampler" if balanced else "RandomBatchSampler"),
        "sampler.batch_size": args["batch_size"],
        "head.embed_dim": args["embedding_size"],
        "head.normalize": bool(args["l2_norm"]),
        "backbone.batchnorm": "eval" if args["bn_freeze"] else "train",
        "trainer.epochs": args["num_epochs"],
        "trainer.freeze_backbone_epochs": args["warm"],
        "scheduler.step_size": args["lr_decay_step"],
        "scheduler.gamma": args["lr_decay_gamma"],
        "optimizer.lr": args["lr"],
        "optimizer.weight_decay": args["weight_decay"],
    }
    if balanced:
        out["sampler.m"] = args["images_per_class"]
    if args["mode"] == "baseline":
        out["regularizer"] = None
    else:
        level = {"feature": "feature", "embed": "embedding", "input": "input"}[args["mode"]]
        name = f"regularizer.metrix_{level}"
        out.update({f"{name}.level": level, f"{name}.beta_a": args["alpha"], f"{name}.beta_b": args["alpha"]})
    return out


def test_every_metrix_readme_command_is_claimed_by_a_preset_or_says_why_not():
    assert sorted(METRIX_CLAIMS.keys() | METRIX_UNCLAIMED.keys()) == sorted(METRIX_COMMANDS)
    assert not METRIX_CLAIMS.keys() & METRIX_UNCLAIMED.keys()
    claimed = {c for c in METRIX_CLAIMS.values() if c[1] == "method"}
    assert claimed == {(p, "method") for p in PRESETS if p.endswith("_metrix")}  # every Metrix preset has its command


@pytest.mark.parametrize("line", sorted(METRIX_CLAIMS))
def test_metrix_presets_and_arms_equal_the_readme_commands(line):
    preset, arm = METRIX_CLAIMS[line]
    args = parse_metrix(METRIX_COMMANDS[line])
    cfg = compose_cfg([f"experiment={preset}", f"arm={arm}"])
    validate_config(cfg)
    declared = METRIX_DECLARED.get(line, {})
    wrong = [
        f"{key}: preset {select(cfg, key)!r}, README.md:{line} {value!r}"
        for key, value in metrix_expected(args).items()
        if not same(select(cfg, key), value) and key not in declared
    ]
    assert not wrong, f"experiment={preset} arm={arm} differs from {METRIX} README.md:{line}:\n  " + "\n  ".join(wrong)
    for key in declared:  # a declared difference is a real one
        assert not same(select(cfg, key), metrix_expected(args)[key]), key
    if arm != "method":  # what the release published for that command is in the arm's published: block
        assert cfg["published"]["command"] == f"README.md:{line}" and cfg["published"]["recall@1"] > 50


# ----------------------------------------------------------------------------------------------- the arms
@pytest.mark.parametrize("arm", group_options("arm"))
def test_the_baseline_arm_is_the_method_run_without_the_method_and_the_released_one_its_own_row(arm):
    """arm=baseline: the preset's base loss alone at weight 1, every other knob untouched (matched); arm=method: the
    preset; arm=released_baseline: the paper's own baseline command, which differs from the matched one."""
    preset = "cub_nir128"
    method = OmegaConf.to_container(compose_cfg([f"experiment={preset}"]))
    got = OmegaConf.to_container(compose_cfg([f"experiment={preset}", f"arm={arm}"]))
    if arm == "method":
        assert got == method
        return
    assert got["regularizer"] is None and got["loss"]["weight"] == 1.0 and got["published"]["arm"] == arm
    differs = {
        k for part in ("loss", "trainer") for k in got[part] if got[part][k] != method[part][k] and k != "weight"
    }
    assert differs == (set() if arm == "baseline" else {"lr_mult", "freeze_backbone_epochs"})
    for key in set(method) - {"regularizer", "loss", "trainer", "published"}:
        assert got[key] == method[key], key


@pytest.mark.parametrize("preset", ["cub_nir", "sop_nir128", "cub_antico", "cub_metrix"])
def test_a_released_baseline_the_paper_does_not_release_is_one_line_naming_what_exists(preset):
    cfg = compose_cfg([f"experiment={preset}", "arm=released_baseline"])
    with pytest.raises(ConfigError, match=r"^arm=released_baseline: .*arm=baseline"):
        validate_config(cfg)


@pytest.mark.parametrize("preset", ["sop_antico", "cub_nir128", "inshop_metrix"])  # a preset of each paper
@pytest.mark.parametrize("protocol", ["authors", "reality_check"])
def test_the_presets_compose_under_every_protocol(preset, protocol):
    cfg = compose_cfg([f"experiment={preset}", f"protocol={protocol}"])
    validate_config(cfg)
    assert (cfg.selection.get("split", "val") == "test") == (protocol == "authors")
    if protocol == "authors":
        assert cfg.dataset.val_classes is None and cfg.dataset.val_fraction == 0
    if protocol == "reality_check":
        assert cfg.dataset.val_classes == "fold 0 of 4" and cfg.head.embed_dim == 128


# ----------------------------------------------------------------------------------------------- Reality Check
def test_reality_check_folds_are_class_disjoint_contiguous_and_cover_the_training_classes():
    classes = list(range(1, 101))  # CUB's training classes
    folds = [carve_validation(classes, f"fold {i} of 4") for i in range(4)]
    assert [v[:2] + v[-1:] for _, v in folds] == [[1, 2, 25], [26, 27, 50], [51, 52, 75], [76, 77, 100]]
    assert sorted(c for _, v in folds for c in v) == classes
    for train, val in folds:
        assert not set(train) & set(val) and sorted(train + val) == classes
    for bad, match in (("fold 4 of 4", "0 <= fold < folds"), ("fold 0 of 1", "folds >= 2"), ("half", "fold I of K")):
        with pytest.raises(ConfigError, match=match):
            carve_validation(classes, bad)
    with pytest.raises(ConfigError, match="cannot make 4 folds of 2 classes"):  # digits' 5 training classes
        carve_validation([0, 1, 2, 3, 4], "fold 0 of 4")


def test_a_reality_check_override_of_its_fold_split_is_refused():
    cfg = compose_cfg(["protocol=reality_check", "dataset.val_classes=[3,4]"])
    with pytest.raises(ConfigError, match=r"validates on fold 0 of 4, but dataset.val_classes=\[3, 4\]; drop that"):
        validate_config(cfg)


RC = ["protocol=reality_check", "dataset.train_classes=[0,1,2,3,4,5,6,7]", "dataset.test_classes=[8,9]"]
SHORT = ["sampler.batches_per_epoch=3", "eval.nmi=false", "eval.raw_baseline=false", "eval.utilization=false"]


@pytest.fixture(scope="module")
def rc_results(tmp_path_factory):
    """One Reality Check model (4 folds, 1 seed) trained as an Optuna trial trains it (harness.protocols.folds, a
    real in-memory study), and the same config under the clean and the authors' protocol."""
    import optuna

    from harness.protocols.folds import run_folds
    from harness.search.worker import report_epoch
    from harness.training.task import run

    results = tmp_path_factory.mktemp("rc") / "results"
    trial = optuna.create_study(direction="maximize").ask()
    hook = lambda offset: partial(report_epoch, trial, "val/map@r", offset=offset)  # noqa: E731
    model = run_folds(tiny([*RC, *SHORT], results, epochs=2), run, hook, ["val/map@r", "test/map@r"])
    records = [json.loads((Path(d) / "record.json").read_text()) for d in model["fold_run_dirs"]]
    split8 = ["dataset.train_classes=[0,1,2,3,4,5,6,7]", "dataset.test_classes=[8,9]", *SHORT]
    clean = run(tiny([*split8, "dataset.val_classes=[6,7]"], results, epochs=2))
    authors = run(tiny([*split8, "protocol=authors"], results, epochs=2))
    return results, records, clean, authors, model, trial


def test_a_fold_is_a_run_of_its_own_identity_and_keeps_its_test_embeddings(rc_results):
    from harness.protocols.embeddings import RECORD_KEY, load_test_embeddings

    _, records, *_ = rc_results
    assert len({r["run_dir"] for r in records}) == 4 and len({r["config_hash"] for r in records}) == 4
    assert [r["config/dataset.val_classes"] for r in records] == [f"fold {i} of 4" for i in range(4)]
    for r in records:
        emb = load_test_embeddings(Path(r["run_dir"]) / r[RECORD_KEY])
        assert emb.query.shape == (r["test/num_queries"], 128) and set(np.unique(emb.query_labels)) == {8, 9}


def test_the_tables_read_the_folds_back_as_separated_and_concatenated_rows_beside_the_clean_and_authors(rc_results):
    from harness.evaluation import evaluate_embeddings
    from harness.evaluation.diagnostics import normalize_rows
    from harness.protocols.embeddings import RECORD_KEY, load_test_embeddings
    from harness.tables.make import make_tables

    results, records, clean, authors, *_ = rc_results
    out = make_tables([results], plots=False, cache=False)
    rows = {r: m for r, m in out["table"].mean.iterrows()}
    protocols = sorted(key[-1] for key in rows)
    assert protocols == ["authors ‡", "clean", "reality_check (concatenated)", "reality_check (separated)"]
    sep = rows[("multi_similarity", "none", "reality_check (separated)")]
    assert sep[("digits", "MAP@R")] == pytest.approx(100 * np.mean([r["test/map@r"] for r in records]))
    # concatenated: the fold models' float16 test embeddings, normalised, side by side (4 x 128 = 512-d)
    parts = [load_test_embeddings(Path(r["run_dir"]) / r[RECORD_KEY]) for r in records]
    joined = np.hstack([normalize_rows(p.query, np.float32) for p in parts])
    want = evaluate_embeddings(joined, parts[0].query_labels, with_nmi=False)
    cat = rows[("multi_similarity", "none", "reality_check (concatenated)")]
    assert cat[("digits", "MAP@R")] == pytest.approx(100 * want["map@r"]) and cat[("digits", "R@1")] == pytest.approx(
        100 * want["recall@1"]
    )
    assert rows[("multi_similarity", "none", "clean")][("digits", "MAP@R")] == pytest.approx(100 * clean["test/map@r"])
    text = out["texts"]["table.md"]
    assert "authors ‡" in text and "‡ authors' protocol (protocol=authors)" in text  # marked, with its note


def test_the_authors_protocol_trains_on_every_class_and_says_its_selection_is_optimistic(rc_results):
    _, _, clean, authors, *_ = rc_results
    assert authors["selection"] == "test (optimistic)" and authors["selection/metric"] == "test/map@r"
    assert clean["selection"] == "validation" and clean["selection/metric"] == "val/map@r"
    assert not any(k.startswith("val/") for k in authors) and "val/map@r" in clean
    epochs = [json.loads(line) for line in (Path(authors["run_dir"]) / "epochs.jsonl").read_text().splitlines()]
    chosen = max((e for e in epochs if "test/map@r" in e), key=lambda e: e["test/map@r"])
    assert authors["selected_epoch"] == chosen["epoch"]  # the best test epoch, as the papers pick it


def test_a_search_under_the_authors_protocol_is_refused_before_anything_runs():
    from hydra import compose, initialize_config_dir

    from harness.search.driver import build_search

    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        config = compose("config", overrides=["sweep=tune_eps", "protocol=authors"], return_hydra_config=True)
    spec = OmegaConf.to_container(config.hydra.sweeper, resolve=False)
    with pytest.raises(ConfigError, match="a search never tunes on the test split, and protocol=authors selects on it"):
        build_search(spec, [], config)


def test_a_trial_under_the_reality_check_runs_every_fold_and_its_value_is_their_mean(rc_results):
    _, records, _, _, model, trial = rc_results
    assert [r["config/protocol.fold"] for r in records] == [0, 1, 2, 3] and model["folds"] == 4
    assert model["val/map@r"] == pytest.approx(np.mean([r["val/map@r"] for r in records]))
    assert model["test/map@r"] == pytest.approx(np.mean([r["test/map@r"] for r in records]))
    # the pruner sees fold f's epoch e at step f * epochs + e: trials are compared fold by fold
    steps = trial.study.trials[0].intermediate_values
    assert sorted(steps) == list(range(1, 9))
    fold1 = [json.loads(line) for line in (Path(records[1]["run_dir"]) / "epochs.jsonl").read_text().splitlines()]
    assert [steps[3], steps[4]] == [e["val/map@r"] for e in fold1 if e["epoch"] in (1, 2)]
