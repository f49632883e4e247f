"""Per-micro-batch gradient norms read from `.grad` during an update: what the noise scale's estimators
(core/noise.py) take. The gradients are those of the cross-entropy alone: SGD adds the weight decay inside
`step()`, never into `.grad`."""
from __future__ import annotations

import numpy as np
import torch

from gradacc.core.timing import SpanTotals


class GradientSnapshots:
    """`after_backward` hook of run_update: the squared norm of each micro-batch's gradient and of the mean.

    backward(loss / K) adds g_i / K into `.grad`, so micro-batch i's gradient is K * (.grad after - .grad
    before). One flat copy of the previous `.grad` stays on the device; the squared norms are summed there and
    read to the host only by `read()` (once per epoch), so no micro-step waits on the host. `spans` holds the
    time of this work per update, which Part 3 subtracts from the update's timed whole."""

    def __init__(self, model: torch.nn.Module, k: int):
        self.params = [p for p in model.parameters() if p.requires_grad]
        self.k = k
        self.flat = torch.zeros(sum(p.numel() for p in self.params), device=self.params[0].device,
                                dtype=self.params[0].dtype)
        self.views = list(self.flat.split([p.numel() for p in self.params]))
        self.views = [v.view_as(p) for v, p in zip(self.views, self.params)]
        self._micro_sq = torch.zeros((), device=self.flat.device, dtype=self.flat.dtype)
        self._small: list[torch.Tensor] = []  # per update: mean over micro-batches of |g_i|^2
        self._big: list[torch.Tensor] = []  # per update: |mean of the g_i|^2
        self.spans = SpanTotals(self.flat.device)

    def __call__(self, i: int) -> None:
        with self.spans:
            self._snapshot(i)
        if i == self.k - 1:
            self.spans.end_update()

    def _snapshot(self, i: int) -> None:
        grads = [p.grad for p in self.params]
        if i == 0:  # zero_grad(set_to_none) started the update: the previous sum is zero
            torch._foreach_copy_(self.views, grads)
            self._micro_sq = self.flat.dot(self.flat)
        else:
            torch._foreach_sub_(self.views, grads)  # flat = before - after = -g_i / K
            self._micro_sq = self._micro_sq + self.flat.dot(self.flat)
            torch._foreach_copy_(self.views, grads)
        if i == self.k - 1:  # `.grad` now holds the update's mean gradient
            self._small.append(self._micro_sq * self.k)  # (1/K) sum_i K^2 |g_i/K|^2
            self._big.append(self.flat.dot(self.flat))

    def read(self) -> tuple[np.ndarray, np.ndarray]:
        """(|G_small|^2, |G_big|^2) per update since the last read, as float64 on the host; clears them."""
        if not self._small:
            return np.zeros(0), np.zeros(0)
        both = torch.stack([torch.stack(self._small), torch.stack(self._big)]).double().cpu().numpy()
        self._small, self._big = [], []
        return both[0], both[1]
