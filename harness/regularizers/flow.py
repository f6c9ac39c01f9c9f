"""The conditional normalizing flow of NIR, built from FrEIA's invertible blocks (as the authors do).

    x --[PermuteRandom(seed k) -> GLOWCouplingBlock(clamp, subnet MLP | c)] x blocks--> z,  log|det J|

Each block is a fixed random permutation of the dimensions (seeded by the block's index, so the same
flow is built in every run) followed by a GLOW affine coupling block whose subnets read one half of the
vector concatenated with the condition ``c``. ``conditioning`` says which coupling blocks see ``c``:

    dense   every block (the authors' default)      start / mid / end   only the first / middle / last

The subnets are MLPs with ``depth`` linear layers of ``width`` units and ReLU between them (the authors'
``subnet_fc``: depth 8, width 128). ``flow(x, c=[cond])`` returns ``(z, log_det)``; ``rev=True`` inverts.
"""

from __future__ import annotations

import FrEIA.framework as Ff
import FrEIA.modules as Fm
import numpy as np
from torch import nn

from harness.errors import ConfigError

CONDITIONINGS = ("dense", "start", "mid", "end")


def mlp_subnet(depth: int, width: int):
    """A FrEIA subnet constructor: ``(dims_in, dims_out) -> Linear, ReLU, ..., Linear`` with ``depth`` layers."""

    def build(dims_in: int, dims_out: int) -> nn.Sequential:
        sizes = [dims_in] + [width] * (depth - 1) + [dims_out]
        layers = []
        for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
            if i > 0:
                layers.append(nn.ReLU())
            layers.append(nn.Linear(a, b))
        return nn.Sequential(*layers)

    return build


def conditioned_blocks(blocks: int, conditioning: str) -> set:
    """Indices of the coupling blocks that read the condition."""
    if conditioning not in CONDITIONINGS:
        raise ConfigError(f"conditioning={conditioning!r} is unknown; use one of {', '.join(CONDITIONINGS)}")
    return {"dense": set(range(blocks)), "start": {0}, "mid": {blocks // 2}, "end": {blocks - 1}}[conditioning]


def build_conditional_flow(
    dim: int,
    cond_dim: int,
    blocks: int = 5,
    depth: int = 8,
    width: int = 128,
    clamp: float = 2.0,
    conditioning: str = "dense",
) -> Ff.SequenceINN:
    """A FrEIA ``SequenceINN`` on ``dim``-vectors conditioned on ``cond_dim``-vectors (one condition tensor)."""
    if dim < 2:
        raise ConfigError(f"the flow needs an embedding of at least 2 dimensions (got {dim}); raise head.embed_dim")
    if blocks < 1 or depth < 1 or width < 1:
        raise ConfigError(f"flow blocks={blocks}, depth={depth}, width={width} must all be >= 1")
    if clamp <= 0:
        raise ConfigError(f"flow clamp={clamp} must be > 0 (the largest log-scale of a coupling)")
    with_condition = conditioned_blocks(blocks, conditioning)
    flow = Ff.SequenceINN(dim)
    # FrEIA's PermuteRandom reseeds numpy's global generator: keep the run's numpy stream untouched.
    numpy_state = np.random.get_state()
    try:
        for k in range(blocks):
            flow.append(Fm.PermuteRandom, seed=k)
            cond = dict(cond=0, cond_shape=(cond_dim,)) if k in with_condition else {}
            flow.append(Fm.GLOWCouplingBlock, subnet_constructor=mlp_subnet(depth, width), clamp=clamp, **cond)
    finally:
        np.random.set_state(numpy_state)
    return flow
