"""The Part 4 model's math: ring all-reduce, buckets, the straggler estimator, the updates-to-target curve and the
best N; and the report's DDP sentences. Each term of predict() and the two-level topology, against hand-worked
numbers: test_commmodel_terms.py."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from gradacc.analysis.commmodel import model as cm

LINK = cm.Link("t", "test link", 5e-6, 10.0, "10 GB/s", "test", "network")


def test_ring_allreduce_is_the_alpha_beta_formula():
    size = 40e6
    for p in (2, 3, 8):
        expected = 2 * (p - 1) * 5e-6 + 2 * (p - 1) / p * size / 10e9
        assert cm.ring_allreduce_s(size, p, LINK) == pytest.approx(expected)
    assert cm.ring_allreduce_s(size, 1, LINK) == 0.0
    # latency paid once per message (bucket), bandwidth on the whole size
    assert cm.ring_allreduce_s(size, 4, LINK, messages=3) - cm.ring_allreduce_s(size, 4, LINK) == \
        pytest.approx(2 * 2 * 3 * 5e-6)


def test_bucket_count_follows_ddps_caps_in_mib():
    assert cm.DDP_BUCKET_BYTES == 25 * 1024 * 1024 and cm.DDP_FIRST_BUCKET_BYTES == 1024 * 1024
    assert cm.bucket_count(44_726_568) == 3  # ResNet-18's float32 gradient: 1 MiB, then 25 MiB, then the rest
    assert cm.bucket_count(cm.DDP_FIRST_BUCKET_BYTES) == 1
    assert cm.bucket_count(cm.DDP_FIRST_BUCKET_BYTES + cm.DDP_BUCKET_BYTES) == 2
    assert cm.bucket_count(cm.DDP_FIRST_BUCKET_BYTES + cm.DDP_BUCKET_BYTES + 1) == 3
    assert cm.bucket_count(10) == 1


def test_presets_state_source_and_unit():
    for link in cm.PRESETS.values():
        assert link.source and link.stated and link.bandwidth_gb_s > 0 and link.latency_s > 0
    assert cm.PRESETS["ib-ndr"].bandwidth_gb_s == 400 / 8  # 400 Gb/s -> GB/s
    assert cm.PRESETS["10gbe"].bandwidth_gb_s == 10 / 8
    assert {"nvlink", "pcie4", "pcie5", "ib-hdr", "ib-ndr", "100gbe", "10gbe"} == set(cm.PRESETS)


def test_bootstrap_maximum_is_exact_and_saturates():
    rng = np.random.default_rng(0)
    x = rng.lognormal(0, 0.4, 40)
    assert cm.bootstrap_expected_max(x, 1) == pytest.approx(x.mean())
    assert cm.bootstrap_expected_max(np.full(10, 3.0), 7) == pytest.approx(3.0)
    values = [cm.bootstrap_expected_max(x, n) for n in (1, 2, 4, 8, 64, 4096)]
    assert all(b >= a for a, b in zip(values, values[1:]))
    assert values[-1] <= x.max() + 1e-12  # it can never exceed the largest sample
    draws = rng.choice(x, size=(20_000, 4)).max(axis=1).mean()  # resampling by brute force
    assert cm.bootstrap_expected_max(x, 4) == pytest.approx(draws, rel=0.01)


def test_fitted_maximum_goes_beyond_the_samples_and_tracks_the_truth():
    rng = np.random.default_rng(1)
    truth = lambda n: (0.3 + rng.lognormal(-3, 0.5, (20_000, n))).max(axis=1).mean()  # noqa: E731
    x = 0.3 + rng.lognormal(-3, 0.5, 400)
    assert cm.fitted_expected_max(x, 64) == pytest.approx(truth(64), rel=0.05)
    small = x[:40]
    value, method = cm.expected_max(small, 64)
    assert method == "lognormal fit" and value == pytest.approx(truth(64), rel=0.15)
    assert cm.fitted_expected_max(small, 4096) > small.max()  # unlike a bootstrap, no ceiling at the samples
    assert cm.expected_max(small, 4)[1] == "bootstrap"  # N small against the samples: resampled


def test_updates_curve_interpolates_and_marks_extrapolation():
    measured = {1: 800, 2: 400, 4: 300, 8: 280}
    curve = cm.updates_curve(measured, range(1, 33))
    assert curve[2] == (400.0, False)
    value, extrapolated = curve[3]
    assert 300 < value < 400 and not extrapolated
    value, extrapolated = curve[16]
    assert extrapolated and value <= 280
    assert curve[32][0] <= curve[16][0]
    # a slope steeper than perfect scaling is held at -1, a rising one at 0
    assert cm.updates_curve({1: 1000, 2: 100}, [4])[4][0] == pytest.approx(50.0)
    assert cm.updates_curve({1: 100, 2: 200}, [4])[4][0] == pytest.approx(200.0)


def test_updates_to_target_uses_the_epoch_trailing_mean():
    losses = [3, 3, 2, 2, 1, 1]
    assert cm.updates_to_target(losses, 2.0, window=2) == 4
    assert cm.updates_to_target(losses, 0.5, window=2) is None


def test_prediction_rows_and_best_n():
    micro = np.full(50, 0.1)
    topo = [cm.Topology("slow", None, LINK, 1)]
    rows = cm.predict(micro, 0.01, 44e6, topo, [1, 2, 4])
    assert rows[0]["speedup"] == pytest.approx(1.0) and rows[0]["allreduce_s"] == 0.0
    # two one-GPU nodes on LINK, 3 buckets (1 MiB, 25 MiB, the rest): 2 x 5 us x 3 + 1 x 44e6 / 1e10 = 4.43 ms
    assert rows[1]["update_s"] == pytest.approx(0.11 + 2 * 5e-6 * 3 + 44e6 / 1e10, rel=1e-12)
    assert all(r["efficiency"] <= 1.0 + 1e-12 for r in rows)
    hidden = cm.predict(micro, 0.01, 44e6, topo, [2], overlap=1.0)[0]
    assert hidden["exposed_s"] == 0.0  # 4.43 ms under 2/3 x 0.1 s of backward
    best = cm.best_workers(rows, {1: (1000.0, False), 2: (1000.0, False), 4: (1000.0, True)})
    assert best["slow"]["workers"] == min(rows, key=lambda r: r["update_s"])["workers"]


def test_gradient_size_is_that_of_the_model():
    import torch

    from gradacc.core.config import GRADIENT_BYTES
    from gradacc.core.model import build_model
    model = build_model(0, torch.device("cpu"))
    assert GRADIENT_BYTES == sum(p.numel() * p.element_size() for p in model.parameters() if p.requires_grad)


def test_ddp_runs_match_a_setting_and_read_beside_accumulation():
    from gradacc.analysis.report.part4 import ddp_sentences, matching_ddp
    ddp = pd.DataFrame([{"run_name": "ddp-w2", "workers": 2, "torch_threads": 1, "device_type": "cpu",
                         "device_name": "X", "smoke": False, "start_time": pd.Timestamp("2026-01-01", tz="UTC"),
                         "update_time_s_mean": 1.2, "compute_ms_mean": 900.0, "allreduce_ms_mean": 250.0,
                         "allreduce_bytes": 44.7e6, "algbw_gb_s": 0.18, "busbw_gb_s": 0.18,
                         "opt_step_ms_mean": 40.0, "test_accuracy": 41.0, "final_train_loss": 1.7}])
    assert matching_ddp(ddp, {"device_type": "cuda", "smoke": False}).empty
    chosen = matching_ddp(ddp, {"device_type": "cpu", "device_name": "X", "smoke": False, "torch_threads": 2})
    table = pd.DataFrame([{"k": 2, "update_time_s_mean": 0.6, "test_accuracy": 44.1, "final_train_loss": 1.63}])
    text, = ddp_sentences(chosen, table)
    assert "of which compute 900 ms, all-reduce 250 ms" in text and "Accumulation with K=2" in text and "44.1%" in text


def test_report_bound_is_n_times_one_measured_worker():
    from gradacc.analysis.report.part4 import intro_sentences
    table = pd.DataFrame({"k": [1, 2, 4], "throughput_img_s": [26.5, 40.0, 45.0]})
    runs = pd.DataFrame({"micro_batch": [64]})
    bound = intro_sentences(table, runs)[-1]
    assert "K=1 in Part 2: 26.5 images/s): N=2: 53 images/s, N=4: 106 images/s" in bound
    assert "micro-batch of 64" in intro_sentences(table, runs)[0]
    assert len(intro_sentences(table.assign(throughput_img_s=float("nan")), runs)) == 3  # nothing measured: no bound


def test_report_gives_no_best_n_for_a_target_met_at_the_first_update():
    from gradacc.analysis.report.part4 import target_sentences
    t0 = pd.Timestamp("2026-01-01", tz="UTC")
    runs = pd.DataFrame([{"run_id": f"c{k}", "part": "converge", "k": k, "updates_per_epoch": 4, "start_time": t0}
                         for k in (1, 2)])
    flat = [("c1", "train_loss_update", i, 2.0 + 0.1 * i) for i in range(8)]  # training made the loss worse
    flat += [("c2", "train_loss_update", i, 2.0 + 0.2 * i) for i in range(8)]
    series = pd.DataFrame(flat, columns=["run_id", "key", "step", "value"])
    rows = cm.predict([0.1, 0.2], 0.0, 1e6, [cm.Topology("t", LINK, None, 10**9)], [1, 2])
    text, = target_sentences(runs, series, rows, [1, 2])
    assert "met at the first update already (K=1, 2)" in text and "Best N" not in text


def test_a_smoke_study_says_so_in_part_4_too():
    from gradacc.analysis.compare import build_sections
    from gradacc.analysis.report.discussion import discussion
    from tests.support.compare import runs_frame
    no_series = pd.DataFrame(columns=["run_id", "part", "k", "key", "step", "value"])
    frame = runs_frame(micro={1: 100.0, 2: 101.0})
    smoke = discussion(build_sections(frame.assign(smoke=True))[0], no_series)["Part 4: what real synchronous SGD adds"]
    assert smoke[0].startswith("Smoke runs (tiny data): nothing here says anything about K. ")
    assert all(s.startswith("Smoke runs") for s in smoke)
    real = discussion(build_sections(frame)[0], no_series)["Part 4: what real synchronous SGD adds"]
    assert not any("Smoke" in s for s in real)
