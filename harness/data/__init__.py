from harness.data.base import ArrayDataset, DMLData, EvalSet, collate_batch, remap_labels

__all__ = ["ArrayDataset", "DMLData", "EvalSet", "collate_batch", "remap_labels"]
