"""The ring model's link fitted to an all-reduce benchmark (pure): t(S) = 2(N-1) alpha + 2(N-1)/N S / B at N
ranks is a line a + b S, fitted by weighted least squares over the message sizes, with 95% intervals; and the
all-reduce of a bucketed gradient at another N predicted from it, with its interval."""
from __future__ import annotations

import math
from dataclasses import dataclass
from statistics import NormalDist

import numpy as np

# Student's t, two-sided 95%, for 1..30 degrees of freedom (standard tables); beyond, a Cornish-Fisher expansion.
T95 = (12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160, 2.145, 2.131,
       2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048, 2.045, 2.042)


def t95(dof: int) -> float:
    """The 97.5% quantile of Student's t with `dof` degrees of freedom (1.96 as dof grows)."""
    if dof < 1:
        return math.inf
    if dof <= len(T95):
        return T95[dof - 1]
    z = NormalDist().inv_cdf(0.975)
    return z + (z ** 3 + z) / (4 * dof) + (5 * z ** 5 + 16 * z ** 3 + 3 * z) / (96 * dof ** 2)


@dataclass(frozen=True)
class RingFit:
    """t = a + b S at `workers` ranks: a = 2(N-1) alpha (s), b = 2(N-1)/N / B (s per byte), their standard errors
    and covariance, and the degrees of freedom of the fit."""

    workers: int
    a: float
    b: float
    var_a: float
    var_b: float
    cov_ab: float
    dof: int

    @property
    def steps(self) -> int:
        return 2 * (self.workers - 1)

    @property
    def alpha_s(self) -> float:
        return self.a / self.steps

    @property
    def bandwidth_gb_s(self) -> float:
        return self.steps / self.workers / self.b / 1e9 if self.b > 0 else math.inf

    def alpha_interval_s(self) -> tuple[float, float]:
        half = t95(self.dof) * math.sqrt(self.var_a) / self.steps
        return self.alpha_s - half, self.alpha_s + half

    def bandwidth_interval_gb_s(self) -> tuple[float, float]:
        """B is 1/b up to a constant: the interval of b, inverted (its upper end is infinite if b's reaches 0)."""
        half = t95(self.dof) * math.sqrt(self.var_b)
        low_b, high_b = self.b - half, self.b + half
        scale = self.steps / self.workers / 1e9
        return scale / high_b, (scale / low_b if low_b > 0 else math.inf)

    def metrics(self) -> dict[str, float]:
        """What a benchmark run logs: alpha (us per ring step) and B (GB/s) with 95% intervals, and the line."""
        lo_a, hi_a = self.alpha_interval_s()
        lo_b, hi_b = self.bandwidth_interval_gb_s()
        return {"alpha_us": self.alpha_s * 1e6, "alpha_us_low": lo_a * 1e6, "alpha_us_high": hi_a * 1e6,
                "bandwidth_gb_s": self.bandwidth_gb_s, "bandwidth_gb_s_low": lo_b, "bandwidth_gb_s_high": hi_b,
                "fit_a_us": self.a * 1e6, "fit_b_ns_per_byte": self.b * 1e9, "fit_a_se_us": math.sqrt(self.var_a) * 1e6,
                "fit_b_se_ns_per_byte": math.sqrt(self.var_b) * 1e9,
                "fit_ab_corr": self.cov_ab / math.sqrt(self.var_a * self.var_b) if self.var_a * self.var_b > 0 else 0.0,
                "fit_dof": float(self.dof)}

    @classmethod
    def from_metrics(cls, workers: int, m: dict) -> "RingFit":
        se_a, se_b = m["fit_a_se_us"] / 1e6, m["fit_b_se_ns_per_byte"] / 1e9
        return cls(int(workers), m["fit_a_us"] / 1e6, m["fit_b_ns_per_byte"] / 1e9, se_a ** 2, se_b ** 2,
                   m["fit_ab_corr"] * se_a * se_b, int(m["fit_dof"]))


def fit_ring(sizes_bytes, mean_s, sem_s, workers: int) -> RingFit:
    """Weighted least squares of t = a + b S (weights 1/sem^2, so that the small messages, whose times are tiny,
    still set the intercept); the covariance scaled by the residuals' reduced chi-square where that exceeds 1."""
    if workers < 2:
        raise ValueError("an all-reduce of one rank moves nothing: fit needs 2 or more ranks")
    s = np.asarray(sizes_bytes, dtype=float)
    t = np.asarray(mean_s, dtype=float)
    sem = np.maximum(np.asarray(sem_s, dtype=float), 1e-3 * t)  # a point never weighs more than 0.1% error allows
    if len(s) < 3:
        raise ValueError("fit needs 3 or more message sizes")
    x = np.column_stack([np.ones_like(s), s])
    w = 1.0 / sem ** 2
    xtwx = x.T @ (x * w[:, None])
    cov = np.linalg.inv(xtwx)
    a, b = cov @ (x.T @ (w * t))
    dof = len(s) - 2
    chi2 = float(np.sum(w * (t - a - b * s) ** 2)) / dof
    cov = cov * max(1.0, chi2)
    return RingFit(workers, float(a), float(b), float(cov[0, 0]), float(cov[1, 1]), float(cov[0, 1]), dof)


def predict_allreduce(fit: RingFit, workers: int, size_bytes: float, messages: int = 1) -> tuple[float, float]:
    """(seconds, 95% half-width) of `messages` all-reduces summing to size_bytes among `workers`, on the fitted
    link: 2(N-1) alpha m + 2(N-1)/N S / B, i.e. (N-1)/(Nf-1) [m a + (Nf/N) S b] at a fit made with Nf ranks."""
    if workers <= 1:
        return 0.0, 0.0
    scale = (workers - 1) / (fit.workers - 1)
    ca, cb = scale * messages, scale * fit.workers / workers * size_bytes
    value = ca * fit.a + cb * fit.b
    var = ca ** 2 * fit.var_a + cb ** 2 * fit.var_b + 2 * ca * cb * fit.cov_ab
    return value, t95(fit.dof) * math.sqrt(max(var, 0.0))
