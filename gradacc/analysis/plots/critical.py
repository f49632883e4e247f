"""The critical-batch figures (pure: points and fit in, PNGs out): updates to target against the effective batch
(log-log, the perfect-scaling line through the smallest batch and the fitted S = S_min + E_min / B), and the
S-E trade-off with the fitted hyperbola. A point that did not reach the target is drawn hollow with an arrow up:
its S is a lower bound."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from gradacc.analysis.critical import Fit, Point
from gradacc.analysis.plots.style import SIZE_IN, finish, plt

UPDATES_PNG, TRADEOFF_PNG = "critical_updates.png", "critical_tradeoff.png"


def _points(ax, points: list[Point], x_of, y_of, arrow_x: float = 1.0) -> None:
    """Reached points filled; a lower bound hollow, its arrow pointing where its true value lies (up, and right
    by `arrow_x` where x grows with S too)."""
    for reached, style in ((True, dict(color="C0", label="reached")),
                           (False, dict(facecolors="none", edgecolors="C3", label="not reached (lower bound)"))):
        chosen = [p for p in points if p.reached == reached]
        if not chosen:
            continue
        xs, ys = [x_of(p) for p in chosen], [y_of(p) for p in chosen]
        ax.scatter(xs, ys, zorder=3, **style)
        if not reached:
            for x, y in zip(xs, ys):
                ax.annotate("", (x * arrow_x, y * 1.4), (x, y), arrowprops=dict(arrowstyle="->", color="C3"))


def _fit_label(fit: Fit | None) -> str:
    if fit is None:
        return "no fit (the reached points do not determine S_min and E_min)"
    low_high = fit.interval.get("b_crit")
    interval = f" (95% {low_high[0]:.0f}-{low_high[1]:.0f})" if low_high else ""
    return f"fit: S_min {fit.s_min:.0f}, E_min {fit.e_min:.0f}, B_crit {fit.b_crit:.0f}{interval}"


def plot_updates(points: list[Point], fit: Fit | None, title: str, path: Path) -> Path:
    fig, ax = plt.subplots(figsize=SIZE_IN)
    batches = np.array(sorted({p.batch for p in points}), float)
    grid = np.geomspace(batches.min(), batches.max(), 100)
    smallest = [p for p in points if p.reached and p.batch == batches.min()]
    if smallest:  # S falls as 1/B from the smallest batch's mean S
        s0 = float(np.mean([p.updates for p in smallest]))
        ax.plot(grid, s0 * batches.min() / grid, "--", color="grey", label="perfect scaling (S ∝ 1/B)")
    if fit is not None:
        ax.plot(grid, fit.updates_at(grid), color="C1", label="S = S_min + E_min / B")
        ax.axvline(fit.b_crit, color="C1", alpha=0.4, linestyle=":", label="B_crit = E_min / S_min")
    _points(ax, points, lambda p: p.batch, lambda p: p.updates)
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xlabel("effective batch B (images)")
    ax.set_ylabel("updates to target S")
    ax.legend(fontsize=8)
    return finish(fig, ax, title, _fit_label(fit), path)


def plot_tradeoff(points: list[Point], fit: Fit | None, title: str, path: Path) -> Path:
    fig, ax = plt.subplots(figsize=SIZE_IN)
    if fit is not None:
        grid = np.geomspace(fit.b_crit / 64, fit.b_crit * 64, 200)
        ax.plot(fit.updates_at(grid), fit.images_at(grid), color="C1", label="(S/S_min - 1)(E/E_min - 1) = 1")
        ax.axvline(fit.s_min, color="grey", linestyle=":", label="S_min")
        ax.axhline(fit.e_min, color="grey", linestyle="--", label="E_min")
    _points(ax, points, lambda p: p.updates, lambda p: p.updates * p.batch, arrow_x=1.4)  # S and E = B S bounds
    for p in points:
        ax.annotate(f"B={p.batch}", (p.updates, p.updates * p.batch), fontsize=7, xytext=(4, 4),
                    textcoords="offset points")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("updates to target S")
    ax.set_ylabel("images to target E")
    ax.legend(fontsize=8)
    return finish(fig, ax, title, _fit_label(fit), path)
