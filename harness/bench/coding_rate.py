"""2. AntiCo's coding-rate term, forward + backward, against the textbook d x d logdet.

The subject is ``harness.regularizers.coding_rate.coding_rate`` (the smaller of the n x n and d x d Gram
matrices, then a Cholesky factorisation). The alternative is what the MCR^2 and AntiCo reference code
computes: ``1/2 * torch.logdet(I_d + gam1 * d / (n * eps) * Z^T Z)`` (a d x d LU factorisation), on the
same L2-normalised batch, in float32. Values and gradients are compared on every configuration.

On CPU the figures that count run on one thread, timed by its CPU time: on a shared 2-core machine the wall
time of small two-thread ops mostly measures the scheduler (the goal's configuration is also reported on
the process's threads and the wall clock, to show it). With a GPU, every configuration runs there too.
"""

from __future__ import annotations

import torch

from harness.bench.common import MIN_ROUNDS, clock_for, figure, interleave, synchronize
from harness.regularizers.coding_rate import coding_rate
from harness.runtime import torch_threads

EPS, GAM1 = 0.5, 1.0


def textbook_coding_rate(z: torch.Tensor, eps: float = EPS, gam1: float = GAM1) -> torch.Tensor:
    """The reference code's form: R(Z) = 1/2 logdet(I_d + gam1 * d / (n * eps) * Z^T Z)."""
    n, d = z.shape
    identity = torch.eye(d, dtype=z.dtype, device=z.device)
    return torch.logdet(identity + gam1 * d / (n * eps) * z.T @ z) / 2


def batch(n: int, d: int, dtype=torch.float32, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    z = torch.nn.functional.normalize(torch.randn(n, d, generator=g, dtype=torch.float64), dim=1)
    return z.to(dtype).requires_grad_(True)


def value_and_grad(fn, z: torch.Tensor) -> tuple:
    z.grad = None
    r = fn(z)
    r.backward()
    return r.item(), z.grad.clone()


def forward_backward(fn, z: torch.Tensor, calls: int):
    def go():
        for _ in range(calls):
            z.grad = None
            fn(z).backward()
        synchronize(z.device)

    return go


def compare(n: int, d: int) -> dict:
    out = {"batch": n, "d": d}
    for name, dtype in (("float32", torch.float32), ("float64", torch.float64)):
        z = batch(n, d, dtype)
        ours, g_ours = value_and_grad(lambda t: coding_rate(t, eps=EPS, gam1=GAM1, dtype=dtype), z)  # noqa: B023 (called here)
        ref, g_ref = value_and_grad(textbook_coding_rate, z)
        out[name] = {
            "ours": ours,
            "textbook": ref,
            "rel_diff": abs(ours - ref) / abs(ref),
            "grad_max_abs_diff": float((g_ours - g_ref).abs().max()),
        }
    out["equal"] = out["float32"]["rel_diff"] <= 1e-5 and out["float64"]["rel_diff"] <= 1e-10
    return out


def settings(quick: bool) -> list:
    """(label, device, torch threads, clock, configurations): every configuration at one CPU thread on its CPU
    time; the goal's at the process's threads on the wall clock too; every one on the GPU where there is one."""
    configs = [(90, 512)] if quick else [(90, 128), (90, 512), (256, 128), (256, 512)]
    threads = torch.get_num_threads()
    out = [("1 CPU thread, thread CPU time", "cpu", 1, clock_for(1)[0], configs)]
    if threads > 1:
        out.append((f"{threads} CPU threads, wall clock", "cpu", None, clock_for(None)[0], [(90, 512)]))
    if torch.cuda.is_available():
        out.append((torch.cuda.get_device_name(0), "cuda", None, clock_for(None)[0], configs))
    return out


def run(quick: bool = False, full: bool = False) -> dict:
    repeats, calls = (MIN_ROUNDS, 5) if quick else (9, 20)
    figures = []
    for label, device, threads, clock, configs in settings(quick):
        with torch_threads(threads):
            for n, d in configs:
                z = batch(n, d).detach().to(device).requires_grad_(True)
                t = interleave(
                    {
                        "ours": forward_backward(lambda t: coding_rate(t, eps=EPS, gam1=GAM1), z, calls),
                        "textbook": forward_backward(textbook_coding_rate, z, calls),
                    },
                    repeats,
                    clock=clock,
                )
                per_call = {k: [s / calls for s in v] for k, v in t.items()}
                goal = "speedup>=10" if (n, d) == (90, 512) and threads == 1 else None  # judged on the steady clock
                gram = f"{min(n, d)} x {min(n, d)} Gram + Cholesky"
                figures.append(
                    figure(
                        f"coding rate fwd+bwd, batch {n}, d={d}, {label}",
                        f"harness coding_rate ({gram})",
                        f"textbook {d} x {d} logdet",
                        per_call["ours"],
                        per_call["textbook"],
                        goal=goal,
                        show="speedup",
                        load=t.load,
                    )
                )
    configs = [(90, 512)] if quick else [(90, 128), (90, 512), (256, 128), (256, 512)]
    checks = [compare(n, d) for n, d in configs]
    return {
        "figures": figures,
        "checks": checks,
        "params": {"eps": EPS, "gam1": GAM1, "dtype": "float32", "calls_per_round": calls},
        "notes": [
            f"values equal (float32 rel. diff <= 1e-5, float64 <= 1e-10): "
            f"{'yes' if all(c['equal'] for c in checks) else 'NO'}; largest float32 rel. diff "
            f"{max(c['float32']['rel_diff'] for c in checks):.1e}, largest float32 gradient diff "
            f"{max(c['float32']['grad_max_abs_diff'] for c in checks):.1e}"
        ],
        "ok": all(c["equal"] for c in checks),
    }
