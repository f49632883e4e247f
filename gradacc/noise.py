"""The gradient noise scale (McCandlish et al. 2018, "An Empirical Model of Large-Batch Training", appendix A):
per-micro-batch gradients snapshotted from `.grad` during an update, the unbiased small/large-batch
estimators of |G|^2 and tr(Sigma), and B_simple = tr(Sigma) / |G|^2 smoothed over updates.

The gradients are those of the cross-entropy alone: SGD adds the weight decay inside `step()`, never into
`.grad`, so the decay term is not part of G or Sigma."""
from __future__ import annotations

import numpy as np
import torch

EMA_DECAY = 0.95  # per update, numerator and denominator separately (the paper's smoothing); ~20-update window
UNAVAILABLE_K1 = "unavailable: K=1 has one gradient per update, and the estimator needs at least two"
SERIES_KEYS = ("noise_scale_simple", "noise_scale_simple_epoch", "grad_norm_sq_est", "grad_trace_sigma_est")


def measures(mode: str, k: int) -> bool:
    """Whether a converge run of this mode and K measures the noise scale (auto: for every K >= 2)."""
    return mode == "on" or (mode == "auto" and k >= 2)


def status(mode: str, k: int) -> str:
    """The run's `gradacc.noise_scale` tag: measured, off, or why it is unavailable."""
    if measures(mode, k):
        return "measured"
    return "off" if mode == "off" else UNAVAILABLE_K1


class GradientSnapshots:
    """`after_backward` hook of run_update: the squared norm of each micro-batch's gradient and of the mean.

    backward(loss / K) adds g_i / K into `.grad`, so micro-batch i's gradient is K * (.grad after - .grad
    before). One flat copy of the previous `.grad` stays on the device; the squared norms are summed there and
    read to the host only by `read()` (once per epoch), so no micro-step waits on the host."""

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

    def __call__(self, i: int) -> None:
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


def unbiased(small_sq, big_sq, b_small: int, b_big: int) -> tuple[np.ndarray, np.ndarray]:
    """Appendix A's unbiased estimates per update: (|G|^2, tr(Sigma)) from |G_small|^2 and |G_big|^2.

    E|G_B|^2 = |G|^2 + tr(Sigma) / B for a batch of B examples; two batch sizes give two equations."""
    small_sq, big_sq = np.asarray(small_sq, float), np.asarray(big_sq, float)
    g2 = (b_big * big_sq - b_small * small_sq) / (b_big - b_small)
    trace = (small_sq - big_sq) / (1.0 / b_small - 1.0 / b_big)
    return g2, trace


def ema(values, decay: float = EMA_DECAY) -> np.ndarray:
    """Exponential moving average with Adam's bias correction (the first values are not pulled to zero)."""
    out, avg = np.empty(len(values)), 0.0
    for n, value in enumerate(values, start=1):
        avg = decay * avg + (1 - decay) * value
        out[n - 1] = avg / (1 - decay ** n)
    return out


def b_simple_series(g2, trace, decay: float = EMA_DECAY) -> np.ndarray:
    """B_simple per update: EMA(tr Sigma) / EMA(|G|^2); NaN where the smoothed |G|^2 is not positive."""
    num, den = ema(trace, decay), ema(g2, decay)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(den > 0, num / den, np.nan)


def b_simple_of(g2, trace) -> float:
    """One B_simple over a span of updates (an epoch): the ratio of the means; NaN if the mean |G|^2 <= 0."""
    den = float(np.mean(g2)) if len(g2) else float("nan")
    return float(np.mean(trace)) / den if den > 0 else float("nan")


def finite_series(values, first_step: int = 0) -> tuple[list[int], list[float]]:
    """(steps, values) without the NaN points (MLflow series of plain numbers)."""
    pairs = [(first_step + i, float(v)) for i, v in enumerate(values) if np.isfinite(v)]
    return [s for s, _ in pairs], [v for _, v in pairs]


class NoiseRecord:
    """What a converge run gathers: the per-update estimates, epoch by epoch, and the result's series."""

    def __init__(self, micro_batch: int, k: int):
        self.b_small, self.b_big = micro_batch, micro_batch * k
        self.g2: list[float] = []
        self.trace: list[float] = []
        self.epoch_values: list[float] = []

    def add_epoch(self, small_sq: np.ndarray, big_sq: np.ndarray) -> float:
        g2, trace = unbiased(small_sq, big_sq, self.b_small, self.b_big)
        self.g2 += g2.tolist()
        self.trace += trace.tolist()
        self.epoch_values.append(b_simple_of(g2, trace))
        return self.epoch_values[-1]

    def series(self) -> dict[str, tuple[list[int], list[float]]]:
        return {"noise_scale_simple": finite_series(b_simple_series(self.g2, self.trace)),
                "noise_scale_simple_epoch": finite_series(self.epoch_values, first_step=1),
                "grad_norm_sq_est": finite_series(self.g2),
                "grad_trace_sigma_est": finite_series(self.trace)}

    def summaries(self) -> dict[str, float]:
        last = self.epoch_values[-1] if self.epoch_values else float("nan")
        return {"noise_scale_simple_final": last} if np.isfinite(last) else {}
