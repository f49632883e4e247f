"""The check of the Part 4 model against a real DDP run, term by term against numbers worked out by hand: compute
and step from micro runs times the cores' sharing, the wait as the expected slowest of one draw per rank from the
run's own per-rank compute, the collective from an all-reduce benchmark's fitted link (ring factor and latency
count carried to another N); and the ring fit itself. The expectations are literal arithmetic."""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from gradacc.analysis.commmodel.check import check_rows, expected_max_of_ranks
from gradacc.analysis.commmodel.fit import RingFit, fit_ring, predict_allreduce, t95

T0 = pd.Timestamp("2026-01-01", tz="UTC")
UPDATES, N, SIZE, BUCKETS = 10, 4, 1e6, 3
# Micro runs: 0.1 s and 0.3 s, 8 of each (mean 0.2 s), step 10 ms, one thread. The DDP run: 4 workers of one
# thread on a host of 2 cores, so each computes 4 x 1 / 2 = 2 times slower than alone.
MICRO = [100.0] * 8 + [300.0] * 8
# Every rank alternates 0.4 s and 0.8 s per update: one draw per rank, the slowest of 4 is 0.4 s only when all
# four draw it: E[max] = 0.8 (1 - 1/16) + 0.4 / 16 = 0.775; rank 0's mean 0.6, so the wait is 0.175 s.
COMPUTE = np.tile(np.array([[0.4], [0.8]]), (UPDATES // 2, N))
HOOKS = np.tile([0.3, 0.1, 0.1, 0.1], (UPDATES, 1))  # rank 0 waits 0.2 s, the collective itself takes 0.1 s
# A benchmark at 2 ranks: a = 2(2-1) alpha = 100 us (alpha 50 us), b = 2(2-1)/2 / B = 1 ns per byte (B = 1 GB/s).
BENCH = {"run_name": "allreduce-w2", "part": "allreduce", "workers": 2, "device_name": "X", "start_time": T0,
         "fit_a_us": 100.0, "fit_b_ns_per_byte": 1.0, "fit_a_se_us": 0.0, "fit_b_se_ns_per_byte": 0.0,
         "fit_ab_corr": 0.0, "fit_dof": 10.0}
# ... carried to 4 ranks, 3 buckets: 2(4-1) alpha buckets + 2(4-1)/4 S / B = 6 * 50e-6 * 3 + 1.5 * 1e6 / 1e9
COLLECTIVE = 6 * 50e-6 * 3 + 1.5 * 1e6 / 1e9  # 0.0024 s
COMPUTE_PRED, STEP_PRED, WAIT = 0.2 * 2, 0.01 * 2, 0.775 - 0.6


def frames(cores=2.0):
    micro = pd.DataFrame([{"run_id": "m", "device_name": "X", "torch_threads": 1, "start_time": T0,
                           "opt_step_ms_mean": 10.0}])
    ddp = pd.DataFrame([{"run_id": "d", "run_name": "ddp-w4", "workers": N, "torch_threads": 1, "device_type": "cpu",
                         "device_name": "X", "start_time": T0, "allreduce_bytes": SIZE, "allreduce_buckets": BUCKETS,
                         "opt_step_ms_mean": 99.0, "straggle_ms_set": 0.0, "cpu_cores": cores}])
    rows = [("m", "micro_iter_ms", i, v) for i, v in enumerate(MICRO)]
    rows += [("d", "rank_compute_ms", u * N + r, COMPUTE[u, r] * 1e3) for u in range(UPDATES) for r in range(N)]
    rows += [("d", "rank_allreduce_ms", u * N + r, HOOKS[u, r] * 1e3) for u in range(UPDATES) for r in range(N)]
    rows += [("d", "update_time_s", u, 0.7) for u in range(UPDATES)]
    rows += [("d", "opt_step_ms", u, 30.0 if u == 0 else 15.0) for u in range(UPDATES)]
    series = pd.DataFrame(rows, columns=["run_id", "key", "step", "value"])
    return ddp, micro, series


def test_the_slowest_of_one_draw_per_rank():
    assert expected_max_of_ranks([[1.0, 3.0], [2.0]]) == pytest.approx(0.5 * 2 + 0.5 * 3)
    same = [0.1] * 8 + [0.3] * 8
    assert expected_max_of_ranks([same, same]) == pytest.approx(0.1 * 0.25 + 0.3 * 0.75)
    assert expected_max_of_ranks([same]) == pytest.approx(0.2)


def test_each_term_of_the_check_against_hand_numbers():
    ddp, micro, series = frames()
    row, = check_rows(ddp, micro, series, pd.DataFrame([BENCH]))
    assert row["cores_shared"] == 2.0
    assert row["predicted_compute_s"][0] == pytest.approx(COMPUTE_PRED, rel=1e-12)
    sd = math.sqrt(8 * 0.1 ** 2 * 2 / 15)  # the micro samples' standard deviation (ddof 1)
    assert row["predicted_compute_s"][1] == pytest.approx(2 * 1.96 * sd / 4, rel=1e-9)
    assert row["predicted_step_s"] == pytest.approx(STEP_PRED, rel=1e-12)
    assert row["predicted_wait_s"][0] == pytest.approx(WAIT, rel=1e-9)
    assert row["predicted_collective_s"] == (pytest.approx(COLLECTIVE, rel=1e-9), 0.0)
    assert row["predicted_update_s"][0] == pytest.approx(COMPUTE_PRED + WAIT + COLLECTIVE + STEP_PRED, rel=1e-9)
    # measured, over the middle 60% of the 10 updates (2..7): what rank 0 computed, waited, and the collective
    assert row["measured_compute_s"][0] == pytest.approx(0.6) and row["measured_wait_s"][0] == pytest.approx(0.2)
    assert row["measured_collective_s"][0] == pytest.approx(0.1)
    assert row["measured_update_s"] == (pytest.approx(0.7), pytest.approx(0.0))
    assert row["measured_step_s"] == pytest.approx(0.015)  # not the first step, nor the run's all-update mean
    assert row["unmodelled_s"] == pytest.approx(0.7 - 0.6 - 0.3 - 0.015)
    assert row["error"] == pytest.approx((COMPUTE_PRED + WAIT + COLLECTIVE + STEP_PRED) / 0.7 - 1)
    assert "allreduce-w2" in row["link"]


def test_the_logged_collective_is_the_measured_one():
    ddp, micro, series = frames()
    logged = pd.DataFrame([("d", "collective_ms", u, 80.0) for u in range(UPDATES)], columns=series.columns)
    row, = check_rows(ddp, micro, pd.concat([series, logged]), pd.DataFrame([BENCH]))
    assert row["measured_collective_s"][0] == pytest.approx(0.08) and row["measured_wait_s"][0] == pytest.approx(0.22)


def test_no_sharing_where_the_cores_suffice_and_a_given_link():
    ddp, micro, series = frames(cores=8.0)
    row, = check_rows(ddp, micro, series, pd.DataFrame([BENCH]), latency_us=50.0, bandwidth_gb_s=1.0)
    assert row["cores_shared"] == 1.0 and row["predicted_compute_s"][0] == pytest.approx(0.2)
    assert row["predicted_collective_s"][0] == pytest.approx(COLLECTIVE, rel=1e-9)  # the same link, given
    assert row["link"].startswith("given")


def test_runs_without_per_rank_times_or_a_matching_micro_run_are_left_out():
    ddp, micro, series = frames()
    assert check_rows(ddp, micro, series[~series["key"].str.startswith("rank_")]) == []
    assert check_rows(ddp, micro.assign(torch_threads=2), series) == []
    row, = check_rows(ddp, micro, series, None)  # no benchmark: no collective predicted, the row says how
    assert math.isnan(row["predicted_update_s"][0]) and "gradacc allreduce" in row["link"]


def test_ring_fit_recovers_alpha_and_bandwidth():
    sizes = 4096 * 2 ** np.arange(15)
    truth = 2 * 3 * 30e-6 + 2 * 3 / 4 * sizes / 2e9  # 4 ranks, alpha 30 us, B 2 GB/s
    rng = np.random.default_rng(1)
    noisy = truth * (1 + 0.01 * rng.standard_normal(len(sizes)))
    fit = fit_ring(sizes, noisy, 0.01 * truth, workers=4)
    assert fit.alpha_s == pytest.approx(30e-6, rel=0.05) and fit.bandwidth_gb_s == pytest.approx(2.0, rel=0.02)
    low, high = fit.alpha_interval_s()
    assert low < 30e-6 < high
    low, high = fit.bandwidth_interval_gb_s()
    assert low < 2.0 < high
    exact = fit_ring(sizes, truth, 0.01 * truth, workers=4)
    metrics = exact.metrics()
    assert metrics["alpha_us"] == pytest.approx(30.0, rel=1e-6) and metrics["bandwidth_gb_s"] == pytest.approx(2.0)
    again = RingFit.from_metrics(4, metrics)
    assert (again.a, again.b) == (pytest.approx(exact.a), pytest.approx(exact.b))


def test_prediction_from_a_fit_at_another_n():
    fit = RingFit(2, 100e-6, 1e-9, (10e-6) ** 2, 0.0, 0.0, 13)
    value, half = predict_allreduce(fit, 4, SIZE, BUCKETS)
    assert value == pytest.approx(COLLECTIVE, rel=1e-12)
    assert half == pytest.approx(2.160 * 3 * BUCKETS * 10e-6)  # (N-1)/(Nf-1) x buckets x se(a), t at 13 dof
    assert predict_allreduce(fit, 1, SIZE) == (0.0, 0.0)
    assert t95(1) == 12.706 and t95(13) == 2.160 and t95(10**6) == pytest.approx(1.96, abs=1e-3)
