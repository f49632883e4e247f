"""Per-micro-batch gradient norms read from `.grad` during an update: what the noise scale's estimators
(core/noise.py) take. The gradients are those of the cross-entropy alone: SGD adds the weight decay inside
`step()`, never into `.grad`."""
from __future__ import annotations

import numpy as np
import torch

from gradacc.core.timing import SpanTotals


def squared_norm(tensors: list[torch.Tensor]) -> torch.Tensor:
    """|x|^2 of the tensors taken as one vector, on their device (one read of each)."""
    return torch.stack(torch._foreach_norm(tensors)).square().sum()


class GradientSnapshots:
    """`after_backward` hook of run_update: the squared norm of each micro-batch's gradient and of the mean.

    Instead of letting autograd add each micro-batch's gradient into `.grad`, the hook takes the sum over: after
    micro-step i's backward `.grad` holds g_i / K alone (the hook set it to None after the previous step, so
    autograd wrote it fresh), the hook reads its norm, adds it into its own sum tensors and sets `.grad` to None
    again; after the last micro-step `.grad` is the sum, the same tensors with the same additions in the same
    order as autograd's (`grad += new`), so the step is bitwise the one without the hook. Only the norms and the
    bookkeeping are snapshot work, timed in `spans` and subtracted from the update's timed whole by Part 3; the
    additions are the update's own accumulation, moved here, and stay in its time. The squared norms stay on the
    device until `read()` (once per epoch), so no micro-step waits on the host."""

    def __init__(self, model: torch.nn.Module, k: int):
        self.params = [p for p in model.parameters() if p.requires_grad]
        self.k = k
        self._sums: list[torch.Tensor] = []
        self._micro_sq = torch.zeros(())
        self._small: list[torch.Tensor] = []  # per update: mean over micro-batches of |g_i|^2
        self._big: list[torch.Tensor] = []  # per update: |mean of the g_i|^2
        self.spans = SpanTotals(self.params[0].device)

    def __call__(self, i: int) -> None:
        grads = [p.grad for p in self.params]  # g_i / K
        if i == 0:
            self._sums = grads  # zero_grad(set_to_none) started the update: the sum so far is g_0 / K itself
        else:
            torch._foreach_add_(self._sums, grads)  # what autograd would have done inside backward
        last = i == self.k - 1
        with self.spans:
            micro_sq = squared_norm(grads)
            self._micro_sq = micro_sq if i == 0 else self._micro_sq + micro_sq
            for p, total in zip(self.params, self._sums):
                p.grad = total if last else None
            if last:  # `.grad` now holds the update's mean gradient
                self._small.append(self._micro_sq * self.k)  # (1/K) sum_i K^2 |g_i/K|^2
                self._big.append(squared_norm(self._sums))
                self._sums = []
        if last:
            self.spans.end_update()

    def read(self) -> tuple[np.ndarray, np.ndarray]:
        """(|G_small|^2, |G_big|^2) per update since the last read, as float64 on the host; clears them."""
        if not self._small:
            return np.zeros(0), np.zeros(0)
        both = torch.stack([torch.stack(self._small), torch.stack(self._big)]).double().cpu().numpy()
        self._small, self._big = [], []
        return both[0], both[1]
