from harness.regularizers.base import Batch, Regularizer

__all__ = ["Batch", "Regularizer"]
