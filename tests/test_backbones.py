"""Backbones: every conf/backbone file builds an EmbeddingModel; timm options (frozen BatchNorm, local
weights, pretrained offline) behave as documented; the CUDA speed switches keep the numbers."""

from __future__ import annotations

import pytest
import torch
from conftest import compose_cfg, group_options
from hydra.utils import instantiate
from omegaconf import open_dict

from harness.errors import ConfigError
from harness.models import EmbeddingModel
from harness.models.backbones import accelerate, timm_backbone

# input each backbone is tested at (ViTs at 64 px through timm's img_size, as the config comment says)
INPUTS = {"mlp": (64,), "small_cnn": (3, 28, 28)}
EXTRA = {"vit_small": {"img_size": 64}, "deit_small": {"img_size": 64}}


@pytest.mark.parametrize("option", group_options("backbone"))
def test_every_backbone_file_builds_an_embedding_model(option):
    cfg = compose_cfg([f"backbone={option}", "head.pooling=double"])
    shape = INPUTS.get(option, (3, 64, 64))
    with open_dict(cfg):
        for key, value in (("in_chans", shape[0]), ("in_features", shape[0])):
            if key in cfg.backbone.keys():  # `in` alone is False for a ??? value
                cfg.backbone[key] = value
        cfg.backbone.update(EXTRA.get(option, {}))
    backbone = instantiate(cfg.backbone)
    assert int(backbone.num_features) > 0 and hasattr(backbone, "forward_features")
    model = EmbeddingModel(backbone, embed_dim=16, normalize=True, pooling=cfg.head.pooling).eval()
    with torch.no_grad():
        z = model(torch.randn(2, *shape))
    assert z.shape == (2, 16)
    assert torch.allclose(z.norm(dim=1), torch.ones(2), atol=1e-5)


def test_frozen_batchnorm_keeps_statistics_and_affine_fixed():
    model = EmbeddingModel(timm_backbone("resnet18", frozen_bn=True, in_chans=3), embed_dim=8)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in model.modules())
    bn = model.backbone.bn1
    assert "weight" not in dict(bn.named_parameters()) and "running_mean" in dict(bn.named_buffers())
    before = {k: v.clone() for k, v in model.backbone.state_dict().items() if "bn" in k}
    x = torch.randn(4, 3, 32, 32)
    model.train()
    train_out = model(x)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    train_out.sum().backward()
    optimizer.step()
    after = model.backbone.state_dict()
    assert all(torch.equal(v, after[k]) for k, v in before.items())  # no statistic or affine update
    model.eval()
    torch.testing.assert_close(model(x), EmbeddingModel.forward(model.train(), x))  # eval-mode stats in training


@pytest.mark.parametrize("suffix", [".pth", ".safetensors"])
def test_local_weights_file_loads_every_tensor_but_the_classifier(tmp_path, suffix):
    import timm

    torch.manual_seed(1)
    source = timm.create_model("resnet18", num_classes=1000)  # as saved from a pretrained ImageNet model
    path = tmp_path / f"resnet18{suffix}"
    if suffix == ".pth":
        torch.save({"state_dict": source.state_dict()}, path)
    else:
        from safetensors.torch import save_file

        save_file(source.state_dict(), str(path))
    torch.manual_seed(2)
    model = timm_backbone("resnet18", weights=str(path), in_chans=3)
    expected = {k: v for k, v in source.state_dict().items() if not k.startswith("fc.")}
    got = model.state_dict()
    assert set(got) == set(expected)
    assert all(torch.equal(got[k], v) for k, v in expected.items())

    gray = timm_backbone("resnet18", weights=str(path), in_chans=1)  # RGB stem folded to one channel
    torch.testing.assert_close(gray.conv1.weight, source.conv1.weight.sum(dim=1, keepdim=True))


def test_wrong_or_missing_weights_fail_with_the_fix(tmp_path):
    import timm

    path = tmp_path / "resnet18.pth"
    torch.save(timm.create_model("resnet18", num_classes=0).state_dict(), path)
    with pytest.raises(ConfigError, match="does not fit"):
        timm_backbone("resnet34", weights=str(path))
    with pytest.raises(ConfigError, match="does not exist"):
        timm_backbone("resnet18", weights=str(tmp_path / "absent.pth"))
    with pytest.raises(ConfigError, match="both set"):
        timm_backbone("resnet18", pretrained=True, weights=str(path))
    with pytest.raises(ConfigError, match="not a timm model"):
        timm_backbone("resnet_typo")


def test_pretrained_without_internet_names_the_local_weights_option(monkeypatch):
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)  # fail at once, as an offline node does
    with pytest.raises(ConfigError, match="backbone.weights=/path"):
        timm_backbone("resnet18", pretrained=True)


def test_channels_last_changes_layout_not_numbers():
    torch.manual_seed(0)
    model = EmbeddingModel(timm_backbone("resnet18", in_chans=3), embed_dim=8).eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        reference = model(x)
        fast = accelerate(model, torch.device("cpu"), channels_last=True)
        assert fast.backbone.conv1.weight.is_contiguous(memory_format=torch.channels_last)
        torch.testing.assert_close(fast(x), reference, atol=1e-5, rtol=1e-4)
    assert set(fast.state_dict()) == set(model.state_dict())
    plain = EmbeddingModel(timm_backbone("resnet18", in_chans=3), embed_dim=8)
    accelerate(plain, torch.device("cpu"))  # auto: CPU keeps the default layout
    assert plain.backbone.conv1.weight.is_contiguous()
    with pytest.raises(ConfigError, match="channels_last"):
        accelerate(plain, torch.device("cpu"), channels_last="yes")
