"""BatchNorm modes of a pretrained backbone (``backbone.batchnorm``):

    train   PyTorch's default: batch statistics in training (running statistics updated), affine trained
    eval    running statistics always (never updated), affine weight and bias still trained: what the seeds'
            releases call "frozen" BatchNorm (NIR/AntiCo: ``module.eval(); module.train = lambda _: None``;
            Metrix: ``m.eval()`` every epoch, affine trained after the warm-up)
    frozen  running statistics and affine parameters fixed (timm's FrozenBatchNorm2d: buffers, no parameters)

``eval`` swaps each BatchNorm module's class for a subclass whose ``train()`` keeps it in eval mode, so
``model.train()`` cannot switch it back; parameters, buffers and state-dict keys are unchanged.
"""

from __future__ import annotations

from torch import nn

from harness.errors import ConfigError

MODES = ("train", "eval", "frozen")


class _EvalStats:
    """Mixin: the module stays in eval mode (running statistics) whatever train() is asked."""

    def train(self, mode: bool = True):
        return super().train(False)


class EvalStatsBatchNorm1d(_EvalStats, nn.BatchNorm1d):
    pass


class EvalStatsBatchNorm2d(_EvalStats, nn.BatchNorm2d):
    pass


class EvalStatsBatchNorm3d(_EvalStats, nn.BatchNorm3d):
    pass


_EVAL_CLASSES = {
    nn.BatchNorm1d: EvalStatsBatchNorm1d,
    nn.BatchNorm2d: EvalStatsBatchNorm2d,
    nn.BatchNorm3d: EvalStatsBatchNorm3d,
}


def set_batchnorm_mode(model: nn.Module, mode: str) -> nn.Module:
    """Apply ``mode`` (train | eval | frozen) to every BatchNorm of ``model``; returns the model."""
    if mode not in MODES:
        raise ConfigError(f"backbone.batchnorm={mode!r} is unknown; use one of {', '.join(MODES)}")
    if mode == "frozen":
        # lazy: heavy (timm, ~2 s), only for frozen batch norm
        from timm.layers import freeze_batch_norm_2d

        return freeze_batch_norm_2d(model)
    if mode == "eval":
        for m in model.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm) and not isinstance(m, _EvalStats):
                if type(m) not in _EVAL_CLASSES:
                    raise ConfigError(
                        f"backbone.batchnorm=eval handles nn.BatchNorm1d/2d/3d, not {type(m).__name__}; "
                        f"use backbone.batchnorm=frozen or train"
                    )
                m.__class__ = _EVAL_CLASSES[type(m)]
                m.eval()
    return model
