"""timm backbones with the options the DML literature relies on, and the CUDA speed switches.

``timm_backbone`` returns the timm model itself (``num_classes=0``: no classifier), so it exposes
``forward_features`` (the unpooled feature map or tokens), ``num_features`` and ``forward_head``, which
:class:`~harness.models.embedding.EmbeddingModel` pools (avg, max, or "double" = avg + max) and embeds.

Weights: random init by default; ``pretrained: true`` downloads timm's weights from the Hugging Face
hub (needs internet); ``weights: /path/file`` loads a local state dict (``.pth``/``.pt``/``.bin`` loaded
with ``weights_only=True``, or ``.safetensors``) for offline clusters: save one where there is internet
with ``torch.save(timm.create_model(name, pretrained=True).state_dict(), path)``, or use the
``model.safetensors`` of the model's hub page. Classifier weights in the file are ignored; every
other tensor of the model must be in it.

BatchNorm (``batchnorm``, see ``harness.models.batchnorm_modes``): ``train`` (default), ``eval`` (running statistics,
affine trained: the seeds' releases' "frozen" BatchNorm) or ``frozen`` (timm's ``FrozenBatchNorm2d``: statistics
and affine fixed). ``frozen_bn: true`` is the older spelling of ``batchnorm: frozen``.
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch
from torch import nn

from harness.errors import ConfigError
from harness.models.batchnorm_modes import set_batchnorm_mode

log = logging.getLogger(__name__)


def timm_backbone(
    model_name: str,
    pretrained: bool = False,
    weights: str | None = None,
    batchnorm: str = "train",
    in_chans: int = 3,
    frozen_bn: bool | None = None,
    **kwargs,
) -> nn.Module:
    """``timm.create_model(model_name, num_classes=0, ...)`` plus local weights and frozen BatchNorm.

    Extra keyword arguments go to timm (e.g. ``img_size`` for a ViT at another resolution,
    ``drop_path_rate``).
    """
    # lazy: heavy (timm, ~2 s), only when a timm backbone is built
    import timm

    if pretrained and weights:
        raise ConfigError(
            "backbone.pretrained=true and backbone.weights are both set; keep one "
            "(weights=/path/file for a local state dict)"
        )
    if model_name not in timm.list_models() and model_name.split(".")[0] not in timm.list_models():
        raise ConfigError(
            f"backbone.model_name={model_name!r} is not a timm model; list them with "
            f"python -c \"import timm; print(timm.list_models('*resnet*'))\""
        )
    try:
        model = timm.create_model(
            model_name, pretrained=bool(pretrained), num_classes=0, in_chans=int(in_chans), **kwargs
        )
    except (OSError, RuntimeError) as err:
        if not pretrained:
            raise
        raise ConfigError(
            f"could not fetch pretrained weights of {model_name} from timm's hub ({type(err).__name__}: "
            f"{str(err).splitlines()[0][:160]}); on an offline machine save them where there is internet "
            f"(torch.save(timm.create_model('{model_name}', pretrained=True).state_dict(), 'w.pth')) and set "
            f"backbone.pretrained=false backbone.weights=/path/w.pth"
        ) from None
    if weights:
        load_local_weights(model, str(weights), int(in_chans))
    if frozen_bn is not None:
        if frozen_bn and batchnorm != "train":
            raise ConfigError(
                "backbone.frozen_bn and backbone.batchnorm are both set; keep batchnorm (train|eval|frozen)"
            )
        batchnorm = "frozen" if frozen_bn else batchnorm
    return set_batchnorm_mode(model, batchnorm)


def load_local_weights(model: nn.Module, path: str, in_chans: int) -> None:
    """Load a local state dict into a classifier-less timm model, strictly apart from the classifier."""
    # lazy: heavy (timm, ~2 s), only for local weights
    from timm.models import adapt_input_conv, load_state_dict

    if not Path(path).is_file():
        raise ConfigError(f"backbone.weights={path} does not exist; give the path of a saved state dict")
    try:
        state = load_state_dict(path, weights_only=True)  # also unwraps {"state_dict": ...} / {"model": ...}
    except Exception as err:  # noqa: BLE001 - pickle, zip and safetensors errors differ
        raise ConfigError(
            f"backbone.weights={path} is not a loadable state dict ({type(err).__name__}: {err})"
        ) from None
    cfg = getattr(model, "pretrained_cfg", {}) or {}
    heads = cfg.get("classifier") or ()
    heads = (heads,) if isinstance(heads, str) else tuple(heads)
    own = model.state_dict()
    state = {k: v for k, v in state.items() if k in own or not k.startswith(tuple(f"{h}." for h in heads))}
    first = cfg.get("first_conv")
    first = (first,) if isinstance(first, str) else tuple(first or ())
    for conv in first:
        key = f"{conv}.weight"
        if key in state and key in own and state[key].shape[1] != own[key].shape[1]:
            state[key] = adapt_input_conv(in_chans, state[key])  # RGB weights for a grayscale input
    missing, unexpected = model.load_state_dict(state, strict=False)
    missing = [k for k in missing if not k.endswith("num_batches_tracked")]
    if missing or unexpected:
        raise ConfigError(
            f"backbone.weights={path} does not fit {model.__class__.__name__} "
            f"({len(missing)} missing tensors, e.g. {missing[:2]}; "
            f"{len(unexpected)} unexpected, e.g. {unexpected[:2]}); "
            f"save the state_dict() of timm.create_model with the same backbone.model_name"
        )
    log.info("backbone weights loaded from %s", path)


def accelerate(
    model: nn.Module, device: torch.device, channels_last="auto", compile: bool = False, cudnn_benchmark: bool = True
) -> nn.Module:
    """The CUDA throughput switches of ``conf/trainer``; none changes the state dict or the checkpoints.

    ``channels_last`` (auto: on CUDA) stores conv weights NHWC so cuDNN picks its tensor-core kernels
    (the first conv converts the NCHW input batch); ``cudnn_benchmark`` lets cuDNN time its algorithms
    for the fixed input size; ``compile`` wraps the model's two halves in ``torch.compile``: ``features`` (the
    backbone's ``forward_features``) and ``embed`` (pooling and the embedding head), the two calls the training
    step and Metrix make.
    """
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = bool(cudnn_benchmark)
    if channels_last is True or (channels_last == "auto" and device.type == "cuda"):
        model = model.to(memory_format=torch.channels_last)
    elif channels_last not in (False, "auto"):
        raise ConfigError(f"trainer.channels_last={channels_last} must be auto, true or false")
    if compile:
        model.features = torch.compile(model.features)
        model.embed = torch.compile(model.embed)
    return model


def is_channels_last(model: nn.Module) -> bool:
    """Whether the model's conv weights are stored NHWC (trainer.channels_last): its 4-D inputs should be too."""
    weights = [m.weight for m in model.modules() if isinstance(m, nn.Conv2d)]
    return bool(weights) and weights[0].is_contiguous(memory_format=torch.channels_last)
