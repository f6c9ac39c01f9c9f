"""AntiCo, the coding-rate Anti-Collapse loss: Jiang, Yao, Dai, Shen, Nie, Shen, "Anti-Collapse Loss for
Deep Metric Learning Based on Coding Rate Metric", IEEE TMM 2024 (arXiv 2407.03106).

It maximises the coding rate of MCR^2 (Yu et al., NeurIPS 2020; see :mod:`harness.regularizers.coding_rate`) of a set of
L2-normalised vectors V, so that they keep spanning the embedding space instead of collapsing:

    R(V)      = 1/2 logdet(I + gam1 * d / (n * eps) * V^T V)          (eps: the squared distortion eps^2)
    form exp:    term = weight * exp(-gam2 * R(V))                     (the authors' form)
    form linear: term = -weight * R(V)                                 (keeps a gradient where exp underflows)

The three variants differ in V:

* ``pair``:        the batch embeddings X (B x d); the gradient flows into the network.
* ``batch_proxy``: the proxies of the classes present in the batch;
* ``all_proxy``:   all class proxies.

The proxies are the base loss's own when it has them (ProxyAnchor, ProxyNCA, normalized softmax,
SoftTriple, ArcFace). With a pair-based base loss (contrastive, triplet, multi-similarity, margin, ...)
this module owns one learnable proxy per training class and ties them to the embeddings with a
ProxyAnchor term (Kim et al., CVPR 2020; pytorch-metric-learning's ``ProxyAnchorLoss``), as the authors'
code does, returned as a separate term:

    align = w_align * L_PA(X, P),  L_PA = 1/|P+| sum_{p in P+} log(1 + sum_{x in X_p+} exp(-alpha (s(x,p) - delta)))
                                        + 1/|P|  sum_{p in P}  log(1 + sum_{x in X_p-} exp( alpha (s(x,p) + delta)))

``scale="reference"`` codes the proxies with gam1 * C / (d * eps) (C proxies), as the authors' code does;
it changes nothing for ``pair`` (their code scales the batch with the textbook factor).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from pytorch_metric_learning.losses import ProxyAnchorLoss

from harness.errors import ConfigError
from harness.regularizers.base import Batch, Regularizer, with_weight_decay
from harness.regularizers.coding_rate import SCALES, coding_rate

VARIANTS = ("pair", "batch_proxy", "all_proxy")
FORMS = ("exp", "linear")
DTYPES = {"float32": torch.float32, "float64": torch.float64}


class AntiCo(Regularizer):
    def __init__(
        self,
        variant: str = "pair",
        weight: float = 1.0,
        eps: float = 0.5,
        gam1: float = 1.0,
        gam2: float = 1.0,
        form: str = "exp",
        scale: str = "textbook",
        w_align: float = 0.0035,
        align_alpha: float = 32.0,
        align_delta: float = 0.1,
        proxy_lr_mult: float = 100.0,
        num_classes: int | None = None,
        embed_dim: int | None = None,
        dtype: str = "float32",
        proxy_init_std: float | None = None,
        weight_decay: float | None = None,
    ):
        super().__init__()
        where = f"regularizer.antico_{variant}"
        for name, value, choices in (
            ("variant", variant, VARIANTS),
            ("form", form, FORMS),
            ("scale", scale, SCALES),
            ("dtype", dtype, tuple(DTYPES)),
        ):
            if value not in choices:
                raise ConfigError(f"{where}.{name}={value!r} is unknown; use one of {', '.join(choices)}")
        for name, value in (("eps", eps), ("gam1", gam1)):
            if not value > 0:
                raise ConfigError(f"{where}.{name}={value} must be > 0, e.g. {name}=0.5")
        if weight < 0 or w_align < 0:
            raise ConfigError(f"{where}.weight={weight} and w_align={w_align} must be >= 0")
        if (proxy_init_std is not None and not proxy_init_std > 0) or (weight_decay is not None and weight_decay < 0):
            raise ConfigError(
                f"{where}.proxy_init_std={proxy_init_std} must be > 0 and weight_decay={weight_decay} >= 0 "
                f"(or null: the ProxyAnchor initialisation, the optimizer's weight decay)"
            )
        self.weight_decay = weight_decay
        self.variant, self.form, self.scale, self.dtype = variant, form, scale, DTYPES[dtype]
        self.weight, self.eps, self.gam1, self.gam2 = float(weight), float(eps), float(gam1), float(gam2)
        self.w_align, self.proxy_lr_mult = float(w_align), float(proxy_lr_mult)
        # Own proxies (and their alignment term) for the proxy variants; released by check_compatible when
        # the base loss brings proxies of its own.
        self.align = None
        if variant != "pair" and num_classes and embed_dim:
            self.align = ProxyAnchorLoss(
                num_classes=int(num_classes),
                embedding_size=int(embed_dim),
                margin=float(align_delta),
                alpha=float(align_alpha),
            )
            if proxy_init_std is not None:
                with torch.no_grad():
                    self.align.proxies.normal_(0.0, float(proxy_init_std))

    # ------------------------------------------------------------------------------------------- start-up
    def check_compatible(self, base_loss) -> None:
        """Bind to the base loss. What cannot work, and fails here:

        * a proxy variant whose proxies are tied to nothing: own proxies with ``w_align`` 0, or the base
          loss's proxies when that loss has weight 0 or frozen proxies (lr_mult 0): the coding rate would
          then move proxies that never reach the embeddings, leaving the network untouched;
        * a proxy variant with a pair-based base loss and no ``num_classes`` / ``embed_dim`` for own proxies.
        """
        if self.variant == "pair":
            return
        where = f"regularizer.antico_{self.variant}"
        if base_loss.is_proxy_based:
            self.align = None  # the base loss's proxies are coded; no proxies of our own
            if base_loss.weight == 0 or base_loss.lr_mult == 0 or not base_loss.proxies.requires_grad:
                raise ConfigError(
                    f"{where} codes the proxies of loss={base_loss.name}, but that loss has weight "
                    f"{base_loss.weight} / lr_mult {base_loss.lr_mult}, so its proxies never reach the "
                    f"embeddings; give the loss a positive weight and lr_mult, or use regularizer=antico_pair"
                )
            return
        if self.align is None:
            raise ConfigError(
                f"{where} with the pair-based loss={base_loss.name} needs proxies of its own; set "
                f"{where}.num_classes and embed_dim (??? fills them from the data)"
            )
        if self.w_align <= 0:
            raise ConfigError(
                f"{where} with the pair-based loss={base_loss.name} and w_align=0 leaves its proxies "
                f"tied to nothing; set {where}.w_align>0 (e.g. 0.0035), use "
                f"regularizer=antico_pair, or a proxy-based loss (loss=proxy_anchor)"
            )

    def param_groups(self) -> list:
        if self.align is None:
            return []
        return [
            with_weight_decay(
                {"name": "proxies", "params": [self.align.proxies], "lr_mult": self.proxy_lr_mult}, self.weight_decay
            )
        ]

    # ------------------------------------------------------------------------------------------- the terms
    def forward(self, batch: Batch, base_loss, model=None) -> dict:
        if self.variant == "pair":
            return {"coding_rate": self.penalty(batch.embeddings, scale="textbook")}
        proxies, labels, own = self.proxies_for(base_loss)
        mask = None
        if self.variant == "batch_proxy":
            per_class = getattr(base_loss, "proxies_per_class", 1) if not own else 1
            proxies, mask = batch_proxies(proxies, torch.isin(labels, batch.labels), len(batch.labels) * per_class)
        terms = {"coding_rate": self.penalty(proxies, scale=self.scale, mask=mask)}
        if own:
            terms["align"] = self.w_align * self.align(batch.embeddings, batch.labels)
        return terms

    def penalty(self, v: torch.Tensor, scale: str, mask: torch.Tensor | None = None) -> torch.Tensor:
        """weight * exp(-gam2 R(V)) or -weight * R(V) of the L2-normalised rows of v (those of ``mask``)."""
        z = F.normalize(v, dim=-1)
        rate = coding_rate(z, eps=self.eps, gam1=self.gam1, scale=scale, dtype=self.dtype, mask=mask)
        return self.weight * torch.exp(-self.gam2 * rate) if self.form == "exp" else -self.weight * rate

    def proxies_for(self, base_loss):
        """(proxies, their class labels, whether they are our own)."""
        if base_loss.is_proxy_based:
            return base_loss.proxies, base_loss.proxy_labels, False
        if self.align is None:
            raise ConfigError(f"antico_{self.variant} needs num_classes and embed_dim for its own proxies")
        p = self.align.proxies
        return p, torch.arange(p.shape[0], device=p.device), True


def batch_proxies(proxies: torch.Tensor, present: torch.Tensor, most: int) -> tuple:
    """(rows, mask): the proxies of the classes present in the batch as a mask over a fixed number of rows, no
    data-dependent shape. A batch of B samples holds at most B classes (``most`` = B x proxies per class present
    proxies), so with more proxies than that the present ones are moved first (in proxy order) and ``most`` rows
    kept; the mask marks which of them are present. The rows are gathered by an integer index either way (as the
    boolean selection before it did, so the backward pass accumulates the proxies' gradient in the same order)."""
    if len(proxies) <= most:
        rows = torch.arange(len(proxies), device=proxies.device)
    else:
        rows = torch.argsort((~present).to(torch.uint8), stable=True)[:most]
    return proxies[rows], present[rows]
