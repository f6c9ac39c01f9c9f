"""A run's test embeddings on disk, for the Reality Check protocol's concatenated score: ``test_embeddings.npz``.

Written (rank 0, atomically through harness.io) when the protocol asks for it (``protocol.store_test_embeddings``,
set by conf/protocol/reality_check.yaml), named in the record (``test_embeddings_file``), read without pickle.
Arrays: ``query`` (float16, n x d, in the test split's order) and ``query_label``; In-Shop adds ``gallery`` and
``gallery_label``. float16 halves the file (a 128-d CUB test split: 1.5 MB); the concatenated score is computed
from these, so its last digits may differ from a float32 embedding's (about 1e-3 relative per coordinate).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from omegaconf import DictConfig, OmegaConf

from harness.evaluation.evaluator import Embedded
from harness.io import atomic_write

FILE = "test_embeddings.npz"
RECORD_KEY = "test_embeddings_file"  # the record names the file, relative to the run directory


def wanted(cfg: DictConfig) -> bool:
    return bool(OmegaConf.select(cfg, "protocol.store_test_embeddings", default=False))


def save_test_embeddings(run_dir: Path, test: Embedded) -> dict:
    """Write the file; the record keys that name it."""
    arrays = {"query": np.asarray(test.query, np.float16), "query_label": np.asarray(test.query_labels, np.int64)}
    if test.gallery is not None:
        arrays.update(gallery=np.asarray(test.gallery, np.float16), gallery_label=np.asarray(test.gallery_labels))

    def write(tmp: str) -> None:
        with open(tmp, "wb") as f:
            np.savez(f, **arrays)

    atomic_write(Path(run_dir) / FILE, write)
    return {RECORD_KEY: FILE}


def load_test_embeddings(path: Path) -> Embedded:
    """The embeddings of one file (float32); ``ValueError`` when it is not a consistent embeddings file."""
    try:
        with np.load(path, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
    except (OSError, ValueError) as err:
        raise ValueError(f"{path} cannot be read as embeddings ({err})") from None
    if not {"query", "query_label"} <= set(arrays):
        raise ValueError(f"{path} is not an embeddings file (no query / query_label)")
    query, labels = arrays["query"], arrays["query_label"]
    if query.ndim != 2 or labels.shape != (len(query),):
        raise ValueError(f"{path}: query {query.shape} and query_label {labels.shape} do not match")
    gallery = arrays.get("gallery")
    if gallery is not None and (gallery.ndim != 2 or arrays.get("gallery_label", np.empty(0)).shape != (len(gallery),)):
        raise ValueError(f"{path}: gallery and gallery_label do not match")
    return Embedded(
        query.astype(np.float32),
        labels.astype(np.int64),
        gallery.astype(np.float32) if gallery is not None else None,
        arrays["gallery_label"].astype(np.int64) if gallery is not None else None,
    )
