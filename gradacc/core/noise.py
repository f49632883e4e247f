"""The gradient noise scale (McCandlish et al. 2018, "An Empirical Model of Large-Batch Training", appendix A):
the unbiased small/large-batch estimators of |G|^2 and tr(Sigma), and B_simple = tr(Sigma) / |G|^2 smoothed over
updates (numpy only; the per-micro-batch gradients come from core/snapshots.py).

The gradients are those of the cross-entropy alone: SGD adds the weight decay inside `step()`, never into
`.grad`, so the decay term is not part of G or Sigma."""
from __future__ import annotations

import numpy as np

from gradacc.names import NOISE_UNAVAILABLE_K1

EMA_DECAY = 0.95  # per update, numerator and denominator separately (the paper's smoothing); ~20-update window
SERIES_KEYS = ("noise_scale_simple", "noise_scale_simple_epoch", "grad_norm_sq_est", "grad_trace_sigma_est")


def measures(mode: str, k: int) -> bool:
    """Whether a converge run of this mode and K measures the noise scale (auto: for every K >= 2)."""
    return mode == "on" or (mode == "auto" and k >= 2)


def status(mode: str, k: int) -> str:
    """The run's `gradacc.noise_scale` tag: measured, off, or why it is unavailable."""
    if measures(mode, k):
        return "measured"
    return "off" if mode == "off" else NOISE_UNAVAILABLE_K1


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
