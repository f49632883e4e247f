"""The Part 4 model's figures: update time, scaling efficiency and time to target vs N, and
predicted against measured DDP runs."""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from gradacc.analysis.plots.style import DPI, plt


def _lines(rows: pd.DataFrame, column: str, ylabel: str, title: str, path: Path, scale: float = 1.0,
           logy: bool = True, marks: dict | None = None) -> Path:
    fig, ax = plt.subplots(figsize=(7.5, 4.6))
    for name, group in rows.groupby("interconnect", sort=False):
        group = group.sort_values("workers")
        line, = ax.plot(group["workers"], group[column] * scale, lw=1.4, label=name)
        if "extrapolated" in group and group["extrapolated"].any():  # dashed where updates are extrapolated
            extra = group[group["extrapolated"]]
            ax.plot(extra["workers"], extra[column] * scale, ls="none", marker=".", color=line.get_color())
        if marks and name in marks:
            best = marks[name]
            ax.plot(best["workers"], best[column] * scale, marker="*", ms=12, color=line.get_color())
    ax.set_xscale("log", base=2)
    if logy:
        ax.set_yscale("log")
    ax.set_xlabel("workers N (global batch 64N)")
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=7, loc="best")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=DPI)
    plt.close(fig)
    return path


def write_model_plots(rows: pd.DataFrame, best: dict, checks: pd.DataFrame, folder: Path) -> dict[str, Path]:
    out = {
        "update_time_vs_n": _lines(rows, "update_s", "predicted update time (ms)",
                                   "Predicted update time: slowest of N + step + exposed all-reduce",
                                   folder / "update_time_vs_n.png", 1e3),
        "efficiency_vs_n": _lines(rows, "efficiency", "scaling efficiency (speed-up / N)",
                                  "Predicted scaling efficiency", folder / "efficiency_vs_n.png", logy=False),
    }
    if "time_to_target_s" in rows:
        out["time_to_target_vs_n"] = _lines(
            rows, "time_to_target_s", "predicted time to target loss (s)",
            "Time to target loss (star: best N; dots: updates extrapolated beyond the measured batches)",
            folder / "time_to_target_vs_n.png", marks=best)
    if len(checks):
        fig, ax = plt.subplots(figsize=(6.4, 4.2))
        labels = [f"N={n}" for n in checks["workers"]]
        x = range(len(checks))
        ax.bar([i - 0.2 for i in x], checks["measured_update_s"], width=0.4, label="measured")
        ax.bar([i + 0.2 for i in x], checks["predicted_update_s"], width=0.4, label="predicted")
        ax.set_xticks(list(x))
        ax.set_xticklabels(labels)
        ax.set_ylabel("update time (s)")
        ax.set_title("Real DDP runs: predicted vs measured update time", fontsize=10)
        ax.legend()
        fig.tight_layout()
        path = folder / "ddp_predicted_vs_measured.png"
        fig.savefig(path, dpi=DPI)
        plt.close(fig)
        out["ddp_predicted_vs_measured"] = path
    return out
