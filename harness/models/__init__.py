from harness.models.embedding import EmbeddingModel
from harness.models.mlp import MLP
from harness.models.small_cnn import SmallCNN

__all__ = ["EmbeddingModel", "MLP", "SmallCNN"]
