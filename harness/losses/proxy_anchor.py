"""Proxy Anchor with a choice of how its positive term is averaged.

Kim, Kim, Cho, Kwak, "Proxy Anchor Loss for Deep Metric Learning", CVPR 2020, as pytorch-metric-learning's
``ProxyAnchorLoss`` computes it, for cosine similarities s(x, p), scale alpha and margin delta:

    L = 1/|P+| sum_{p in P+} log(1 + sum_{x in X_p+} exp(-alpha (s(x, p) - delta)))       (positive term)
      + 1/|P|  sum_{p in P}  log(1 + sum_{x in X_p-} exp( alpha (s(x, p) + delta)))       (negative term)

``average_positives_over``:

* ``proxies`` (the paper, pytorch-metric-learning): the positive term is the mean over the proxies with a
  positive in the batch, P+.
* ``samples`` (the code of the NIR and AntiCo releases, ``criteria/nir.py`` / ``criteria/antico.py``,
  ``pos_s.mean()`` over the batch's columns): the mean over the batch's B samples of their own proxy's term,
  i.e. each proxy of P+ weighted by its number of samples n_p,  1/B sum_{p in P+} n_p log(1 + ...).

The two agree when every class of the batch has the same number of samples (an M-per-class batch without
repeated classes); with the authors' class sampler, which draws classes with replacement, a class drawn
twice weighs double under ``samples``.
"""

from __future__ import annotations

from pytorch_metric_learning import losses

from harness.errors import ConfigError

AVERAGES = ("proxies", "samples")


class ProxyAnchorLoss(losses.ProxyAnchorLoss):
    def __init__(self, *args, average_positives_over: str = "proxies", **kwargs):
        if average_positives_over not in AVERAGES:
            raise ConfigError(
                f"loss.loss.average_positives_over={average_positives_over!r} is unknown; "
                f"use one of {', '.join(AVERAGES)}"
            )
        super().__init__(*args, **kwargs)
        self.average_positives_over = average_positives_over

    def compute_loss(self, embeddings, labels, indices_tuple, ref_emb, ref_labels):
        loss_dict = super().compute_loss(embeddings, labels, indices_tuple, ref_emb, ref_labels)
        if self.average_positives_over == "samples":
            # per-class counts with a fixed shape (bincount's length would be a device value)
            counts = embeddings.new_zeros(self.num_classes).index_add_(0, labels, embeddings.new_ones(len(labels)))
            pos = loss_dict["pos_loss"]
            pos["losses"] = pos["losses"] * counts
            pos["divisor"] = len(labels)
        return loss_dict
