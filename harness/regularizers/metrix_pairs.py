"""Which pairs Metrix mixes, and for which anchors: ``pick_mixtures(...) -> Mixtures``.

Each step of Metrix builds triplets (a, x, x'): the anchor a sees the mixture m = lam x + (1 - lam) x'.

* ``pos_neg``: a has a positive in the batch; x is a positive of a, x' a negative of a;
* ``anchor_neg``: a has no positive in the batch; x = a, x' a negative of a.

Options (the first value of each is the default; the second reproduces a quirk of the authors' code,
billpsomas/Metrix_ICLR22, ``mixup/utils.py``):

``negatives``       None: every negative of the anchor; N: its N most similar (hardest) ones.
``positives``       ``all``: every positive of a (the paper's M(a));
                    ``first``: only a's first positive in batch order, its mixtures counted once per positive a
                    has (their ``new_pos = [pos[index_pos][0]] * len(idxs)``, once per positive pair of a).
``negative_index``  ``own``: the hardest negatives of a;
                    ``pair_list_position``: the ranks of a's hardest negatives within a's own negative list,
                    used as positions in the batch's list of all (anchor, negative) pairs, row-major, which
                    starts with the first anchor's negatives (their input level: ``neg[indices][:top_k]``).
                    The sample found there is treated as a negative of a whatever its class.

Duplicate mixtures are built once: ``counts[a, m]`` says how often anchor a meets mixture m (0: never).
Everything is computed on fixed-shape (B, B) tables on the device; the one host read of a step is the number
of distinct mixtures, which sets how many rows Metrix embeds.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

POSITIVES = ("all", "first")
NEGATIVE_INDEX = ("own", "pair_list_position")


@dataclass
class Mixtures:
    first: torch.Tensor  # (M,) index of x in the batch
    second: torch.Tensor  # (M,) index of x'
    counts: torch.Tensor  # (B, M) how often each anchor meets each mixture (float)


def pick_mixtures(
    embeddings: torch.Tensor,
    labels: torch.Tensor,
    mode: str,
    negatives: int | None = None,
    positives: str = "all",
    negative_index: str = "own",
) -> Mixtures:
    """The step's distinct mixtures and how often each anchor meets each. Computed on dense (B, B) tables: per
    anchor a, ``chosen[a, s]`` counts how often s is taken as a's negative and ``mixed[a, x]`` weighs each x that a
    mixes with them, so anchor a meets mixture (x, s) ``mixed[a, x] * chosen[a, s]`` times. Listing the mixtures
    that some anchor meets is the step's one data-dependent shape (one ``nonzero``: their number is the data's)."""
    n, device = len(labels), labels.device
    same = labels[:, None] == labels[None, :]
    pos = same & ~torch.eye(n, dtype=torch.bool, device=device)
    neg = ~same
    has_pos = pos.any(dim=1)
    anchors = has_pos if mode == "pos_neg" else ~has_pos
    chosen = chosen_negatives(
        embeddings,
        neg,
        anchors,
        negatives,
        negative_index,
        list_rows=torch.ones_like(anchors) if mode == "pos_neg" else anchors,
    )
    if mode == "anchor_neg":  # x = a
        mixed = torch.eye(n, dtype=torch.float64, device=device)
    elif positives == "first":  # a's first positive, counted once per positive a has
        first_pos = torch.where(pos, torch.arange(n, device=device)[None, :], n).amin(dim=1)
        weight = pos.sum(dim=1, keepdim=True).double()
        mixed = torch.zeros(n, n + 1, dtype=torch.float64, device=device).scatter_(1, first_pos[:, None], weight)
        mixed = mixed[:, :n]
    else:  # every positive x of the anchor, with each of its chosen negatives
        mixed = pos.double()
    met = (mixed.T @ chosen) > 0  # (x, x') met by some anchor; non-negative weights, so no cancellation
    keys = met.flatten().nonzero().squeeze(1)  # row-major: sorted by x * n + x'
    first, second = keys // n, keys % n
    return Mixtures(first=first, second=second, counts=mixed[:, first] * chosen[:, second])


def chosen_negatives(embeddings, neg, anchors, negatives, negative_index, list_rows) -> torch.Tensor:
    """(B, B) float64: how often each anchor takes each sample as a negative: every negative of each anchor, or its
    ``negatives`` hardest (most similar)."""
    candidates = neg & anchors[:, None]
    if negatives is None:
        return candidates.double()
    z = F.normalize(embeddings.detach(), dim=1)
    sim = (z @ z.T).masked_fill(~candidates, float("-inf"))
    top = sim.topk(min(int(negatives), sim.shape[1]), dim=1)
    keep = torch.isfinite(top.values).double()  # 0 where a row has fewer negatives than asked
    columns = top.indices
    if negative_index != "own":
        # the rank of each chosen negative within its anchor's own negatives (index order) ...
        rank = (candidates.cumsum(dim=1) - 1).gather(1, top.indices)
        # ... read as a position in the batch's list of (anchor, negative) pairs, row-major: the column of the
        # (rank+1)-th listed pair, found on the running count of listed pairs
        listed = (neg & list_rows[:, None]).flatten().cumsum(dim=0)
        at = torch.searchsorted(listed, (rank + 1).flatten()).clamp_max(listed.numel() - 1)
        columns = (at % neg.shape[1]).view_as(rank)
    chosen = torch.zeros(neg.shape, dtype=torch.float64, device=neg.device)
    return chosen.scatter_add_(1, columns, keep)
