"""The comparison's noise-scale figure: B_simple over training for each K, the effective batches 64..512 marked."""
from __future__ import annotations

from pathlib import Path

import pandas as pd
from matplotlib.ticker import FuncFormatter, NullFormatter

from gradacc.analysis.compare import curves
from gradacc.analysis.plots.style import SIZE_IN, finish, k_colors, plt

EFFECTIVE_BATCHES = (64, 128, 256, 512)  # K = 1, 2, 4, 8


def plot_noise_scale(update_curve: pd.DataFrame, epoch_curve: pd.DataFrame, micro_batch: int,
                     updates_per_epoch: dict[int, int], subtitle: str, path: Path) -> Path | None:
    """B_simple (smoothed, per update) against epochs of training, one line per K, the epoch values as dots and
    the effective batches as horizontal lines: a batch below B_simple is in the regime where a larger batch
    still buys proportionally fewer steps; above it, returns diminish."""
    if update_curve.empty and epoch_curve.empty:
        return None
    fig, ax = plt.subplots(figsize=SIZE_IN)
    ks = sorted(set(update_curve["k"]) | set(epoch_curve["k"]))
    colors = k_colors(ks)
    for k in ks:
        per_epoch = updates_per_epoch.get(k) or 1
        rows = update_curve[update_curve["k"] == k]
        if len(rows):
            ax.plot((rows["step"] + 1) / per_epoch, rows["mean"], color=colors[k], lw=1.2,
                    label=f"K={k} (batch {micro_batch * k})")
        dots = epoch_curve[epoch_curve["k"] == k]
        if len(dots):
            ax.plot(dots["step"], dots["mean"], "o", color=colors[k], ms=5,
                    label=None if len(rows) else f"K={k} (batch {micro_batch * k})")
    values = pd.concat([update_curve["mean"], epoch_curve["mean"]])
    values = values[values > 0]
    for batch in EFFECTIVE_BATCHES:
        ax.axhline(batch, color="gray", ls=":", lw=0.9)
        ax.annotate(f"B={batch}", (0.01, batch), xycoords=("axes fraction", "data"), fontsize=7, color="dimgray",
                    va="bottom")
    if len(values):
        ax.set_ylim(min(values.min(), 64) / 1.5, max(values.max(), 512) * 1.5)
    ax.set_yscale("log")
    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _pos: f"{v:g}"))
    ax.yaxis.set_minor_formatter(NullFormatter())
    ax.set_xlabel("epoch (each update at its share of an epoch; dots: B_simple of the whole epoch)")
    ax.set_ylabel("B_simple = tr(Sigma) / |G|^2 (images, log)")
    ax.legend(loc="lower right", fontsize=8)
    return finish(fig, ax, "Gradient noise scale over training (dotted: effective batches 64..512)", subtitle,
                   path)


def noise_plot(section, series: pd.DataFrame, path: Path) -> Path | None:
    """The figure for one compare section (write_plots calls it); None where no run measured the noise scale."""
    runs = section.runs[section.runs["part"] == "converge"]
    upe = {int(k): int(t) // int(e) for k, t, e in zip(runs["k"], runs["total_updates"], runs["epochs"])
           if pd.notna(t) and pd.notna(e) and e}
    micro = runs["micro_batch"].dropna()
    return plot_noise_scale(curves(series, runs, "noise_scale_simple"),
                            curves(series, runs, "noise_scale_simple_epoch"),
                            int(micro.iloc[0]) if len(micro) else 64, upe, section.label, path)
