"""The model against real DDP runs, each term predicted from something other than the run's own update time:
compute and step from micro runs of the same device and threads (times the cores' sharing), the wait for the
slowest rank from the run's per-rank compute samples (the expected slowest of N, one draw per rank), the
collective from an all-reduce benchmark's fitted link. Measured and predicted, each with a 95% interval."""
from __future__ import annotations

import math

import numpy as np
import pandas as pd

from gradacc.analysis.commmodel.fit import RingFit, predict_allreduce
from gradacc.analysis.commmodel.inputs import micro_samples

DDP_CHECK_KEYS = ("update_time_s", "opt_step_ms", "rank_compute_ms", "rank_allreduce_ms", "collective_ms")
BOOTSTRAP_REPS = 200  # resamples of updates for the wait term's interval
Z95 = 1.96
WITHIN = 0.15  # the bar: predicted within 15% of measured


def expected_max_of_ranks(per_rank) -> float:
    """E[max over ranks of one draw from each rank's own samples] (independent ranks), exactly: the max's CDF is
    the product of the ranks' empirical CDFs. With N identical ranks it is the bootstrap E[max of N]."""
    columns = [np.sort(np.asarray(x, dtype=float)) for x in per_rank]
    grid = np.unique(np.concatenate(columns))
    cdf = np.ones(len(grid))
    for x in columns:
        cdf *= np.searchsorted(x, grid, side="right") / len(x)
    return float(np.sum(grid * np.diff(np.concatenate([[0.0], cdf]))))


def wait_term(compute: np.ndarray) -> float:
    """The wait rank 0 pays per update, predicted: E[slowest of the N ranks] - rank 0's mean; (updates, N) in."""
    return expected_max_of_ranks(compute.T) - float(compute[:, 0].mean())


def wait_interval(compute: np.ndarray, reps: int = BOOTSTRAP_REPS, seed: int = 0) -> float:
    """95% half-width of wait_term, by resampling whole updates (seeded: the same table every time)."""
    if len(compute) < 2:
        return math.nan
    rng = np.random.default_rng(seed)
    values = [wait_term(compute[rng.integers(0, len(compute), len(compute))]) for _ in range(reps)]
    low, high = np.percentile(values, [2.5, 97.5])
    return float(high - low) / 2


def mean_interval(values) -> tuple[float, float]:
    """(mean, 95% half-width) under the normal approximation."""
    values = np.asarray(values, dtype=float)
    if len(values) < 2:
        return (float(values.mean()) if len(values) else math.nan), math.nan
    return float(values.mean()), Z95 * float(values.std(ddof=1)) / math.sqrt(len(values))


def middle(values: np.ndarray) -> np.ndarray:
    """The middle 60% of updates (rows), as the runs' own *_mean summaries take them."""
    n = len(values)
    return values[n // 5: n - n // 5]


def own_series(series: pd.DataFrame, run_id: str, key: str) -> np.ndarray:
    return series[(series["run_id"] == run_id) & (series["key"] == key)].sort_values("step")["value"].to_numpy()


def per_rank(series: pd.DataFrame, run_id: str, key: str, workers: int) -> np.ndarray | None:
    """A rank_* series (step = update * N + rank) as (updates, N); None if the run did not log it."""
    values = own_series(series, run_id, key)
    if len(values) < workers or len(values) % workers:
        return None
    return values.reshape(-1, workers) / 1e3


def benchmark_link(bench_runs: pd.DataFrame | None, device_name, workers: int) -> tuple[RingFit, str] | None:
    """The newest all-reduce benchmark on this device with the same ranks, else with any (the ring model carries
    alpha and B to another N); with where it came from."""
    if bench_runs is None or bench_runs.empty or "fit_a_us" not in bench_runs:
        return None
    same = bench_runs[(bench_runs["device_name"] == device_name) & bench_runs["fit_a_us"].notna()]
    if same.empty:
        return None
    exact = same[same["workers"] == workers]
    row = (exact if len(exact) else same).sort_values("start_time").iloc[-1]
    fit = RingFit.from_metrics(int(row["workers"]), row.to_dict())
    return fit, f"{row['run_name']}: alpha {fit.alpha_s * 1e6:.3g} us, B {fit.bandwidth_gb_s:.3g} GB/s"


def given_link(workers: int, latency_us: float, bandwidth_gb_s: float) -> tuple[RingFit, str]:
    """A link as given (no interval): a = 2(N-1) alpha, b = 2(N-1)/N / B."""
    steps = 2 * (workers - 1)
    fit = RingFit(max(workers, 2), steps * latency_us * 1e-6, steps / max(workers, 2) / (bandwidth_gb_s * 1e9),
                  0.0, 0.0, 0.0, 10**6)
    return fit, f"given: {latency_us:g} us, {bandwidth_gb_s:g} GB/s"


def check_rows(ddp_runs: pd.DataFrame, micro_runs: pd.DataFrame, series: pd.DataFrame, bench_runs=None,
               latency_us: float | None = None, bandwidth_gb_s: float | None = None,
               cores: int | None = None) -> list[dict]:
    """Each DDP run with per-rank times, measured against the model (times in seconds, intervals 95% half-widths).
    `cores`: this host's, where CPU workers share them (N x threads / cores, at least 1, slows compute and step)."""
    rows = []
    for run in ddp_runs.sort_values(["workers", "start_time"]).itertuples():
        n = int(run.workers)
        compute = per_rank(series, run.run_id, "rank_compute_ms", n)
        hooks = per_rank(series, run.run_id, "rank_allreduce_ms", n)
        samples = micro_samples(micro_runs, series, run.device_name, run.torch_threads)
        if compute is None or hooks is None or samples is None:
            continue  # logged before per-rank times, or no micro run of its device and threads to calibrate on
        compute, hooks = middle(compute), middle(hooks)
        logged = getattr(run, "cpu_cores", math.nan)  # the run's host; else the given count (this host)
        host = int(logged) if logged == logged and logged else (cores or 1)
        share = max(1.0, n * (samples.threads or 1) / host) if run.device_type == "cpu" else 1.0
        link = (given_link(n, latency_us, bandwidth_gb_s) if latency_us is not None and bandwidth_gb_s is not None
                else benchmark_link(bench_runs, run.device_name, n))
        compute_pred, compute_ci = (v * share for v in mean_interval(samples.seconds))
        step_pred = samples.step_s * share
        wait_pred, wait_ci = wait_term(compute), wait_interval(compute)
        if link is not None:
            coll_pred, coll_ci = predict_allreduce(link[0], n, run.allreduce_bytes, int(run.allreduce_buckets))
        else:
            coll_pred, coll_ci = math.nan, math.nan
        update_pred = compute_pred + wait_pred + coll_pred + step_pred
        update_ci = math.sqrt(compute_ci ** 2 + wait_ci ** 2 + coll_ci ** 2)
        update_meas, update_meas_ci = mean_interval(middle(own_series(series, run.run_id, "update_time_s")))
        steps = middle(own_series(series, run.run_id, "opt_step_ms")) / 1e3  # not the first: optimizer state made
        step_meas = float(steps.mean()) if len(steps) else float(run.opt_step_ms_mean) / 1e3
        logged = middle(own_series(series, run.run_id, "collective_ms")) / 1e3  # per bucket, the last to arrive's
        collective = logged if len(logged) == len(hooks) else hooks.min(axis=1)
        rows.append({
            "run": run.run_name, "workers": n, "threads": samples.threads, "cores_shared": share,
            "straggle_ms": float(getattr(run, "straggle_ms_set", 0.0) or 0.0),
            "measured_compute_s": mean_interval(compute[:, 0]), "predicted_compute_s": (compute_pred, compute_ci),
            "measured_wait_s": mean_interval(hooks[:, 0] - collective), "predicted_wait_s": (wait_pred, wait_ci),
            "measured_collective_s": mean_interval(collective), "predicted_collective_s": (coll_pred, coll_ci),
            "measured_step_s": step_meas, "predicted_step_s": step_pred,
            "measured_update_s": (update_meas, update_meas_ci), "predicted_update_s": (update_pred, update_ci),
            "unmodelled_s": update_meas - float(compute[:, 0].mean() + hooks[:, 0].mean()) - step_meas,
            "error": update_pred / update_meas - 1, "within": abs(update_pred / update_meas - 1) <= WITHIN,
            "link": link[1] if link else "no all-reduce benchmark on this device (gradacc allreduce)",
            "micro": f"{samples.runs} micro run(s), {samples.threads} thread(s)"})
    return rows
