"""No code from disk (harness/rundir/guard.py): whatever a run directory's config.yaml (or a study's search.yaml)
names, no entry point executes it. Planted targets that are real code execution (``pandas.read_pickle`` on a
planted pickle, ``torch.load(weights_only=False)``, ``pathlib.Path.unlink``) are refused in one line by
``python -m harness.inspect``, ``load_run``, the spectrum's siblings, ``python -m harness.tables``,
``python -m harness.search`` and a resumed run with a tracker; every file under conf/ passes the guard."""

from __future__ import annotations

import pickle
import shutil

import numpy as np
import pytest
import yaml
from conftest import CONF, exit_code, tiny
from hydra.utils import instantiate
from omegaconf import OmegaConf

import harness
from harness.errors import ConfigError
from harness.rundir.guard import allowed_targets, check_call, check_tree, guarded_config

FAST = ["sampler.batches_per_epoch=2", "eval.nmi=false", "eval.utilization=false"]


class Planted:
    """Unpickling this creates a file: the stand-in for arbitrary code."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def plants(tmp_path) -> dict:
    """The three targets, each with arguments that really run code or delete a file."""
    marker = tmp_path / "code-ran"
    pkl = tmp_path / "planted.pkl"
    pkl.write_bytes(pickle.dumps(Planted(marker)))
    victim = tmp_path / "victim.txt"
    victim.write_text("keep me")
    return {
        "read_pickle": {"_target_": "pandas.read_pickle", "filepath_or_buffer": str(pkl)},
        "torch_load": {"_target_": "torch.load", "f": str(pkl), "weights_only": False},
        "unlink": {"_target_": "pathlib.Path.unlink", "self": str(victim)},
    }


def nothing_ran(tmp_path) -> bool:
    return not (tmp_path / "code-ran").exists() and (tmp_path / "victim.txt").exists()


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """One finished digits run (copied by each test that plants into it)."""
    results = tmp_path_factory.mktemp("results")
    return harness.run(tiny(FAST, results))["run_dir"]


def planted_run(finished, tmp_path, where: str, node: dict):
    results = tmp_path / "results"
    run_dir = results / "runs" / "digits" / "planted"
    shutil.copytree(finished, run_dir)
    cfg = OmegaConf.load(run_dir / "config.yaml")
    OmegaConf.update(cfg, where, node, merge=False)
    OmegaConf.save(cfg, run_dir / "config.yaml")
    return run_dir


@pytest.mark.parametrize("name", ["read_pickle", "torch_load", "unlink"])
def test_the_planted_targets_are_real_code_execution(tmp_path, name):
    node = plants(tmp_path)[name]
    try:
        instantiate(node)  # what an unchecked reader would do
    except Exception:  # noqa: BLE001 - unlink returns None, read_pickle's object is not a DataFrame: it ran
        pass
    assert not nothing_ran(tmp_path)


@pytest.mark.parametrize(
    "name,where",
    [
        ("read_pickle", "dataset"),
        ("torch_load", "backbone"),
        ("unlink", "optimizer"),
        ("read_pickle", "loss.loss"),
        ("unlink", "logger.csv"),
    ],
)
def test_no_entry_point_executes_a_planted_target(finished, tmp_path, capsys, name, where):
    from harness.inspect.__main__ import main as inspect_main
    from harness.inspect.spectrum import regularizer_siblings
    from harness.tables.__main__ import main as tables_main

    run_dir = planted_run(finished, tmp_path, where, plants(tmp_path)[name])
    assert exit_code(inspect_main, [str(run_dir), "--only", "retrieval_grid"]) == 2
    line = capsys.readouterr().err.strip()
    assert f"{where}._target_" in line and "no file under conf/ names" in line and "\n" not in line
    with pytest.raises(ConfigError, match=f"{where}._target_"):
        harness.load_run(run_dir)
    with pytest.raises(ConfigError):
        regularizer_siblings(run_dir)
    sibling = shutil.copytree(finished, run_dir.parent / "sibling")  # a clean run beside the planted one
    assert regularizer_siblings(sibling) == []  # the planted neighbour is skipped, not built
    exit_code(tables_main, [str(tmp_path / "results"), "--no-plots", "--out", str(tmp_path / "tables")])
    assert nothing_ran(tmp_path)


def test_a_resumed_run_with_a_tracker_and_a_search_report_execute_nothing(finished, tmp_path, capsys):
    """The run's own config (the command) is what a resumed run builds; a study's planted search.yaml is checked."""
    from harness.search.__main__ import main as search_main
    from harness.search.driver import atomic_write_yaml, describe, optuna_targets
    from harness.search.study import Search, create_study

    results = tmp_path / "results"
    cfg = tiny([*FAST, "logger=csv"], results, epochs=2)

    def stop(epoch, _):
        if epoch == 1:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        harness.run(cfg, on_evaluate=stop)
    run_dir = next((results / "runs" / "digits").iterdir())
    saved = OmegaConf.load(run_dir / "config.yaml")
    saved.logger.csv = plants(tmp_path)["unlink"]
    saved.backbone = plants(tmp_path)["read_pickle"]
    OmegaConf.save(saved, run_dir / "config.yaml")
    assert harness.run(cfg)["status"] == "finished"
    assert nothing_ran(tmp_path)

    study = tmp_path / "study"
    search = Search("s", str(study), "val/map@r", "maximize", {}, [], storage="journal")
    create_study(search)
    for key, name in (("sampler", "read_pickle"), ("pruner", "torch_load")):
        data = describe(search)
        data[key] = plants(tmp_path)[name]
        atomic_write_yaml(study / "search.yaml", data)
        assert exit_code(search_main, [str(study)]) == 2
        assert f"{key}._target_" in capsys.readouterr().err
    assert "optuna.samplers.TPESampler" in optuna_targets()
    assert nothing_ran(tmp_path)


def conf_nodes():
    """Every node with a _target_ in conf/ (each file of each group), its unresolved values left out."""
    out = []

    def visit(node, where, path):
        if isinstance(node, dict):
            if isinstance(node.get("_target_"), str):
                plain = {k: v for k, v in node.items() if not (isinstance(v, str) and ("${" in v or v == "???"))}
                out.append(pytest.param(plain, where, id=f"{path}:{where or '.'}"))
            for key, value in node.items():
                visit(value, f"{where}.{key}" if where else str(key), path)

    for path in sorted(CONF.rglob("*.yaml")):
        if path.relative_to(CONF).parts[:2] != ("hydra", "launcher"):
            visit(yaml.safe_load(path.read_text()), "", str(path.relative_to(CONF)))
    return out


@pytest.mark.parametrize("node,where", conf_nodes())
def test_every_target_under_conf_passes_the_guard(node, where):
    check_call(node, where, "conf")


def test_a_saved_config_passes_and_the_guard_reads_it(finished):
    cfg = guarded_config(finished)
    assert cfg.backbone._target_ in allowed_targets() and "harness.io.atomic_write_text" not in allowed_targets()


@pytest.mark.parametrize(
    "node,expected",
    [
        ({"_target_": "harness.io.atomic_write_text", "path": "/tmp/x", "text": "x"}, "no file under conf/ names"),
        ({"_target_": "harness.models.MLP", "in_features": 64, "_args_": ["x"]}, "_args_ is refused"),
        ({"_target_": "harness.models.MLP", "in_features": 64, "_partial_": True}, "_partial_ is refused"),
        ({"_target_": "harness.models.MLP", "in_features": 64, "_recursive_": False}, "_recursive_ is refused"),
        ({"_target_": "harness.models.MLP", "in_features": 64, "_convert_": "all"}, "_convert_ is refused"),
        ({"_target_": "harness.models.MLP", "in_features": "64"}, "in_features '64' is not of type int"),
        ({"_target_": "harness.models.MLP", "in_features": 64, "batchnorm": "yes"}, "'yes' is not of type bool"),
        ({"_target_": "harness.models.MLP", "in_features": 64, "path": "/tmp"}, "path is not an argument"),
        ({"_target_": "harness.models.MLP", "in_features": "${oc.env:HOME}"}, "is an interpolation"),
        ({"_target_": "harness.models.MLP", "in_features": 64, "hidden": {"_target_": "os.getcwd"}}, "hidden._target_"),
        (
            {"_target_": "harness.models.backbones.timm_backbone", "model_name": "resnet18", "checkpoint_path": "/x"},
            "would make timm read a file",
        ),
        (
            {"_target_": "harness.models.backbones.timm_backbone", "model_name": "hf-hub:evil/model"},
            "is not a timm model name",
        ),
        ({"backbone": {"_convert_": "all"}}, "backbone._convert_ is a special key"),
    ],
)
def test_anything_but_what_conf_names_with_plain_arguments_is_refused(node, expected):
    with pytest.raises(ConfigError, match=expected) as err:
        check_tree(node, "", "config.yaml")
    assert "\n" not in str(err.value)


def test_load_run_refuses_an_unreadable_config_and_reloads_a_good_one(finished, tmp_path):
    assert harness.load_run(finished).embed(np.zeros((2, 64), "float32")).shape == (2, 64)
    run_dir = shutil.copytree(finished, tmp_path / "run")
    (run_dir / "config.yaml").write_text("backbone: [unclosed")
    with pytest.raises(ConfigError, match="is not a readable config"):
        harness.load_run(run_dir)
