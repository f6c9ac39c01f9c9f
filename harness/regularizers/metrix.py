"""Metrix: mixup for deep metric learning at the input, feature or embedding level.

Venkataramanan, Psomas, Kijak, Amsaleg, Karantzalos, Avrithis, "It Takes Two to Tango: Mixup for Deep
Metric Learning", ICLR 2022. Each step mixes pairs (x, x') of the batch into m = mix_lambda(x, x'),
lambda ~ Beta(beta_a, beta_b) (one lambda per step, as the authors' code), and adds

    w * L_mix,   L_mix = the run's base loss in soft-label form (harness.losses.Mixed*)

where the positivity of m with respect to an anchor (or proxy) of class c is
y = lambda [class(x) = c] + (1 - lambda) [class(x') = c]. The mixed loss matches the base loss and
reads its hyper-parameters from it: contrastive (pos_margin, neg_margin), multi-similarity (alpha,
beta, base; the mixed term uses no miner) and Proxy Anchor (margin, alpha, and its proxies as anchors).

Which pairs (the authors' choices; each step draws one of ``modes`` at random):
* ``pos_neg``: x has a positive in the batch, x' is one of its negatives; the mixture is an example
  for every anchor of x's class (x itself excepted), with y = lambda;
* ``anchor_neg``: x has no positive in the batch (none, with an M-per-class sampler), x' is one of
  its negatives; the mixture is an example for the anchor x alone, with y = lambda.
``negatives`` keeps only the hardest (most similar) negatives of each x: 1 at input level, all (null)
at feature and embedding level by default. Proxy Anchor compares every mixture with every proxy.

Levels: ``input`` re-embeds mixed inputs, ``model(mix(x, x'))``; ``feature`` mixes the backbone's
output before pooling, ``model.embed(mix(f, f'))`` (the paper's "Metrix", its best); ``embedding``
mixes embeddings and re-normalises them. The randomness (mode, lambda) comes from torch's global CPU
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
from harness.runtime import amp_of, autocast_for

LEVELS = ("input", "feature", "embedding")
MODES = ("pos_neg", "anchor_neg")


class Metrix(Regularizer):
    def __init__(self, level: str = "feature", weight: float = 0.4, beta_a: float = 2.0, beta_b: float = 2.0,
                 modes=MODES, negatives: int | None = None):
        super().__init__()
        modes = tuple(modes)
        if level not in LEVELS:
            raise ConfigError(f"metrix level={level!r} is unknown; use one of {', '.join(LEVELS)}")
        if not modes or any(m not in MODES for m in modes):
            raise ConfigError(f"metrix modes={list(modes)} must be a non-empty list of {', '.join(MODES)}")
        if weight < 0 or beta_a <= 0 or beta_b <= 0:
            raise ConfigError(f"metrix needs weight >= 0 and beta_a, beta_b > 0 (got {weight}, {beta_a}, {beta_b})")
        if negatives is not None and int(negatives) < 1:
            raise ConfigError(f"metrix negatives={negatives} must be >= 1, or null for all negatives")
        self.level, self.weight, self.modes = level, float(weight), modes
        self.beta_a, self.beta_b = float(beta_a), float(beta_b)
        self.negatives = None if negatives is None else int(negatives)

    def check_compatible(self, base_loss) -> None:
        mixed_loss_for(base_loss)

    def forward(self, batch: Batch, base_loss, model) -> dict:
        mixed_loss = mixed_loss_for(base_loss)
        mode, lam = self.draw()
        labels = batch.labels
        first, second = pick_pairs(batch.embeddings.detach(), labels, mode, self.negatives)
        if len(first) == 0:  # e.g. anchor_neg on a batch where every sample has a positive
            return {"metrix": batch.embeddings.new_zeros(())}

        mixed = self.mix(batch, model, first, second, lam)
        if isinstance(mixed_loss, MixedProxyAnchor):
            anchors, anchor_labels, mask = base_loss.proxies, base_loss.proxy_labels, None
        else:
            anchors, anchor_labels = batch.embeddings, labels
            mask = anchors_of_mixtures(labels, first, mode)
        y = mixup_positivity(anchor_labels, labels[first], labels[second], lam).to(mixed.dtype)
        return {"metrix": self.weight * mixed_loss(anchors.to(mixed.dtype), mixed, y, mask)}

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
        mixed = lam * source[first] + (1 - lam) * source[second]
        with autocast_for(batch.features.device, amp_of(batch.features)):  # as the training step ran the model
            return (model.embed(mixed) if self.level == "feature" else model(mixed)).float()


def mixed_loss_for(base_loss):
    """The soft-label form of the run's base loss, with the base loss's own hyper-parameters."""
    loss = getattr(base_loss, "loss", base_loss)
    if isinstance(loss, losses.ContrastiveLoss):
        d = loss.distance
        if not (type(d) is distances.LpDistance and d.p == 2 and d.power == 1 and d.normalize_embeddings):
            raise ConfigError("Metrix's mixed contrastive loss uses the Euclidean distance of normalised embeddings; "
                              "set the contrastive loss's distance to LpDistance(p=2, power=1, normalize_embeddings=true)")
        return MixedContrastive(pos_margin=loss.pos_margin, neg_margin=loss.neg_margin)
    if isinstance(loss, (losses.MultiSimilarityLoss, losses.ProxyAnchorLoss)):
        d = loss.distance
        if not (type(d) is distances.CosineSimilarity and d.normalize_embeddings):
            raise ConfigError(f"Metrix's mixed {type(loss).__name__} uses the cosine similarity; "
                              f"keep that loss's default distance (CosineSimilarity)")
        if isinstance(loss, losses.MultiSimilarityLoss):
            return MixedMultiSimilarity(alpha=loss.alpha, beta=loss.beta, base=loss.base)
        return MixedProxyAnchor(margin=loss.margin, alpha=loss.alpha)
    name = getattr(base_loss, "name", type(loss).__name__)
    raise ConfigError(f"Metrix mixes the contrastive, multi-similarity and Proxy Anchor losses only, not {name}; "
                      f"use loss=contrastive, loss=multi_similarity or loss=proxy_anchor")


def pick_pairs(embeddings: torch.Tensor, labels: torch.Tensor, mode: str, negatives: int | None):
    """Indices (first, second) of the pairs to mix: first has a positive in the batch (pos_neg) or none
    (anchor_neg); second is one of first's negatives, the ``negatives`` most similar ones if given."""
    same = labels[:, None] == labels[None, :]
    has_positive = (same.sum(dim=1) > 1)
    firsts = has_positive if mode == "pos_neg" else ~has_positive
    pairs = ~same & firsts[:, None]
    if negatives is not None and pairs.any():
        z = F.normalize(embeddings, dim=1)
        sim = (z @ z.T).masked_fill(~pairs, float("-inf"))
        hardest = sim.topk(min(negatives, len(labels)), dim=1).indices
        pairs &= torch.zeros_like(pairs).scatter_(1, hardest, True)
    first, second = pairs.nonzero(as_tuple=True)
    return first, second


def anchors_of_mixtures(labels: torch.Tensor, first: torch.Tensor, mode: str) -> torch.Tensor:
    """(n, k) bool: which batch anchors each mixture is an example for (the paper's M(a))."""
    anchor = torch.arange(len(labels), device=labels.device)[:, None]
    if mode == "anchor_neg":
        return anchor == first[None, :]
    return (labels[:, None] == labels[first][None, :]) & (anchor != first[None, :])


def mixup_positivity(anchor_labels, first_labels, second_labels, lam: float) -> torch.Tensor:
    """y[a, m] = lam [class(x_m) = class(a)] + (1 - lam) [class(x'_m) = class(a)]."""
    return (lam * (anchor_labels[:, None] == first_labels[None, :]).double()
            + (1 - lam) * (anchor_labels[:, None] == second_labels[None, :]).double())

