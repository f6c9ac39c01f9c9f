"""The evaluator of a run, built once from ``cfg.eval``: embed a split, score it, collapse diagnostics.

An evaluation split is queries searched among themselves (leave-one-out) or in a gallery
(:class:`~harness.data.base.EvalSet`); :class:`Embedded` holds its embeddings and labels.

In a data-parallel run (``world`` of N processes) every process embeds its contiguous share of a split and the
shares are gathered in order, so every process holds the split's embeddings; the searches, NMI and diagnostics
run on rank 0 alone and their numbers are broadcast, so every rank takes the same decisions (the selected epoch).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from harness.distributed import World, gather_array, on_main, shard
from harness.evaluation import PerQuery, score_embeddings
from harness.evaluation.diagnostics import collapse_diagnostics, normalize_rows
from harness.evaluation.embed import embed_dataset
from harness.evaluation.utilization import utilization


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
        return self.score_queries(emb, with_nmi)[0]

    def score_queries(self, emb: Embedded, with_nmi: bool = True) -> tuple[dict, PerQuery]:
        """:meth:`score` and each query's AP@R and hit@1 (what a test-set bootstrap resamples)."""
        return self.on_main(
            lambda: score_embeddings(
                emb.query,
                emb.query_labels,
                emb.gallery,
                emb.gallery_labels,
                k_list=self.k,
                metric=self.metric,
                with_nmi=with_nmi and self.nmi,
                seed=self.seed,
            )
        )

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
