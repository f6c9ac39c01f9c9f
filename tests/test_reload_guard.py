"""Reloading never executes code from disk (harness/rundir/guard.py): a planted config.yaml is refused in one
line and nothing it names runs; every real backbone config passes."""

import pickle

import pytest
from conftest import CONF, group_options
from hydra.utils import instantiate
from omegaconf import OmegaConf

from harness.errors import ConfigError
from harness.rundir.guard import safe_backbone, safe_head, safe_transform_kwargs


class Planted:
    """Unpickling this creates a file: the stand-in for arbitrary code."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def planted_pickle(tmp_path):
    marker = tmp_path / "code-ran"
    path = tmp_path / "planted.pkl"
    path.write_bytes(pickle.dumps(Planted(marker)))
    return path, marker


def test_the_planted_target_is_real_code_execution_and_is_refused(tmp_path):
    path, marker = planted_pickle(tmp_path)
    node = OmegaConf.create({"_target_": "pandas.read_pickle", "filepath_or_buffer": str(path)})
    instantiate(node)  # what an unchecked load_run would do: the planted file's code runs
    assert marker.exists()
    marker.unlink()
    with pytest.raises(ConfigError) as err:
        safe_backbone(node)
    assert "'pandas.read_pickle' is not a backbone load_run builds" in str(err.value) and "\n" not in str(err.value)
    assert not marker.exists()


@pytest.mark.parametrize(
    "node,expected",
    [
        (
            {
                "_target_": "harness.models.MLP",
                "in_features": 64,
                "hidden": {"_target_": "pandas.read_pickle", "filepath_or_buffer": "x.pkl"},
            },
            "no nested _target_",
        ),
        ({"_target_": "harness.models.MLP", "in_features": 64, "_partial_": True}, "only plain arguments"),
        (
            {
                "_target_": "harness.models.backbones.timm_backbone",
                "model_name": "resnet18",
                "checkpoint_path": "/tmp/evil.pth",
            },
            "it would read a file",
        ),
        (
            {
                "_target_": "timm.create_model",
                "model_name": "resnet18",
                "pretrained_cfg_overlay": {"file": "/tmp/evil.pth"},
            },
            "it would read a file",
        ),
        ({"_target_": "harness.models.MLP", "in_features": "${oc.env:HOME}"}, "interpolation"),
        ({"_target_": "os.system", "command": "touch /tmp/x"}, "'os.system' is not a backbone"),
    ],
)
def test_anything_but_plain_arguments_is_refused(node, expected):
    with pytest.raises(ConfigError, match=expected):
        safe_backbone(OmegaConf.create(node))


@pytest.mark.parametrize("name", group_options("backbone"))
def test_every_backbone_config_passes_and_reads_no_file(name):
    node = OmegaConf.load(CONF / "backbone" / f"{name}.yaml")
    node.in_chans = 3 if "in_chans" in node else None
    if "in_features" in node:
        node.in_features = 64
    safe = safe_backbone(node)
    assert safe._target_ == node._target_
    if "model_name" in node:
        assert safe.pretrained is False and "weights" not in safe


def test_head_and_transform_are_plain_values():
    assert safe_head({"embed_dim": 64, "normalize": True, "pooling": "avg"}) == {
        "embed_dim": 64,
        "normalize": True,
        "pooling": "avg",
    }
    with pytest.raises(ConfigError, match="head.embed_dim"):
        safe_head({"embed_dim": {"_target_": "os.getcwd"}, "normalize": True, "pooling": "avg"})
    assert safe_transform_kwargs({"size": 224, "resize": 256, "normalize": "imagenet"})["size"] == 224
    with pytest.raises(ConfigError, match="not an argument"):
        safe_transform_kwargs({"size": 224, "_target_": "os.getcwd"})


def test_load_run_of_a_directory_with_a_planted_config_executes_nothing(results, tmp_path):
    from conftest import tiny

    import harness

    record = harness.run(tiny(["sampler.batches_per_epoch=2", "eval.nmi=false", "eval.utilization=false"], results))
    run_dir = results / "runs" / "digits" / record["name"]
    assert harness.load_run(run_dir).embed(__import__("numpy").zeros((2, 64), "float32")).shape == (2, 64)
    path, marker = planted_pickle(tmp_path)
    cfg = OmegaConf.load(run_dir / "config.yaml")
    cfg.backbone = {"_target_": "pandas.read_pickle", "filepath_or_buffer": str(path)}
    OmegaConf.save(cfg, run_dir / "config.yaml")
    with pytest.raises(ConfigError) as err:
        harness.load_run(run_dir)
    assert "'pandas.read_pickle' is not a backbone load_run builds" in str(err.value) and "\n" not in str(err.value)
    assert not marker.exists()
    (run_dir / "config.yaml").write_text("backbone: [unclosed")
    with pytest.raises(ConfigError, match="is not a readable config"):
        harness.load_run(run_dir)
