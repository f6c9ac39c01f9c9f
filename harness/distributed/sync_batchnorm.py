"""BatchNorm over the global batch: layers in training mode normalise with the statistics of every rank's shard.

On CUDA this is torch's ``SyncBatchNorm``. torch's has no CPU path, so on the CPU (gloo) ``CpuSyncBatchNorm``
computes the same thing from two differentiable all-reduces (``all_reduce_with_grad``, whose adjoint sums the
incoming gradients over the ranks, as the loss's gathers do):

    mean = sum_r sum(x_r) / N,   var = sum_r sum((x_r - mean)^2) / N        N = the global count per channel
    y    = (x - mean) / sqrt(var + eps) * weight + bias;  running_var gets var * N / (N - 1)

In evaluation mode both use the running statistics, as plain BatchNorm does; BatchNorm kept in evaluation mode
(``backbone.batchnorm=eval``) or frozen (``frozen``) is left as it is.
"""

from __future__ import annotations

import torch
from torch import nn

from harness.distributed.collectives import all_reduce_with_grad
from harness.distributed.world import World
from harness.models.batchnorm_modes import _EvalStats


class CpuSyncBatchNorm(nn.modules.batchnorm._BatchNorm):
    """BatchNorm over the global batch on the CPU (gloo), through ``world``'s gather group. (Not a subclass of
    ``SyncBatchNorm``: DDP refuses those on CPU modules.)"""

    world: World | None = None

    def _check_input_dim(self, x: torch.Tensor) -> None:
        if x.dim() < 2:
            raise ValueError(f"expected at least 2-D input (got {x.dim()}-D)")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        world = self.world
        if not self.training or world is None or not world.distributed:
            return self._local(x)
        dims = [0] + list(range(2, x.ndim))
        shape = [1, -1] + [1] * (x.ndim - 2)
        count = all_reduce_with_grad(x.new_tensor([x.numel() / x.shape[1]]), world)
        mean = all_reduce_with_grad(x.sum(dims), world) / count
        var = all_reduce_with_grad((x - mean.view(shape)).pow(2).sum(dims), world) / count
        if self.track_running_stats:
            with torch.no_grad():
                self.num_batches_tracked.add_(1)
                m = self.momentum if self.momentum is not None else 1.0 / float(self.num_batches_tracked)
                self.running_mean.mul_(1 - m).add_(m * mean.detach())
                self.running_var.mul_(1 - m).add_(m * var.detach() * count / (count - 1).clamp_min(1))
        y = (x - mean.view(shape)) / torch.sqrt(var.view(shape) + self.eps)
        if self.affine:
            y = y * self.weight.view(shape) + self.bias.view(shape)
        return y

    def _local(self, x: torch.Tensor) -> torch.Tensor:
        """What plain BatchNorm does (evaluation mode, or one process)."""
        use_batch = self.training or self.running_mean is None
        m = 0.0
        if self.training and self.track_running_stats:
            self.num_batches_tracked.add_(1)
            m = self.momentum if self.momentum is not None else 1.0 / float(self.num_batches_tracked)
        track = not self.training or self.track_running_stats
        return nn.functional.batch_norm(
            x,
            self.running_mean if track else None,
            self.running_var if track else None,
            self.weight,
            self.bias,
            use_batch,
            m,
            self.eps,
        )


def sync_batchnorm(module: nn.Module, world: World) -> nn.Module:
    """Replace every BatchNorm layer that trains its statistics by one that normalises over the global batch
    (nothing for one process). ``backbone.batchnorm=eval`` / ``frozen`` layers never use batch statistics: kept."""
    if not world.distributed:
        return module
    if isinstance(module, nn.modules.batchnorm._BatchNorm) and not isinstance(module, (nn.SyncBatchNorm, _EvalStats)):
        cls = nn.SyncBatchNorm if world.device.type == "cuda" else CpuSyncBatchNorm
        if cls is nn.SyncBatchNorm:
            new = cls(
                module.num_features,
                module.eps,
                module.momentum,
                module.affine,
                module.track_running_stats,
                process_group=world.group,
            )
        else:
            new = cls(module.num_features, module.eps, module.momentum, module.affine, module.track_running_stats)
            new.world = world
        if module.affine:
            with torch.no_grad():
                new.weight, new.bias = module.weight, module.bias
        new.running_mean, new.running_var = module.running_mean, module.running_var
        new.num_batches_tracked = module.num_batches_tracked
        new.training = module.training
        return new
    for name, child in module.named_children():
        replaced = sync_batchnorm(child, world)
        if replaced is not child:
            setattr(module, name, replaced)
    return module
