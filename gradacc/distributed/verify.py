"""Equivalence of accumulation (K = N) and DDP (N workers): the same initial weights and micro-batches, a few
updates each, and the relative differences of gradients, weights and BatchNorm running statistics.

The measure is per parameter tensor ||a - b|| / ||b|| (b = accumulation), the largest over tensors:
per-element differences are not the measure, since float sums taken in another order differ there by design."""
from __future__ import annotations

import torch

from gradacc.core.config import Protocol
from gradacc.core.engine import evaluate, run_update
from gradacc.core.model import build_model, build_optimizer
from gradacc.distributed.rank import RankStream, wrap
from gradacc.parts.context import Context

TOLERANCE = 1e-5  # the first update's gradients must agree to this (largest relative difference)


def snapshot(model: torch.nn.Module) -> dict[str, dict[str, torch.Tensor]]:
    """Copies on the CPU of the gradients, weights and BatchNorm running statistics."""
    return {"grad": {n: p.grad.detach().cpu().clone() for n, p in model.named_parameters() if p.grad is not None},
            "weight": {n: p.detach().cpu().clone() for n, p in model.named_parameters()},
            "running": {n: b.detach().cpu().clone() for n, b in model.named_buffers()
                        if n.endswith(("running_mean", "running_var"))}}


def relative_difference(a: torch.Tensor, b: torch.Tensor) -> float:
    """||a - b|| / ||b|| in float64; 0 where both are zero."""
    a, b = a.double(), b.double()
    norm = b.norm().item()
    diff = (a - b).norm().item()
    return diff / norm if norm > 0 else (0.0 if diff == 0 else float("inf"))


def largest_difference(ddp: dict[str, torch.Tensor], acc: dict[str, torch.Tensor]) -> tuple[float, str]:
    """The largest relative difference over tensors, and the tensor's name."""
    diffs = {name: relative_difference(ddp[name], acc[name]) for name in acc}
    name = max(diffs, key=diffs.get)
    return diffs[name], name


def compare_snapshots(ddp: dict, acc: dict) -> dict[str, float | str]:
    out = {}
    for kind in ("grad", "weight", "running"):
        out[f"{kind}_rel_diff"], out[f"{kind}_tensor"] = largest_difference(ddp[kind], acc[kind])
    return out


def train_and_snapshot(model, optimizer, stream, k: int, updates: int) -> list[dict]:
    """`updates` updates; snapshots after the first and after the last."""
    shots = []
    model.train()
    for u in range(updates):
        run_update(model, optimizer, stream, k)
        if u in (0, updates - 1):
            shots.append(snapshot(model.module if hasattr(model, "module") else model))
    return shots


class ReversedGroups:
    """The accumulation stream with each update's K micro-batches in reverse order: the same gradient sum, taken
    in another order, as a control for how far float rounding alone carries the gradients and weights apart.
    Not for BatchNorm's running statistics: an exponential average over the micro-batches (momentum 0.1), it
    weights each by its position, so the reversed order changes them deterministically."""

    def __init__(self, stream, k: int):
        self.stream, self.k, self.pending = stream, k, []

    def next_batch(self):
        if not self.pending:
            self.pending = [self.stream.next_batch() for _ in range(self.k)]
        return self.pending.pop()

    def close(self) -> None:
        self.stream.close()


def run_verify(protocol: Protocol, ctx: Context, rank: int, world: int, updates: int) -> dict | None:
    """DDP on every rank; on rank 0 afterwards, accumulation with K = world in the same process (same thread
    count). Returns rank 0's figures (None on the other ranks)."""
    device = ctx.runtime.device
    model = build_model(protocol.seed, device)
    ddp_shots = train_and_snapshot(wrap(model, device), build_optimizer(model, protocol),
                                   RankStream(ctx.stream(protocol), rank, world), 1, updates)
    if rank != 0:
        return None
    reference = build_model(protocol.seed, device)
    acc_shots = train_and_snapshot(reference, build_optimizer(reference, protocol), ctx.stream(protocol),
                                   world, updates)
    control = build_model(protocol.seed, device)
    control_shots = train_and_snapshot(control, build_optimizer(control, protocol),
                                       ReversedGroups(ctx.stream(protocol), world), world, updates)
    images, labels = ctx.test_set(protocol)
    acc_accuracy = evaluate(reference, images, labels, protocol.eval_batch)
    ddp_accuracy = evaluate(model, images, labels, protocol.eval_batch)
    # DDP's weights with accumulation's running statistics: what the statistics alone change in accuracy.
    with torch.no_grad():
        ddp_buffers = dict(model.named_buffers())
        for name, buffer in reference.named_buffers():
            ddp_buffers[name].copy_(buffer)
    swapped_accuracy = evaluate(model, images, labels, protocol.eval_batch)
    return {"workers": world, "updates": updates, "tolerance": TOLERANCE,
            "first": compare_snapshots(ddp_shots[0], acc_shots[0]),
            "last": compare_snapshots(ddp_shots[-1], acc_shots[-1]),
            "control_first": compare_snapshots(control_shots[0], acc_shots[0]),
            "control_last": compare_snapshots(control_shots[-1], acc_shots[-1]),
            "accuracy": {"accumulation": acc_accuracy, "ddp": ddp_accuracy,
                         "ddp_weights_accumulation_bn": swapped_accuracy}}


def table_lines(figures: dict) -> list[str]:
    """The verify table as text lines."""
    n, updates = figures["workers"], figures["updates"]
    head = f"{'after':<14}{'grad rel diff':>15}  {'weight rel diff':>15}  {'BN running-stat rel diff':>25}"
    lines = [f"verify: accumulation (K={n}) vs DDP ({n} workers), the same initial weights and micro-batches; "
             "largest ||a-b||/||b|| over tensors (b = accumulation)", head]
    rows = [("update 1", "first"), (f"update {updates}", "last")]
    if "control_first" in figures:
        rows += [("control 1", "control_first"), (f"control {updates}", "control_last")]
    for label, key in rows:
        if key == "control_first":
            lines.append("\ncontrol: accumulation against itself with each update's micro-batches summed in reverse "
                         "order (gradients and weights: float rounding alone; BN running statistics: their "
                         "exponential average taken in another order, a deterministic change, not rounding)")
        f = figures[key]
        lines.append(f"{label:<14}{f['grad_rel_diff']:>15.3e}  {f['weight_rel_diff']:>15.3e}  "
                     f"{f['running_rel_diff']:>25.3e}")
        lines.append(f"{'':<14}  (largest: grad {f['grad_tensor']}, weight {f['weight_tensor']}, "
                     f"BN {f['running_tensor']})")
    acc = figures["accuracy"]
    lines.append(f"test accuracy after {updates} updates: accumulation {acc['accumulation']:.2f}%, DDP "
                 f"{acc['ddp']:.2f}%, DDP weights with accumulation's BN statistics "
                 f"{acc['ddp_weights_accumulation_bn']:.2f}% (accumulation updates BN running statistics K times "
                 "per update, DDP keeps rank 0's)")
    verdict = "PASS" if figures["first"]["grad_rel_diff"] < figures["tolerance"] else "FAIL"
    control = figures.get("control_first", {}).get("grad_rel_diff")
    lines.append(f"{verdict}: first-update gradients agree to {figures['first']['grad_rel_diff']:.2e} "
                 f"(tolerance {figures['tolerance']:.0e}"
                 + (f"; the control's reversed sum differs by {control:.2e})" if control is not None else ")"))
    if control == 0:
        lines.append(f"note: with {n} workers the sums are exact (the control shows no rounding at all), so this "
                     "check cannot tell rounding from agreement; --workers 4 makes rounding visible")
    return lines
