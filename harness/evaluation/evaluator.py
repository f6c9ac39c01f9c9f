"""The evaluator of a run, built once from ``cfg.eval``: embed a split, score it, collapse diagnostics.

An evaluation split is queries searched among themselves (leave-one-out) or in a gallery
(:class:`~harness.data.base.EvalSet`); :class:`Embedded` holds its embeddings and labels.

In a data-parallel run (``world`` of N processes) every process embeds its contiguous share of a split and the
shares are gathered in order, so every process holds the split's embeddings; the searches, NMI and diagnostics
run on rank 0 alone and their numbers are broadcast, so every rank takes the same decisions (the selected epoch).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import numpy as np
import torch

from harness.distributed import World, gather_array, on_main, shard
from harness.evaluation import evaluate_embeddings
from harness.evaluation.diagnostics import collapse_diagnostics, normalize_rows
from harness.evaluation.embed import embed_dataset
from harness.evaluation.retrieval import all_tied, unmeasurable_k
from harness.evaluation.utilization import utilization

log = logging.getLogger(__name__)


@dataclass
class Embedded:
    query: np.ndarray
    query_labels: np.ndarray
    gallery: np.ndarray | None = None
    gallery_labels: np.ndarray | None = None


@dataclass
class Evaluator:
    k: tuple  # Recall@K list
    metric: str = "ip"  # faiss search: ip | l2
    nmi: bool = True  # NMI on test (and on validation when val_nmi)
    val_nmi: bool = True
    seed: int = 0  # k-means seed
    batch_size: int = 512
    num_workers: int = 0
    device: torch.device = torch.device("cpu")
    amp: str = "off"
    world: World = World()  # the processes of a data-parallel run (one by default)
    said: set = field(default_factory=set, repr=False)  # the one-line warnings already given (once per run)

    def embed(self, model, evalset) -> Embedded:
        q, ql = self.embed_split(model, evalset.query)
        g, gl = self.embed_split(model, evalset.gallery) if evalset.gallery is not None else (None, None)
        return Embedded(q, ql, g, gl)

    def embed_split(self, model, dataset):
        world = self.world
        rows = shard(len(dataset), world.rank, world.world_size) if world.distributed else None
        emb, labels = embed_dataset(model, dataset, self.device, self.batch_size, self.amp, self.num_workers, rows)
        return gather_array(emb, world), labels

    def on_main(self, compute):
        """``compute()`` on rank 0, its value on every rank."""
        return on_main(compute, self.world)

    def score(self, emb: Embedded, with_nmi: bool = True) -> dict:
        def compute():
            self.warn_once(emb)
            return evaluate_embeddings(
                emb.query,
                emb.query_labels,
                emb.gallery,
                emb.gallery_labels,
                k_list=self.k,
                metric=self.metric,
                with_nmi=with_nmi and self.nmi,
                seed=self.seed,
            )

        return self.on_main(compute)

    def warn_once(self, emb: Embedded) -> None:
        """One line for a Recall@K the split cannot measure (left out) and for embeddings that all tie."""
        n_gallery = None if emb.gallery is None else len(emb.gallery)
        left_out = unmeasurable_k(self.k, len(emb.query), n_gallery)
        size = len(emb.query) if n_gallery is None else n_gallery
        if left_out and ("k", size) not in self.said:
            self.said.add(("k", size))
            log.warning(
                "recall@%s left out: a split of %d %s gives a query at most %d items to retrieve; lower eval.k "
                "to measure it",
                ",".join(map(str, left_out)),
                size,
                "gallery items" if n_gallery is not None else "queries",
                size - (n_gallery is None),
            )
        if "tied" not in self.said and all_tied(emb.query, emb.gallery):
            self.said.add("tied")
            log.warning("every embedding is the same vector: all distances tie, so item order decides each ranking")

    def evaluate(self, model, evalset) -> dict:
        """Every metric (NMI when ``nmi``)."""
        return self.score(self.embed(model, evalset))

    def validate(self, model, evalset) -> dict:
        """The per-epoch validation: NMI only when ``val_nmi`` too (k-means on every epoch costs)."""
        return self.score(self.embed(model, evalset), with_nmi=self.val_nmi)

    def diagnostics(self, emb: Embedded) -> dict:
        return self.on_main(lambda: collapse_diagnostics(emb.query, emb.query_labels))

    def utilization(self, model, train, test: Embedded) -> float:
        """Metrix's utilization: mean distance from each test embedding to its nearest training one."""
        train_emb = self.embed_split(model, train)[0]
        return self.on_main(lambda: utilization(test.query, train_emb))

    @staticmethod
    def raw(evalset) -> Embedded:
        """The raw inputs of a vector dataset, L2-normalised: the baseline a trained embedding must beat."""

        def flat(ds):
            return None if ds is None else normalize_rows(ds.inputs.flatten(1).numpy(), np.float32)

        gallery = evalset.gallery
        return Embedded(
            flat(evalset.query), evalset.query.labels, flat(gallery), gallery.labels if gallery is not None else None
        )
