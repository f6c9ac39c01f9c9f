"""Count what in a training step makes the host wait for the device: ``count_host_reads() -> HostReads``.

On a GPU the host enqueues kernels ahead of the device; an op that needs a device value on the host stalls that
queue (one host-device synchronisation). Counted, on any device (a CPU run shows the same calls), per op:

* host reads: ``aten._local_scalar_dense`` (``.item()``, ``float(t)``, ``bool(t)``, ``if t:``), ``Tensor.tolist``,
  ``Tensor.numpy`` and copies to the CPU (``.cpu()``, ``.to("cpu")``, ``aten._to_copy``/``copy_`` from a device);
* data-dependent shapes, whose size the host must read before it can allocate: ``nonzero``, ``unique*``,
  ``masked_select``, ``bincount``, ``repeat_interleave`` by a tensor, and indexing with a boolean mask
  (``x[mask]``, ``x[mask] = v``), which runs a ``nonzero`` inside.

Each event is charged to its owner: the innermost Python frame that is not torch's own call machinery
(``harness.regularizers.metrix_pairs:pick_mixtures``, ``pytorch_metric_learning.reducers...``, ``torch.optim...``).
Ops of the backward pass are charged to their graph node (``backward:IndexBackward0``), or with
``trace_backward=True`` to the forward code that built them (anomaly mode keeps each node's forward stack).
``HostReads.harness_own(ALLOWLIST)`` is what the harness's code did that nobody declared: its own count.

    with count_host_reads() as reads:
        train_one_epoch(...)
    print(reads.table(ALLOWLIST))
"""

from __future__ import annotations

import re
import sys
import traceback
from collections import Counter
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch.overrides import TorchFunctionMode
from torch.utils._python_dispatch import TorchDispatchMode

HOST_READ_OPS = {"_local_scalar_dense"}
DATA_DEPENDENT_OPS = {
    "nonzero",
    "argwhere",
    "unique",
    "_unique",
    "_unique2",
    "unique_dim",
    "unique_consecutive",
    "masked_select",
    "bincount",
    "repeat_interleave",
}
BOOL_INDEX_OPS = {"index", "index_put", "index_put_", "_index_put_impl_"}
COPY_OPS = {"_to_copy", "copy_"}
HOST_METHODS = {"tolist", "numpy", "__array__", "cpu"}


@dataclass(frozen=True)
class Allowed:
    """A declared, accepted host read: its owner (a prefix of ``module:function``), the op, and why."""

    owner: str
    op: str
    why: str

    def covers(self, owner: str, op: str) -> bool:
        return owner.startswith(self.owner) and op == self.op


# What third-party code does in a step (not ours to change), and the harness's deliberate draws on the host.
ALLOWLIST = (
    Allowed("pytorch_metric_learning", "_local_scalar_dense", "PML's miners and reducers count pairs on the host"),
    Allowed("pytorch_metric_learning", "nonzero", "PML's miners and reducers select pairs by masks"),
    Allowed("pytorch_metric_learning", "index", "PML's losses and reducers select pairs by boolean masks"),
    Allowed("pytorch_metric_learning", "index_put_", "the backward of PML's boolean-mask selections"),
    Allowed("pytorch_metric_learning", "unique", "PML's losses list the labels present"),
    Allowed("pytorch_metric_learning", "_unique2", "PML's losses list the labels present"),
    Allowed("pytorch_metric_learning", "bincount", "PML's reducers count per class"),
    Allowed("pytorch_metric_learning", "masked_select", "PML's losses select pairs by masks"),
    Allowed("torch.optim", "_local_scalar_dense", "the optimizer's step counter: a CPU tensor (capturable=False)"),
    Allowed("torch.distributions", "_local_scalar_dense", "torch's own Beta sampler"),
    Allowed(
        "harness.training.step:epoch_means",
        "tolist",
        "the epoch's one read: every term's mean and whether every step was finite, at the epoch's end",
    ),
    Allowed(
        "harness.regularizers.metrix:Metrix.draw",
        "_local_scalar_dense",
        "Metrix draws its mode and lambda from torch's CPU generator (a host draw, no device value)",
    ),
    Allowed(
        "harness.regularizers.metrix_pairs:pick_mixtures",
        "nonzero",
        "Metrix re-embeds the distinct mixtures of the batch: their number is the data's (a static bound "
        "would re-embed up to B^2 inputs), so it is read once per step",
    ),
)

# torch's own call machinery: an event raised inside these is charged to whoever called them
_TRANSPARENT = re.compile(
    r"torch/(_tensor|_ops|overrides|functional|_VF|_jit_internal|_utils|_compile|_library/.*|utils/_python_dispatch"
    r"|utils/_contextlib|utils/_device|nn/functional|nn/modules/.*|nn/parameter|autograd/.*|_dynamo/.*|"
    r"_decomp/.*|_refs/.*|_prims/.*|_higher_order_ops/.*)\.py$"
)
_SKIP_FILES = {__file__, "contextlib.py", "functools.py"}
_OWNER_ROOTS = ("harness", "hydra_plugins")


def _owner_of(filename: str, function: str) -> str | None:
    """``package.module:function`` of a frame, or None for a frame of torch's call machinery."""
    path = Path(filename)
    if filename == __file__ or path.name in _SKIP_FILES or _TRANSPARENT.search(path.as_posix()):
        return None
    parts = path.with_suffix("").parts
    for root in ("site-packages", "dist-packages"):
        if root in parts:
            return ".".join(parts[parts.index(root) + 1 :]) + f":{function}"
    for root in _OWNER_ROOTS:
        if root in parts:
            i = len(parts) - 1 - parts[::-1].index(root)
            return ".".join(parts[i:]) + f":{function}"
    return f"{path.name}:{function}"


def _owner_from_stack() -> str:
    frame = sys._getframe(2)
    while frame is not None:
        code = frame.f_code
        owner = _owner_of(code.co_filename, getattr(code, "co_qualname", code.co_name))
        if owner is not None:
            return owner
        frame = frame.f_back
    return "?"


_TRACE_LINE = re.compile(r'File "([^"]+)", line \d+, in (\S+)')


def _owner_from_forward_trace(node) -> str:
    """The forward code that built the backward node being run (anomaly mode records its stack), else the node."""
    trace = getattr(node, "metadata", {}).get("traceback_") if node is not None else None
    if not trace:
        return f"backward:{node.name()}" if node is not None else "backward:?"
    text = "".join(trace) if isinstance(trace, list) else str(trace)
    for filename, function in reversed(_TRACE_LINE.findall(text)):
        owner = _owner_of(filename, function)
        if owner is not None:
            return owner
    return "backward:?"


def _op_name(func) -> str:
    return func.__name__.split(".")[0] if hasattr(func, "__name__") else str(func)


def _has_bool_index(args) -> bool:
    indices = args[1] if len(args) > 1 else ()
    return any(
        isinstance(i, torch.Tensor) and i.dtype in (torch.bool, torch.uint8)
        for i in (indices if isinstance(indices, (list, tuple)) else ())
    )


def _is_device_to_host(func_name: str, args, kwargs) -> bool:
    if func_name == "_to_copy":
        src, dst = args[0], kwargs.get("device")
        return isinstance(src, torch.Tensor) and src.device.type != "cpu" and dst is not None and dst.type == "cpu"
    if func_name == "copy_" and len(args) > 1:
        dst, src = args[0], args[1]
        return isinstance(src, torch.Tensor) and src.device.type != "cpu" and dst.device.type == "cpu"
    return False


@dataclass
class HostReads:
    """Events counted as ``{(owner, op): count}``, and one example stack per (owner, op)."""

    counts: Counter = field(default_factory=Counter)
    examples: dict = field(default_factory=dict)

    def add(self, owner: str, op: str) -> None:
        self.counts[(owner, op)] += 1
        if (owner, op) not in self.examples:
            self.examples[(owner, op)] = "".join(traceback.format_stack(limit=14)[:-3])

    def split(self, allowlist=ALLOWLIST) -> tuple[Counter, Counter]:
        allowed, unexpected = Counter(), Counter()
        for (owner, op), n in self.counts.items():
            (allowed if any(a.covers(owner, op) for a in allowlist) else unexpected)[(owner, op)] += n
        return allowed, unexpected

    def unexpected(self, allowlist=ALLOWLIST) -> Counter:
        return self.split(allowlist)[1]

    def harness_own(self, allowlist=ALLOWLIST) -> Counter:
        """The undeclared events the harness's own code raised."""
        return Counter({k: n for k, n in self.unexpected(allowlist).items() if k[0].startswith(_OWNER_ROOTS)})

    def table(self, allowlist=ALLOWLIST) -> str:
        allowed, unexpected = self.split(allowlist)
        lines = [f"{'count':>5}  {'op':20s} owner"]
        for label, group in (("declared (allowlist)", allowed), ("NOT declared", unexpected)):
            lines.append(f"-- {label}: {sum(group.values())}")
            lines += [f"{n:5d}  {op:20s} {owner}" for (owner, op), n in sorted(group.items())]
        return "\n".join(lines)


class _Dispatch(TorchDispatchMode):
    def __init__(self, reads: HostReads):
        super().__init__()
        self.reads = reads

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        name = _op_name(func)
        kind = None
        if name in HOST_READ_OPS or name in DATA_DEPENDENT_OPS:
            kind = name
        elif name in BOOL_INDEX_OPS and _has_bool_index(args):
            kind = name
        elif name in COPY_OPS and _is_device_to_host(name, args, kwargs):
            kind = "device_to_host"
        if kind is not None:
            node = torch._C._current_autograd_node()
            owner = _owner_from_forward_trace(node) if node is not None else _owner_from_stack()
            self.reads.add(owner, kind)
        return func(*args, **kwargs)


class _Methods(TorchFunctionMode):
    """Host reads no aten op shows: ``tolist``, ``numpy`` and ``cpu()`` / ``to("cpu")`` of a tensor."""

    def __init__(self, reads: HostReads):
        super().__init__()
        self.reads = reads

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        name = getattr(func, "__name__", "")
        if name in HOST_METHODS or (name == "to" and _to_cpu(args, kwargs)):  # a CPU tensor's .to("cpu") is none
            self.reads.add(_owner_from_stack(), "device_to_host" if name in ("cpu", "to") else name)
        return func(*args, **kwargs)


def _to_cpu(args, kwargs) -> bool:
    if not (args and isinstance(args[0], torch.Tensor) and args[0].device.type != "cpu"):
        return False
    target = kwargs.get("device", args[1] if len(args) > 1 else None)
    if isinstance(target, str):
        return target.startswith("cpu")
    return isinstance(target, torch.device) and target.type == "cpu"


@contextmanager
def count_host_reads(trace_backward: bool = False):
    """Count host reads and data-dependent ops of everything run inside. A backward op is charged to
    ``backward:<its graph node>`` (its forward op was already charged to its owner: a boolean selection's backward is
    the selection's), or with ``trace_backward`` to the forward code that built it (anomaly mode: several times
    slower)."""
    reads = HostReads()
    anomaly = torch.autograd.set_detect_anomaly(True, check_nan=False) if trace_backward else nullcontext()
    with anomaly, _Methods(reads), _Dispatch(reads):
        yield reads
