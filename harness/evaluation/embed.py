"""Embeddings of a whole split, in eval mode."""

from __future__ import annotations

import numpy as np
import torch

from harness.data.base import collate_batch
from harness.runtime import autocast_for


@torch.no_grad()
def embed_dataset(
    model,
    dataset,
    device: torch.device,
    batch_size: int = 256,
    amp: str = "off",
    num_workers: int = 0,
    rows: slice | None = None,
):
    """Embeddings (float32 numpy) and labels of a whole split (embeddings of ``rows`` only, when given: one
    process's share in a data-parallel run; the labels are always the whole split's)."""
    model.eval()
    chunks = []
    rows = rows or slice(0, len(dataset))
    if hasattr(dataset, "inputs"):  # in-memory split: slice it directly
        share = dataset.inputs[rows]
        batches = ((share[i : i + batch_size], None) for i in range(0, len(share), batch_size))
    else:
        part = torch.utils.data.Subset(dataset, range(len(dataset))[rows])
        batches = torch.utils.data.DataLoader(
            part,
            batch_size=batch_size,
            shuffle=False,
            num_workers=num_workers,
            collate_fn=collate_batch,
            pin_memory=device.type == "cuda",
        )
    for inputs, _ in batches:
        with autocast_for(device, amp):
            chunks.append(model(inputs.to(device, non_blocking=True)).float().cpu())
    emb = torch.cat(chunks).numpy() if chunks else np.zeros((0, model.embed_dim), np.float32)
    return emb, np.asarray(dataset.labels)
