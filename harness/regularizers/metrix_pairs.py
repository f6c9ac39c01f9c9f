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
    n, device = len(labels), labels.device
    same = labels[:, None] == labels[None, :]
    pos = same & ~torch.eye(n, dtype=torch.bool, device=device)
    neg = ~same
    has_pos = pos.any(dim=1)
    anchors = has_pos if mode == "pos_neg" else ~has_pos
    ca, cs = chosen_negatives(
        embeddings,
        neg,
        anchors,
        negatives,
        negative_index,
        list_rows=torch.ones_like(anchors) if mode == "pos_neg" else anchors,
    )

    if mode == "anchor_neg":
        ta, tx, ts, tc = ca, ca, cs, torch.ones_like(ca, dtype=torch.float64)
    elif positives == "first":
        first_pos = torch.where(pos, torch.arange(n, device=device)[None, :], n).amin(dim=1)
        ta, tx, ts = ca, first_pos[ca], cs
        tc = pos.sum(dim=1)[ca].double()
    else:  # every positive x of the anchor, with each of its chosen negatives
        k, tx = pos[ca].nonzero(as_tuple=True)
        ta, ts, tc = ca[k], cs[k], torch.ones_like(k, dtype=torch.float64)

    keys, inverse = torch.unique(tx * n + ts, return_inverse=True)
    counts = torch.zeros(n, len(keys), dtype=torch.float64, device=device)
    counts.index_put_((ta, inverse), tc, accumulate=True)
    return Mixtures(first=keys // n, second=keys % n, counts=counts)


def chosen_negatives(embeddings, neg, anchors, negatives, negative_index, list_rows):
    """(anchor, negative) index pairs: every negative of each anchor, or the ``negatives`` hardest."""
    candidates = neg & anchors[:, None]
    if negatives is None:
        return candidates.nonzero(as_tuple=True)
    z = F.normalize(embeddings.detach(), dim=1)
    sim = (z @ z.T).masked_fill(~candidates, float("-inf"))
    top = sim.topk(min(int(negatives), sim.shape[1]), dim=1)
    keep = torch.isfinite(top.values)  # rows with fewer negatives than asked
    rows = torch.arange(len(neg), device=neg.device)[:, None].expand_as(top.indices)
    ca, cs = rows[keep], top.indices[keep]
    if negative_index == "own":
        return ca, cs
    # the rank of each chosen negative within its anchor's own negatives (index order) ...
    rank = (candidates.cumsum(dim=1) - 1).gather(1, top.indices)[keep]
    # ... read as a position in the batch's list of (anchor, negative) pairs
    _, listed = (neg & list_rows[:, None]).nonzero(as_tuple=True)
    return ca, listed[rank]
