"""The comparison's noise-scale figure: B_simple over training for each K, the effective batches 64..512 marked."""
from __future__ import annotations

from pathlib import Path

import pandas as pd
from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter, NullLocator

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
    drawn = set()
    for k in ks:
        per_epoch = updates_per_epoch.get(k) or 1
        label = f"K={k} (batch {micro_batch * k})"
        rows = update_curve[update_curve["k"] == k]
        if len(rows):  # a lone update value as a marker: a line through one point draws nothing
            ax.plot((rows["step"] + 1) / per_epoch, rows["mean"], color=colors[k], lw=1.2, label=label,
                    marker="." if len(rows) < 2 else None)
            drawn.add("lines")
        dots = epoch_curve[epoch_curve["k"] == k]
        if len(dots):
            drawn.add("dots")
            alone = not len(rows)  # then the dots carry the K's legend entry, saying how few they are, and stand out
            only = f": epoch {int(dots['step'].iloc[0])} only" if len(dots) == 1 else ": per epoch only"
            ax.plot(dots["step"], dots["mean"], "o", color=colors[k], ms=7 if alone else 5, mec="black",
                    mew=0.6 if alone else 0, label=label + only if alone else None)
    values = pd.concat([update_curve["mean"], epoch_curve["mean"]])
    values = values[values > 0]
    for batch in EFFECTIVE_BATCHES:
        ax.axhline(batch, color="gray", ls=":", lw=0.9)
    if len(values):
        ax.set_ylim(min(values.min(), 64) / 1.5, max(values.max(), 512) * 1.5)
    ax.set_yscale("log")
    low, high = ax.get_ylim()
    if high / low < 100:  # under two decades one power of ten may be all the labels: add 2x and 5x
        ax.yaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _pos: f"{v:g}"))
    ax.yaxis.set_minor_formatter(NullFormatter())
    # named on the right, outside the data: labels inside the axes ended up under the legend or the lines;
    # made after the log scale, which would otherwise replace their labels when drawn
    batches = ax.secondary_yaxis("right")
    batches.set_yticks(EFFECTIVE_BATCHES, [f"B={b}" for b in EFFECTIVE_BATCHES])
    batches.yaxis.set_minor_locator(NullLocator())
    batches.tick_params(labelsize=7, labelcolor="dimgray", length=0)
    ax.set_xlim(0, ax.get_xlim()[1])  # from the start of training, even where only epoch values are drawn
    ax.set_xlabel("epoch")
    ax.set_ylabel("B_simple = tr(Σ) / |G|² (images, log)")
    notes = {"lines": "lines: each update, at its share of an epoch", "dots": "dots: each whole epoch"}
    ax.legend(loc="best", fontsize=8, title_fontsize=7, title="\n".join(notes[d] for d in notes if d in drawn))
    return finish(fig, ax, "Gradient noise scale over training (dotted: effective batches)", subtitle, path)


def noise_plot(section, series: pd.DataFrame, path: Path) -> Path | None:
    """The figure for one compare section (write_plots calls it); None where no run measured the noise scale."""
    runs = section.runs[section.runs["part"] == "converge"]
    upe = {int(k): int(t) // int(e) for k, t, e in zip(runs["k"], runs["total_updates"], runs["epochs"])
           if pd.notna(t) and pd.notna(e) and e}
    micro = runs["micro_batch"].dropna()
    return plot_noise_scale(curves(series, runs, "noise_scale_simple"),
                            curves(series, runs, "noise_scale_simple_epoch"),
                            int(micro.iloc[0]) if len(micro) else 64, upe, section.label, path)
