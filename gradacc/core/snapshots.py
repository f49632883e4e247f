"""Per-micro-batch gradient norms read during an update: what the noise scale's estimators (core/noise.py) take.
The gradients are those of the cross-entropy alone: SGD adds the weight decay inside `step()`, never into
`.grad`.

Two ways to the same numbers, chosen by device (`gradient_snapshots`): on a CPU, memory traffic is the cost, so
a hook per parameter reads each micro-batch's gradient once as backward writes it; on a GPU, launching kernels
from Python is the cost, so a few large foreach kernels per micro-step read `.grad` against a flat copy."""
from __future__ import annotations

import numpy as np
import torch

from gradacc.core.timing import NO_TIMER, SpanTotals


def squared_norm(tensors: list[torch.Tensor]) -> torch.Tensor:
    """|x|^2 of the tensors taken as one vector, on their device."""
    return torch.stack(torch._foreach_norm(tensors)).square().sum()


class Snapshots:
    """What both ways share: the per-update results, kept on the device until `read()` (once per epoch, so no
    micro-step waits on the host), and `spans`, the time of the snapshot work per update, which Part 3
    subtracts from the update's timed whole (`timed=False`, seeds trained together: nothing is timed, so no
    CUDA event is recorded). An instance is run_update's `after_backward(i)`."""

    def __init__(self, model: torch.nn.Module, k: int, timed: bool = True):
        self.params = [p for p in model.parameters() if p.requires_grad]
        self.k = k
        self._small: list[torch.Tensor] = []  # per update: mean over micro-batches of |g_i|^2
        self._big: list[torch.Tensor] = []  # per update: |mean of the g_i|^2
        self.spans = SpanTotals(self.params[0].device) if timed else NO_TIMER

    def _end_update(self, micro_sq: torch.Tensor) -> None:
        """`micro_sq` = sum_i |g_i / K|^2; `.grad` now holds the update's mean gradient."""
        self._small.append(micro_sq * self.k)  # (1/K) sum_i K^2 |g_i/K|^2
        self._big.append(squared_norm([p.grad for p in self.params]))

    def close(self) -> None:
        """Detaches from the model (it trains on without the snapshots)."""

    def read(self) -> tuple[np.ndarray, np.ndarray]:
        """(|G_small|^2, |G_big|^2) per update since the last read, as float64 on the host; clears them."""
        if not self._small:
            return np.zeros(0), np.zeros(0)
        both = torch.stack([torch.stack(self._small), torch.stack(self._big)]).double().cpu().numpy()
        self._small, self._big = [], []
        return both[0], both[1]


class HookSnapshots(Snapshots):
    """A hook on each parameter sees micro-batch i's contribution g_i / K as backward computes it, before autograd
    adds it into `.grad`: one read of a tensor just written, no copy, and `.grad` accumulates as without the hook
    (the step is bitwise the same). A Python call and a kernel per parameter: cheap on a CPU, not on a GPU."""

    def __init__(self, model: torch.nn.Module, k: int, timed: bool = True):
        super().__init__(model, k, timed)
        self._parts: list[torch.Tensor] = []  # the current micro-step's per-parameter |g_i / K|^2
        self._micro: list[torch.Tensor] = []  # the current update's |g_i / K|^2, one per micro-step
        self._handles = [p.register_hook(self._see) for p in self.params]

    def _see(self, grad: torch.Tensor) -> None:
        with self.spans:
            flat = grad.reshape(-1)
            self._parts.append(flat.dot(flat))

    def __call__(self, i: int) -> None:
        with self.spans:
            self._micro.append(torch.stack(self._parts).sum())
            self._parts = []
            if i == self.k - 1:
                self._end_update(torch.stack(self._micro).sum())
                self._micro = []
        if i == self.k - 1:
            self.spans.end_update()

    def close(self) -> None:
        for handle in self._handles:
            handle.remove()


class CopySnapshots(Snapshots):
    """backward(loss / K) adds g_i / K into `.grad`, so micro-batch i's gradient is K * (.grad after - .grad
    before): one flat copy of the previous `.grad` stays on the device, and a few foreach kernels per micro-step
    subtract, square and copy. Three extra passes over the gradient: cheap on a GPU, not on a CPU."""

    def __init__(self, model: torch.nn.Module, k: int, timed: bool = True):
        super().__init__(model, k, timed)
        self.flat = torch.zeros(sum(p.numel() for p in self.params), device=self.params[0].device,
                                dtype=self.params[0].dtype)
        self.views = [v.view_as(p) for v, p in zip(self.flat.split([p.numel() for p in self.params]), self.params)]
        self._micro_sq = torch.zeros((), device=self.flat.device, dtype=self.flat.dtype)

    def __call__(self, i: int) -> None:
        with self.spans:
            grads = [p.grad for p in self.params]
            if i == 0:  # zero_grad(set_to_none) started the update: the previous sum is zero
                torch._foreach_copy_(self.views, grads)
                self._micro_sq = self.flat.dot(self.flat)
            else:
                torch._foreach_sub_(self.views, grads)  # flat = before - after = -g_i / K
                self._micro_sq = self._micro_sq + self.flat.dot(self.flat)
                torch._foreach_copy_(self.views, grads)
            if i == self.k - 1:
                self._end_update(self._micro_sq)
        if i == self.k - 1:
            self.spans.end_update()


def gradient_snapshots(model: torch.nn.Module, k: int, timed: bool = True) -> Snapshots:
    """The cheaper way for the model's device (see the module's docstring)."""
    cuda = next(model.parameters()).device.type == "cuda"
    return (CopySnapshots if cuda else HookSnapshots)(model, k, timed)
