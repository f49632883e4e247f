"""One PNG per run of its own series (pure: series in, file out)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib.ticker import MaxNLocator

from gradacc.analysis.plots.style import DPI, fit_column, plt, wrap

LABELS = {
    "micro_iter_ms": ("timed micro-iteration", "forward + backward (ms)"),
    "opt_step_ms": ("optimizer step", "optimizer step (ms)"),
    "update_time_s": ("update", "update time (s)"),
    "train_loss": ("epoch", "mean micro-batch loss"),
    "train_loss_update": ("update", "mean micro-batch loss"),
    "test_accuracy_epoch": ("epoch", "test accuracy (%)"),
    "compute_ms": ("update", "forward + backward without all-reduce (ms)"),
    "allreduce_ms": ("update", "gradient all-reduce (ms)"),
    "noise_scale_simple": ("update", "B_simple (images)"),
    "noise_scale_simple_epoch": ("epoch", "B_simple of the epoch (images)"),
    "grad_norm_sq_est": ("update", "|G|² estimate"),
    "grad_trace_sigma_est": ("update", "tr(Σ) estimate"),
    "noise_snapshot_s": ("update", "snapshot work (s), taken out"),
}


def plot_run(title: str, series: dict[str, tuple[list[int], list[float]]], path: Path,
             window: tuple[int, int] | None = None) -> Path:
    """A column of panels, one per series of two or more points; `window` shades the steps that a summary averages
    over. A one-point series (an epoch series of a one-epoch run) is a number, not a curve: it is among the run's
    metrics, and its panel cost a quarter of a short run's figure. Where no series has two points, each is drawn."""
    names = [n for n in series if len(series[n][0]) >= 2] or [n for n in series if series[n][0]]
    fig, axes = plt.subplots(len(names) or 1, 1, figsize=(7, 2.6 * max(len(names), 1)), squeeze=False, dpi=DPI)
    for ax, name in zip(axes[:, 0], names):
        steps, values = series[name]
        xlabel, ylabel = LABELS.get(name, ("step", name))
        ax.plot(steps, values, marker="o" if len(steps) <= 20 else None, lw=1)
        if name in ("micro_iter_ms", "opt_step_ms", "update_time_s"):
            lo, hi = window if window and name == "update_time_s" else (0, len(values))
            mean = float(np.mean(values[lo:hi]))
            if (lo, hi) != (0, len(values)):
                ax.axvspan(lo, hi - 1, color="tab:green", alpha=0.15, label="middle 60%")
            ax.axhline(mean, color="tab:red", lw=1, ls="--", label=f"mean {mean:.4g}")
            # above the panel, right of its title: inside, it covered the last points (where a run ends)
            ax.legend(loc="lower right", bbox_to_anchor=(1, 1), ncols=2, frameon=False, fontsize=8, borderaxespad=0.2)
        # five ticks a side: each tick is a text to lay out twice (margins, then the save), the figure's main cost
        ax.xaxis.set_major_locator(MaxNLocator(nbins=5, integer=True))
        ax.yaxis.set_major_locator(MaxNLocator(nbins=5))
        if max(steps) - min(steps) < 2:  # a step or two: room for whole-number ticks around them
            ax.set_xlim(min(steps) - 1, max(steps) + 1)
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
        ax.set_title(name)
        ax.grid(alpha=0.3)
    heading = fig.suptitle(wrap(fig, title, 12, share=0.95), fontsize=12)
    fit_column(fig, axes[:, 0], heading)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=DPI, pil_kwargs={"compress_level": 3})
    plt.close(fig)
    return path

