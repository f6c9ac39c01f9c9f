from harness.losses.metric_loss import MetricLoss

__all__ = ["MetricLoss"]
