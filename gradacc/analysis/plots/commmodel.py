"""The Part 4 model's figures: update time, scaling efficiency and time to target vs N, and
predicted against measured DDP runs."""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from gradacc.analysis.plots.style import DPI, plt, wrap

STAR, DOTS = "star: best N", "dots: updates extrapolated beyond the measured batches"


def _save(fig, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=DPI)
    plt.close(fig)
    return path


def _lines(rows: pd.DataFrame, column: str, ylabel: str, title: str, path: Path, scale: float = 1.0,
           logy: bool = True, marks: dict | None = None, dots: bool = False) -> Path:
    """One line per interconnect against N; `marks`: a star at each one's best N; `dots`: dots where the updates
    to target are extrapolated (only time to target uses them). The title names those drawn."""
    # constrained layout: the legend's and the log axes' widths vary with the interconnects and N given
    fig, ax = plt.subplots(figsize=(7.5, 4.6), layout="constrained")
    drawn = set()
    for name, group in rows.groupby("interconnect", sort=False):
        group = group.sort_values("workers")
        line, = ax.plot(group["workers"], group[column] * scale, lw=1.4, label=name,
                        marker="o" if len(group) <= 16 else None, ms=3)  # few N: points, one N: a line of none
        if dots and group["extrapolated"].any():
            extra = group[group["extrapolated"]]
            ax.plot(extra["workers"], extra[column] * scale, ls="none", marker=".", color=line.get_color())
            drawn.add(DOTS)
        if marks and name in marks:
            best = marks[name]
            ax.plot(best["workers"], best[column] * scale, marker="*", ms=12, color=line.get_color())
            drawn.add(STAR)
    ax.set_xscale("log", base=2)
    if len(rows) and rows["workers"].nunique() == 1:  # one N: room around it on the log axis
        n = int(rows["workers"].iloc[0])
        ax.set_xlim(n / 1.5, n * 1.5)
    if logy:
        ax.set_yscale("log")
    ax.set_xlabel("workers N (global batch 64N)")
    ax.set_ylabel(ylabel)
    notes = [note for note in (STAR, DOTS) if note in drawn]
    ax.set_title(wrap(fig, title + (f" ({'; '.join(notes)})" if notes else ""), 10, share=0.9), fontsize=10)
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=7, loc="best")
    return _save(fig, path)


def write_model_plots(rows: pd.DataFrame, best: dict, checks: pd.DataFrame, folder: Path) -> dict[str, Path]:
    out = {
        "update_time_vs_n": _lines(rows, "update_s", "predicted update time (ms)",
                                   "Predicted update time: slowest of N + step + exposed all-reduce",
                                   folder / "update_time_vs_n.png", 1e3),
        "efficiency_vs_n": _lines(rows, "efficiency", "scaling efficiency (speed-up / N)",
                                  "Predicted scaling efficiency", folder / "efficiency_vs_n.png", logy=False),
    }
    if "time_to_target_s" in rows:
        out["time_to_target_vs_n"] = _lines(rows, "time_to_target_s", "predicted time to target loss (s)",
                                            "Time to target loss", folder / "time_to_target_vs_n.png", marks=best,
                                            dots="extrapolated" in rows)
    if len(checks):
        fig, ax = plt.subplots(figsize=(6.4, 4.2), layout="constrained")
        labels = [f"N={n}" + (f"\n{s:g} ms" if s else "") for n, s in zip(checks["workers"], checks["straggle_ms"])]
        x = range(len(checks))
        for shift, key, label in ((-0.2, "measured_update_s", "measured"), (0.2, "predicted_update_s", "predicted")):
            values = [v for v, _ in checks[key]]  # (mean, 95% half-width) per run
            halves = [h if h == h else 0.0 for _, h in checks[key]]
            ax.bar([i + shift for i in x], values, width=0.4, yerr=halves, capsize=3, label=label)
        ax.set_xticks(list(x))
        ax.set_xticklabels(labels)
        ax.set_ylabel("update time (s)")
        ax.set_title("Real DDP runs: predicted vs measured update time (95% intervals; straggler mean)",
                     fontsize=10)
        ax.legend()
        out["ddp_predicted_vs_measured"] = _save(fig, folder / "ddp_predicted_vs_measured.png")
    return out
