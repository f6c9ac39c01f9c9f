"""Non-isotropy regularization (Roth, Vinyals, Akata, "Non-isotropy Regularization for Proxy-based Deep
Metric Learning", CVPR 2022).

A conditional normalizing flow f maps each embedding x_i to a latent z_i = f(x_i | c_i), conditioned on
c_i, the L2-normalised proxy of the sample's class (not detached: the proxies get gradient from this
term too). The regularizer is the per-sample Gaussian negative log-likelihood without its constant,
exponentiated and averaged, as the authors' code computes it:

    L_NIR = mean_i exp( 1/2 ||z_i||^2 - log|det J_f(x_i | c_i)| )

It asks the samples of a class to be explainable as an invertible, proxy-conditioned transformation of
one isotropic Gaussian, i.e. to spread around their proxy in a structured, non-isotropic way instead
of collapsing onto it. The flow (FrEIA blocks, see ``harness.regularizers.flow``) defaults to the
authors': 5 blocks of random permutation + GLOW coupling (clamp 2), every block conditioned on c_i,
subnets of 8 linear layers x 128 units. The returned term is ``weight * L_NIR``; the authors'
``L_NIR + w_align * L_proxy`` is ``regularizer.nir.weight=1 loss.weight=<w_align>``. The flow's learning
rate is ``optimizer.lr * lr_mult`` and its weight decay ``weight_decay`` (None: the optimizer's; the authors'
flow group has none, i.e. 0). The class default lr_mult is the authors' x50 (over their lr 1e-5, i.e. 5e-4);
``conf/regularizer/nir.yaml`` sets 0.5, the same 5e-4 over the harness's default lr 1e-3 (x5 diverges there).

Proxies come from the base loss (``base_loss.proxies`` / ``proxy_labels``), so any proxy-based loss
works. A class with several proxies (SoftTriple's centers) is conditioned, per sample, on
``multi_proxy``:

    nearest  the class's center most similar to the sample (the hard version of SoftTriple's own
             soft assignment; default). The choice is not differentiated; the chosen center is.
    mean     the L2-normalised mean of the class's normalised centers (one condition per class).

With one proxy per class both are that proxy.

``form`` (numerics). exp(.) overflows float32 once an exponent passes ~88, which a badly initialised
or diverging flow can reach. ``exp`` is the authors' formula (default; an overflow stops the run at the epoch's
end with a ``NonFiniteLossError`` naming the fix). ``log_mean_exp`` = log L_NIR, computed with logsumexp: the same
minimisers and the same per-sample weighting (softmax of the exponents), never overflows, but its
gradient is the authors' divided by L_NIR. ``nll`` = mean_i (1/2||z_i||^2 - log|det J|), the plain flow
likelihood (every sample weighted equally).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from harness.errors import ConfigError
from harness.regularizers.base import Batch, Regularizer
from harness.regularizers.flow import build_conditional_flow

FORMS = ("exp", "log_mean_exp", "nll")
MULTI_PROXY = ("nearest", "mean")
PROXY_LOSSES = "proxy_anchor, proxy_nca, normalized_softmax, soft_triple or arcface"


class NIR(Regularizer):
    def __init__(
        self,
        embed_dim: int,
        weight: float = 1.0,
        lr_mult: float = 50.0,
        blocks: int = 5,
        depth: int = 8,
        width: int = 128,
        clamp: float = 2.0,
        conditioning: str = "dense",
        multi_proxy: str = "nearest",
        form: str = "exp",
        weight_decay: float | None = None,
    ):
        super().__init__()
        if form not in FORMS:
            raise ConfigError(f"regularizer.nir.form={form!r} is unknown; use one of {', '.join(FORMS)}")
        if multi_proxy not in MULTI_PROXY:
            raise ConfigError(
                f"regularizer.nir.multi_proxy={multi_proxy!r} is unknown; use one of {', '.join(MULTI_PROXY)}"
            )
        if weight < 0:
            raise ConfigError(f"regularizer.nir.weight={weight} must be >= 0")
        self.embed_dim = int(embed_dim)
        self.weight = float(weight)
        self.lr_mult = float(lr_mult)
        if weight_decay is not None and weight_decay < 0:
            raise ConfigError(f"regularizer.nir.weight_decay={weight_decay} must be >= 0, or null for the optimizer's")
        self.weight_decay = weight_decay  # the flow's group; None: the optimizer's weight decay
        self.form = form
        self.multi_proxy = multi_proxy
        self.flow = build_conditional_flow(
            self.embed_dim,
            self.embed_dim,
            blocks=blocks,
            depth=depth,
            width=width,
            clamp=clamp,
            conditioning=conditioning,
        )

    @property
    def non_finite_hints(self) -> dict:
        """What the training loop suggests when this term is the non-finite one."""
        if self.form != "exp":
            return {}
        return {
            "nir": "NIR's exp(1/2||z||^2 - log|det J|) overflowed float32 (an exponent beyond ~88): set "
            "regularizer.nir.form=log_mean_exp (stable, same minimisers), or lower regularizer.nir.lr_mult"
        }

    def check_compatible(self, base_loss) -> None:
        if not base_loss.is_proxy_based:
            raise ConfigError(
                f"regularizer nir conditions its flow on class proxies, but loss={base_loss.name} has none; "
                f"use a proxy-based loss: loss={PROXY_LOSSES}"
            )
        dim = base_loss.proxies.shape[1]
        if dim != self.embed_dim:
            raise ConfigError(
                f"regularizer.nir.embed_dim={self.embed_dim} differs from the loss's proxies ({dim}); "
                f"leave it ??? (filled from head.embed_dim)"
            )

    def conditions(
        self, proxies: torch.Tensor, proxy_labels: torch.Tensor, embeddings: torch.Tensor, labels: torch.Tensor
    ) -> torch.Tensor:
        """The normalised proxy of each sample's class, (n, d); see ``multi_proxy`` for several per class."""
        p = F.normalize(proxies, dim=-1)
        same_class = labels[:, None] == proxy_labels[None, :]  # (n, P)
        if self.multi_proxy == "mean":
            summed = same_class.to(p.dtype) @ p
            return F.normalize(summed, dim=-1)
        sims = (embeddings.detach() @ p.detach().T).masked_fill(~same_class, -math.inf)
        return p[sims.argmax(dim=1)]

    def exponents(self, embeddings: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        """1/2 ||f(x_i | c_i)||^2 - log|det J_f(x_i | c_i)| per sample: the NLL without its constant."""
        z, log_det = self.flow(embeddings, c=[cond])
        return 0.5 * z.pow(2).sum(dim=1) - log_det

    def forward(self, batch: Batch, base_loss, model=None) -> dict:
        cond = self.conditions(base_loss.proxies, base_loss.proxy_labels, batch.embeddings, batch.labels)
        a = self.exponents(batch.embeddings, cond)
        if self.form == "log_mean_exp":
            loss = torch.logsumexp(a, dim=0) - math.log(a.shape[0])
        elif self.form == "nll":
            loss = a.mean()
        else:
            loss = a.exp().mean()  # may overflow: the training loop finds it at the epoch's end (non_finite_hints)
        return {"nir": self.weight * loss}
