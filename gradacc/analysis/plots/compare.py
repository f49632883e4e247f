"""The comparison's figures: one PNG per question, one set per setting."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

from gradacc.analysis.compare import Section, curves
from gradacc.analysis.plots.noise import noise_plot
from gradacc.analysis.plots.style import SIZE_IN, finish, k_colors, plt


def _log2_axis(ax, values, label: str) -> None:
    values = sorted({int(v) for v in values})
    ax.set_xscale("log", base=2)
    ax.set_xticks(values)
    ax.set_xticklabels([str(v) for v in values])
    ax.minorticks_off()
    ax.margins(x=0.1)  # room for the labels beside the first and the last point
    if len(values) == 1:  # one point: give the log axis some room
        ax.set_xlim(values[0] / 1.5, values[0] * 1.5)
    ax.set_xlabel(label)


def _errors(table: pd.DataFrame, metric: str, part: str):
    """The 95% t interval of the mean over runs as error bars where a K has several runs, else none."""
    ci = table[f"{metric}_ci"].where(table[f"{part}_n"] > 1)
    return None if ci.isna().all() else ci.fillna(0.0).to_numpy()


def _bar_ends(rows: pd.DataFrame, metric: str, part: str) -> tuple[float, float]:
    """The lowest and the highest value a point's bar reaches (the means where no K has bars): the y-limits
    must hold the 95% intervals, which with few seeds reach much further than the means."""
    bars = _errors(rows, metric, part)
    half = 0.0 if bars is None else bars
    return float((rows[metric] - half).min()), float((rows[metric] + half).max())


def _rows_with(table: pd.DataFrame, metric: str) -> pd.DataFrame:
    return table[table[metric].notna()]


def _runs_note(ax, xs, ys, ns, names=None) -> str:
    """How many runs each point averages: in the legend when every K has the same count, else at the points:
    after the point's name where it has one ('K=2, n=3' above it), else above it on the side the line leaves
    free (left where it rises, right where it falls; the plots leave room above)."""
    ns, ys = [int(n) for n in ns], list(ys)
    even = len(set(ns)) == 1
    side = -1 if ys[-1] >= ys[0] else 1
    for i, (x, y, n) in enumerate(zip(xs, ys, ns)):
        text = ", ".join(([names[i]] if names else []) + ([] if even else [f"n={n}"]))
        if text:
            ax.annotate(text, (x, y), textcoords="offset points", xytext=(0, 8) if names else (5 * side, 5),
                        ha="center" if names else ("right" if side < 0 else "left"), va="bottom", fontsize=8,
                        color="black" if names else "dimgray")
    if even:
        return f", {ns[0]} runs per K, bars: 95% CI" if ns[0] > 1 else ""
    return ", bars: 95% CI"


def _points_with_bars(table: pd.DataFrame, x: str, metric: str, part: str, label: str, color: str | None = None,
                      named: bool = False):
    """A figure with the metric's mean per `x` as points, 95% interval bars and the run counts (`named`: each point
    labelled with its K); (fig, ax, rows), or None where no K has the metric."""
    rows = _rows_with(table, metric)
    if rows.empty:
        return None
    fig, ax = plt.subplots(figsize=SIZE_IN)
    names = [f"K={int(k)}" for k in rows["k"]] if named else None
    note = _runs_note(ax, rows[x], rows[metric], rows[f"{part}_n"], names)
    ax.errorbar(rows[x], rows[metric], yerr=_errors(rows, metric, part), marker="o", capsize=4, color=color,
                label=label + note)
    return fig, ax, rows


def plot_micro_time(table: pd.DataFrame, subtitle: str, path: Path) -> Path | None:
    drawn = _points_with_bars(table, "k", "micro_iter_ms_mean", "micro", "mean of the timed micro-iterations")
    if drawn is None:
        return None
    fig, ax, rows = drawn
    mean = rows["micro_iter_ms_mean"].mean()
    ax.axhline(mean, color="gray", ls=":", lw=1, label=f"mean over K: {mean:.3g} ms")
    ax.set_ylim(0, _bar_ends(rows, "micro_iter_ms_mean", "micro")[1] * 1.25)
    _log2_axis(ax, rows["k"], "accumulation factor K (log2)")
    ax.set_ylabel("forward + backward of one micro-batch (ms)")
    ax.legend(loc="lower right")
    return finish(fig, ax, "Part 1: micro-iteration time vs K", subtitle, path)


def plot_throughput(table: pd.DataFrame, subtitle: str, path: Path) -> Path | None:
    drawn = _points_with_bars(table, "effective_batch", "throughput_img_s", "update", "measured: 64 K / update time",
                              "tab:green", named=True)
    if drawn is None:
        return None
    fig, ax, rows = drawn
    ax.set_ylim(0, _bar_ends(rows, "throughput_img_s", "update")[1] * 1.25)
    _log2_axis(ax, rows["effective_batch"], "effective batch 64 K (images, log2)")
    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _pos: f"{v:,.0f}"))
    ax.set_ylabel("throughput (images/s)")
    ax.legend(loc="lower right")
    return finish(fig, ax, "Part 2: throughput vs effective batch", subtitle, path)


def window_label(table: pd.DataFrame) -> str:
    """What the measured update time averages: the middle 60% of the U updates, or all of them where U < 5 leaves
    nothing to trim (core/timing.middle_window drops U//5 at each end)."""
    updates = table.loc[table["update_time_s_mean"].notna(), "total_updates"].dropna().astype(int)
    untrimmed = sorted({u for u in updates if u // 5 == 0})
    if untrimmed and len(untrimmed) == updates.nunique():
        return f"measured update, all U={', '.join(map(str, untrimmed))} (too few to trim)"
    return "measured update, middle 60%" + (" (all updates where U < 5)" if untrimmed else "")


def plot_update_time(table: pd.DataFrame, subtitle: str, path: Path) -> Path | None:
    drawn = _points_with_bars(table, "k", "update_time_s_mean", "update", window_label(table), "tab:blue")
    if drawn is None:
        return None
    fig, ax, _rows = drawn
    model = table[table["model_update_time_s"].notna()]
    if not model.empty:
        ax.plot(model["k"], model["model_update_time_s"], ls="--", marker="s", color="tab:orange",
                label="K x micro-iteration + optimizer step (Part 1)")
    else:
        ax.text(0.98, 0.03, "no micro runs: no 'K x micro + step' line", transform=ax.transAxes, ha="right",
                fontsize=8, color="dimgray")
    gaps = table[table["model_gap_pct"].notna()]
    # each gap below right of its point, clear of the rising lines; the margins keep it off the tick labels
    for k, y, gap in zip(gaps["k"], gaps["update_time_s_mean"], gaps["model_gap_pct"]):
        ax.annotate(f"{gap:+.0f}%", (k, y), textcoords="offset points", xytext=(5, -4), ha="left", va="top",
                    fontsize=8, color="dimgray")
    ax.set_yscale("log")
    ax.margins(y=0.15)
    low, high = ax.get_ylim()
    if high / low < 3:  # one K, or K close in time: a span of 3x, so the legend clears the points and bars
        ax.set_ylim(np.sqrt(low * high) / np.sqrt(3), np.sqrt(low * high) * np.sqrt(3))
    ax.yaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _pos: f"{v:g}"))
    ax.yaxis.set_minor_formatter(NullFormatter())
    _log2_axis(ax, table["k"], "accumulation factor K (log2)")
    ax.set_ylabel("time per update (s, log)")
    ax.legend(loc="best")  # upper left mostly; elsewhere where one K's bars rise into that corner
    return finish(fig, ax, "Part 2: update time vs K", subtitle, path)


def plot_accuracy(table: pd.DataFrame, subtitle: str, path: Path) -> Path | None:
    drawn = _points_with_bars(table, "k", "test_accuracy", "converge", "after the last epoch", "tab:purple")
    if drawn is None:
        return None
    fig, ax, rows = drawn
    low, high = _bar_ends(rows, "test_accuracy", "converge")
    pad = max(2.0, (high - low) * 0.3)
    ax.set_ylim(max(0.0, low - pad), min(100.0, high + pad))
    _log2_axis(ax, rows["k"], "accumulation factor K (log2)")
    ax.set_ylabel("test accuracy (%)")
    ax.legend(loc="best")  # where the points and their bars leave room
    return finish(fig, ax, "Part 3: test accuracy vs K", subtitle, path)


SMOOTH_SHARE = 40  # loss_vs_updates: a running mean over 1/40 of each K's updates


def _per_k_lines(ax, curve: pd.DataFrame, smooth: bool = False) -> list[int]:
    """One line per K (mean over its runs; a std band where several); `smooth`: a centred running mean over
    1/40 of each K's steps in bold over the raw values in faint, for the K with enough steps (80) to smooth.
    Returns the K drawn smoothed."""
    colors = k_colors(curve["k"].unique())
    smoothed = []
    for k, rows in curve.groupby("k"):
        steps, mean = rows["step"].to_numpy(), rows["mean"].to_numpy()
        n = int(rows["n"].max())
        label = f"K={k}" + (f" (mean of {n} runs)" if n > 1 else "")
        window = max(1, len(mean) // SMOOTH_SHARE)
        if smooth and window > 1:
            smoothed.append(int(k))
            ax.plot(steps, mean, color=colors[k], lw=0.6, alpha=0.3)
            ax.plot(steps, pd.Series(mean).rolling(window, center=True, min_periods=1).mean(), color=colors[k],
                    lw=1.6, label=label)
        else:
            ax.plot(steps, mean, color=colors[k], marker="o" if len(steps) <= 20 else None, lw=1.6, label=label)
        sd = rows["sd"].to_numpy()
        if n > 1 and not smooth and np.isfinite(sd).any():
            ax.fill_between(steps, mean - np.nan_to_num(sd), mean + np.nan_to_num(sd), color=colors[k], alpha=0.15)
    return smoothed


def plot_loss_vs_epoch(curve: pd.DataFrame, subtitle: str, path: Path) -> Path | None:
    if curve.empty:
        return None
    fig, ax = plt.subplots(figsize=SIZE_IN)
    _per_k_lines(ax, curve)
    ax.set_xticks(sorted(curve["step"].unique()))
    ax.set_xlabel("epoch")
    ax.set_ylabel("mean micro-batch training loss")
    ax.legend(loc="best", fontsize=8)
    return finish(fig, ax, "Part 3: training loss vs epoch (same images for every K)", subtitle, path)


def plot_loss_vs_updates(curve: pd.DataFrame, subtitle: str, path: Path) -> Path | None:
    if curve.empty:
        return None
    fig, ax = plt.subplots(figsize=SIZE_IN)
    smoothed = _per_k_lines(ax, curve, smooth=True)
    ax.set_xlabel("optimizer update")
    ax.set_ylabel("mean micro-batch training loss")
    raw = sorted(set(int(k) for k in curve["k"]) - set(smoothed))
    note = None  # only what is drawn: short runs have too few updates to smooth, and show each update alone
    if smoothed:
        note = f"faint: each update; bold: running mean\nover 1/{SMOOTH_SHARE} of the K's updates"
        if raw:
            note += f"\n(K={', '.join(map(str, raw))}: each update, too few to smooth)"
    ax.legend(loc="best", fontsize=8, title_fontsize=7, title=note)
    return finish(fig, ax, "Part 3: training loss vs optimizer updates", subtitle, path)


def write_plots(section: Section, series: pd.DataFrame, folder: Path) -> dict[str, Path]:
    """Every plot the section's data allows, as folder/<name>.png; {name: path} of those written."""
    table, subtitle = section.table, section.label
    epoch_curve = curves(series, section.runs, "train_loss")
    update_curve = curves(series, section.runs, "train_loss_update")
    made = {
        "micro_time_vs_k": plot_micro_time(table, subtitle, folder / "micro_time_vs_k.png"),
        "throughput_vs_batch": plot_throughput(table, subtitle, folder / "throughput_vs_batch.png"),
        "update_time_vs_k": plot_update_time(table, subtitle, folder / "update_time_vs_k.png"),
        "loss_vs_epoch": plot_loss_vs_epoch(epoch_curve, subtitle, folder / "loss_vs_epoch.png"),
        "accuracy_vs_k": plot_accuracy(table, subtitle, folder / "accuracy_vs_k.png"),
        "loss_vs_updates": plot_loss_vs_updates(update_curve, subtitle, folder / "loss_vs_updates.png"),
    }
    made["noise_scale_vs_epoch"] = noise_plot(section, series, folder / "noise_scale_vs_epoch.png")
    return {name: path for name, path in made.items() if path is not None}
