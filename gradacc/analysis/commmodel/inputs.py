"""What the Part 4 model takes from the tracking store: Part 1's micro-iteration samples and Part 3's updates to a
target loss at each global batch (read through gradacc.results); the check against real DDP runs is check.py."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from gradacc.analysis.commmodel import model as cm


@dataclass
class MicroSamples:
    """Timed micro-iterations (s) of the micro runs of one device and thread count, all K, each run's samples
    centred on the runs' common mean: drift between runs made minutes apart is not jitter between workers."""

    seconds: np.ndarray
    step_s: float
    device_name: str
    threads: int | None
    runs: int


def micro_samples(micro_runs: pd.DataFrame, series: pd.DataFrame, device_name: str | None = None,
                  threads: int | None = None) -> MicroSamples | None:
    """The samples of the micro runs on device_name with `threads` (None: the newest micro run's)."""
    if micro_runs.empty:
        return None
    runs = micro_runs.sort_values("start_time", ascending=False)
    newest = runs.iloc[0]
    device_name = device_name if device_name is not None else newest["device_name"]
    threads = threads if threads is not None else newest["torch_threads"]
    chosen = runs[(runs["device_name"] == device_name) & (runs["torch_threads"] == threads)]
    values = series[series["run_id"].isin(chosen["run_id"]) & (series["key"] == "micro_iter_ms")]
    if chosen.empty or values.empty:
        return None
    seconds = values["value"].to_numpy() / 1e3
    run_means = values.groupby("run_id")["value"].transform("mean").to_numpy() / 1e3
    step = chosen["opt_step_ms_mean"].dropna().mean()
    return MicroSamples(seconds - run_means + seconds.mean(), float(step) / 1e3 if pd.notna(step) else 0.0,
                        str(device_name), None if pd.isna(threads) else int(threads), len(chosen))


@dataclass
class Convergence:
    target_loss: float
    measured: dict[int, int]  # global batch / 64 (= N) -> updates to reach the target
    missed: list[int] = field(default_factory=list)  # K whose runs never reached it


def convergence(converge_runs: pd.DataFrame, series: pd.DataFrame,
                target: float | None = None) -> Convergence | None:
    """Updates to the target training loss per K (newest converge run per K; trailing mean over an epoch).
    Default target: the highest final epoch loss among them, which every measured K reaches."""
    if converge_runs.empty:
        return None
    runs = converge_runs.sort_values("start_time", ascending=False).drop_duplicates("k")
    losses = {}
    for row in runs.itertuples():
        values = series[(series["run_id"] == row.run_id) & (series["key"] == "train_loss_update")]
        if len(values):
            losses[int(row.k)] = (values.sort_values("step")["value"].to_numpy(), int(row.updates_per_epoch))
    if not losses:
        return None
    if target is None:
        target = max(float(cm.trailing_mean(v, w)[-1]) for v, w in losses.values())
    measured, missed = {}, []
    for k, (values, window) in sorted(losses.items()):
        updates = cm.updates_to_target(values, target, window)
        if updates is None:
            missed.append(k)
        else:
            measured[k] = updates
    return Convergence(target, measured, missed) if measured else None
