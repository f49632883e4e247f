"""What the Part 4 model takes from the tracking store: Part 1's micro-iteration samples, Part 3's updates to a
target loss at each global batch, and the real DDP runs to check it against (read through gradacc.results)."""
from __future__ import annotations

import os
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from gradacc.analysis.commmodel import model as cm


@dataclass
class MicroSamples:
    """Pooled timed micro-iterations (s) of the micro runs of one device and thread count, all K."""

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
    values = series[series["run_id"].isin(chosen["run_id"]) & (series["key"] == "micro_iter_ms")]["value"]
    if chosen.empty or values.empty:
        return None
    step = chosen["opt_step_ms_mean"].dropna().mean()
    return MicroSamples(values.to_numpy() / 1e3, float(step) / 1e3 if pd.notna(step) else 0.0, str(device_name),
                        None if pd.isna(threads) else int(threads), len(chosen))


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


def check_rows(ddp_runs: pd.DataFrame, micro_runs: pd.DataFrame, series: pd.DataFrame, grad_bytes: int,
               latency_us: float | None = None, bandwidth_gb_s: float | None = None) -> list[dict]:
    """Each DDP run, measured against the model's prediction for it: compute from micro runs of the same device
    and thread count (the slowest of N; slowed by N x threads / cores where CPU workers share cores), all-reduce
    on the given link, else on a link whose bandwidth is the run's own measured busbw (calibrated: then only the
    compute, straggler and latency terms are predictions)."""
    rows = []
    for run in ddp_runs.sort_values("workers").itertuples():
        n = int(run.workers)
        samples = micro_samples(micro_runs, series, run.device_name, run.torch_threads)
        matched = samples is not None
        samples = samples or micro_samples(micro_runs, series)
        if samples is None:
            continue
        # CPU workers beyond the cores share them: each runs slower by the oversubscription (this host's cores).
        share = max(1.0, n * (samples.threads or 1) / (os.cpu_count() or 1)) if run.device_type == "cpu" else 1.0
        worst, method = cm.expected_max(samples.seconds * share, n)
        calibrated = bandwidth_gb_s is None
        link = cm.custom_link(latency_us if latency_us is not None else 50.0,
                              bandwidth_gb_s if bandwidth_gb_s is not None else float(run.busbw_gb_s), "intra")
        topo = cm.Topology("this machine", link, None, 10**9)
        comm = cm.allreduce_s(grad_bytes, n, topo)
        rows.append({"run": run.run_name, "workers": n, "threads": samples.threads, "micro_match": matched,
                     "cores_shared": share, "measured_compute_ms": run.compute_ms_mean,
                     "predicted_compute_ms": samples.seconds.mean() * share * 1e3,
                     "measured_allreduce_ms": run.allreduce_ms_mean,
                     "predicted_wait_plus_allreduce_ms": (worst - samples.seconds.mean() * share + comm) * 1e3,
                     "measured_update_s": run.update_time_s_mean,
                     "predicted_update_s": worst + samples.step_s + comm, "straggler_method": method,
                     "link": f"{link.latency_s * 1e6:g} us, {link.bandwidth_gb_s:.3g} GB/s"
                             + (" (busbw of this run: calibrated)" if calibrated else " (given)")})
    return rows
