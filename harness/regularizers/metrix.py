"""Metrix: mixup for deep metric learning at the input, feature or embedding level.

Venkataramanan, Psomas, Kijak, Amsaleg, Karantzalos, Avrithis, "It Takes Two to Tango: Mixup for Deep
Metric Learning", ICLR 2022. Each step mixes pairs (x, x') of the batch into m = mix_lambda(x, x'),
lambda ~ Beta(beta_a, beta_b) (one lambda per step, as the authors' code), and adds

    w * L_mix,   L_mix = the run's base loss in soft-label form (harness.losses.Mixed*)

where the positivity of m with respect to an anchor (or proxy) of class c is
y = lambda [class(x) = c] + (1 - lambda) [class(x') = c]. The mixed loss matches the base loss and
reads its hyper-parameters from it: contrastive (pos_margin, neg_margin), multi-similarity (alpha,
beta, base; the mixed term uses no miner) and Proxy Anchor (margin, alpha, and its proxies as anchors).

Which pairs (each step draws one of ``modes`` at random; see ``harness.regularizers.metrix_pairs``):
* ``pos_neg``: the anchor a has a positive x in the batch and x' is one of a's negatives;
* ``anchor_neg``: a has no positive in the batch (none, with an M-per-class sampler), x = a and x' is one of
  a's negatives; the mixture is an example for a alone. ``anchor_neg_weight`` (null: ``weight``) weighs these
  steps apart (the authors' embedding level uses 0.3).
``negatives`` keeps only the hardest (most similar) negatives of each anchor: 1 at input level, all (null)
at feature and embedding level by default. Proxy Anchor compares every mixture with every proxy.
Two quirks of the authors' code are options, for the contrastive loss (their only one): ``positives=first``
(each anchor mixes only its first positive, counted once per positive it has) and
``negative_index=pair_list_position`` (their input level's hardest-negative lookup); see metrix_pairs.

Levels: ``input`` re-embeds mixed inputs, ``model(mix(x, x'))``; ``feature`` mixes the backbone's
output before pooling, ``model.embed(mix(f, f'))`` (the paper's "Metrix", its best); ``embedding``
mixes embeddings and re-normalises them. In a data-parallel run the pairs are drawn from the global
batch and each process re-embeds its share of the mixtures (``batch.share`` / ``batch.gather``).
The randomness (mode, lambda) comes from torch's global CPU
generator, seeded by the run and saved in checkpoints, so runs and resumes repeat exactly.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from pytorch_metric_learning import distances, losses

from harness.errors import ConfigError
from harness.losses.mixed_contrastive import MixedContrastive
from harness.losses.mixed_multi_similarity import MixedMultiSimilarity
from harness.losses.mixed_proxy_anchor import MixedProxyAnchor
from harness.regularizers.base import Batch, Regularizer
from harness.regularizers.metrix_pairs import NEGATIVE_INDEX, POSITIVES, pick_mixtures
from harness.runtime import amp_of, autocast_for

LEVELS = ("input", "feature", "embedding")
MODES = ("pos_neg", "anchor_neg")


class Metrix(Regularizer):
    def __init__(
        self,
        level: str = "feature",
        weight: float = 0.4,
        beta_a: float = 2.0,
        beta_b: float = 2.0,
        modes=MODES,
        negatives: int | None = None,
        positives: str = "all",
        negative_index: str = "own",
        anchor_neg_weight: float | None = None,
    ):
        super().__init__()
        modes = tuple(modes)
        if level not in LEVELS:
            raise ConfigError(f"metrix level={level!r} is unknown; use one of {', '.join(LEVELS)}")
        if not modes or any(m not in MODES for m in modes):
            raise ConfigError(f"metrix modes={list(modes)} must be a non-empty list of {', '.join(MODES)}")
        if weight < 0 or beta_a <= 0 or beta_b <= 0 or (anchor_neg_weight is not None and anchor_neg_weight < 0):
            raise ConfigError(
                f"metrix needs weight, anchor_neg_weight >= 0 and beta_a, beta_b > 0 "
                f"(got {weight}, {anchor_neg_weight}, {beta_a}, {beta_b})"
            )
        if negatives is not None and int(negatives) < 1:
            raise ConfigError(f"metrix negatives={negatives} must be >= 1, or null for all negatives")
        if positives not in POSITIVES or negative_index not in NEGATIVE_INDEX:
            raise ConfigError(
                f"metrix positives={positives!r} / negative_index={negative_index!r}: use positives "
                f"{' | '.join(POSITIVES)} and negative_index {' | '.join(NEGATIVE_INDEX)}"
            )
        if negative_index != "own" and negatives is None:
            raise ConfigError("metrix negative_index=pair_list_position picks the hardest negatives; set negatives=1")
        self.level, self.weight, self.modes = level, float(weight), modes
        self.reads = frozenset({"input": {"inputs"}, "feature": {"features"}}.get(level, set()))
        self.beta_a, self.beta_b = float(beta_a), float(beta_b)
        self.negatives = None if negatives is None else int(negatives)
        self.positives, self.negative_index = positives, negative_index
        self.anchor_neg_weight = None if anchor_neg_weight is None else float(anchor_neg_weight)

    def check_compatible(self, base_loss) -> None:
        mixed = mixed_loss_for(base_loss)
        if (self.positives, self.negative_index) != ("all", "own") and not isinstance(mixed, MixedContrastive):
            raise ConfigError(
                "metrix positives=first and negative_index=pair_list_position reproduce the authors' code, "
                "which has the contrastive loss only; use loss=contrastive or the defaults (all, own)"
            )

    def forward(self, batch: Batch, base_loss, model) -> dict:
        mixed_loss = mixed_loss_for(base_loss)
        mode, lam = self.draw()
        labels = batch.labels
        picked = pick_mixtures(batch.embeddings, labels, mode, self.negatives, self.positives, self.negative_index)
        if len(picked.first) == 0:  # e.g. anchor_neg on a batch where every sample has a positive
            return {"metrix": batch.embeddings.new_zeros(())}

        mixed = self.mix(batch, model, picked.first, picked.second, lam)
        weight = self.anchor_neg_weight if mode == "anchor_neg" and self.anchor_neg_weight is not None else self.weight
        if isinstance(mixed_loss, MixedProxyAnchor):
            anchors, anchor_labels = base_loss.proxies, base_loss.proxy_labels
            y = mixup_positivity(anchor_labels, labels[picked.first], labels[picked.second], lam)
            return {"metrix": weight * mixed_loss(anchors.to(mixed.dtype), mixed, y.to(mixed.dtype))}
        # the second sample of a pair is a negative of the anchor, or (pair_list_position) taken for one
        second = labels[picked.second] if self.negative_index == "own" else None
        y = mixup_positivity(labels, labels[picked.first], second, lam).to(mixed.dtype)
        anchors = batch.embeddings.to(mixed.dtype)
        if isinstance(mixed_loss, MixedContrastive):
            return {"metrix": weight * mixed_loss(anchors, mixed, y, counts=picked.counts.to(mixed.dtype))}
        return {"metrix": weight * mixed_loss(anchors, mixed, y, picked.counts > 0)}

    def draw(self) -> tuple[str, float]:
        """This step's random choices, from torch's global CPU generator: the mode and lambda."""
        mode = self.modes[int(torch.randint(len(self.modes), ()))]
        lam = float(torch.distributions.Beta(torch.tensor(self.beta_a), torch.tensor(self.beta_b)).sample())
        return mode, lam

    def mix(self, batch: Batch, model, first: torch.Tensor, second: torch.Tensor, lam: float) -> torch.Tensor:
        """Embeddings of the mixtures lam * x[first] + (1 - lam) * x[second] at the configured level."""
        if self.level == "embedding":
            e = batch.embeddings
            return F.normalize(lam * e[first] + (1 - lam) * e[second], dim=1)
        source = batch.features if self.level == "feature" else batch.inputs
        rows = batch.share(len(first))  # data parallel: each process embeds its share of the mixtures
        mixed = lam * source[first[rows]] + (1 - lam) * source[second[rows]]
        with autocast_for(batch.features.device, amp_of(batch.features)):  # as the training step ran the model
            out = model.embed(mixed) if self.level == "feature" else model(mixed)
        return batch.gather(out.to(torch.promote_types(out.dtype, torch.float32)))  # float32 under AMP, float64 stays


def mixed_loss_for(base_loss):
    """The soft-label form of the run's base loss, with the base loss's own hyper-parameters."""
    loss = getattr(base_loss, "loss", base_loss)
    if isinstance(loss, losses.ContrastiveLoss):
        d = loss.distance
        if not (type(d) is distances.LpDistance and d.p == 2 and d.power == 1 and d.normalize_embeddings):
            raise ConfigError(
                "Metrix's mixed contrastive loss uses the Euclidean distance of normalised embeddings; "
                "set the contrastive loss's distance to LpDistance(p=2, power=1, normalize_embeddings=true)"
            )
        return MixedContrastive(pos_margin=loss.pos_margin, neg_margin=loss.neg_margin)
    if isinstance(loss, (losses.MultiSimilarityLoss, losses.ProxyAnchorLoss)):
        d = loss.distance
        if not (type(d) is distances.CosineSimilarity and d.normalize_embeddings):
            raise ConfigError(
                f"Metrix's mixed {type(loss).__name__} uses the cosine similarity; "
                f"keep that loss's default distance (CosineSimilarity)"
            )
        if isinstance(loss, losses.MultiSimilarityLoss):
            return MixedMultiSimilarity(alpha=loss.alpha, beta=loss.beta, base=loss.base)
        return MixedProxyAnchor(margin=loss.margin, alpha=loss.alpha)
    name = getattr(base_loss, "name", type(loss).__name__)
    raise ConfigError(
        f"Metrix mixes the contrastive, multi-similarity and Proxy Anchor losses only, not {name}; "
        f"use loss=contrastive, loss=multi_similarity or loss=proxy_anchor"
    )


def mixup_positivity(anchor_labels, first_labels, second_labels, lam: float) -> torch.Tensor:
    """y[a, m] = lam [class(x_m) = class(a)] + (1 - lam) [class(x'_m) = class(a)]; second_labels None: x' is
    taken for a negative of every anchor (the second term is 0)."""
    y = lam * (anchor_labels[:, None] == first_labels[None, :]).double()
    if second_labels is not None:
        y = y + (1 - lam) * (anchor_labels[:, None] == second_labels[None, :]).double()
    return y
