"""Embeddings of a whole split, in eval mode."""

from __future__ import annotations

import numpy as np
import torch

from harness.data.base import collate_batch
from harness.runtime import autocast_for


@torch.no_grad()
def embed_dataset(model, dataset, device: torch.device, batch_size: int = 256, amp: str = "off", num_workers: int = 0):
    """Embeddings (float32 numpy) and labels of a whole split."""
    model.eval()
    chunks = []
    if hasattr(dataset, "inputs"):  # in-memory split: slice it directly
        batches = ((dataset.inputs[i : i + batch_size], None) for i in range(0, len(dataset), batch_size))
    else:
        batches = torch.utils.data.DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=num_workers,
                                              collate_fn=collate_batch, pin_memory=device.type == "cuda")
    for inputs, _ in batches:
        with autocast_for(device, amp):
            chunks.append(model(inputs.to(device, non_blocking=True)).float().cpu())
    emb = torch.cat(chunks).numpy() if chunks else np.zeros((0, model.embed_dim), np.float32)
    return emb, np.asarray(dataset.labels)

