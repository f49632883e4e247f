"""The report's noise-scale discussion, its plot, and variants kept apart from and set beside the protocol."""
from __future__ import annotations

import numpy as np
import pandas as pd

from gradacc.analysis.compare import build_sections
from gradacc.analysis.plots.compare import write_plots
from gradacc.analysis.report.noise import noise_sentences, variants_html
from gradacc.study.compare import run_compare
from tests.support.compare import SyntheticStore, fresh_store, runs_frame

B_NOISE = 200.0


def loss_curve(k: int, gain: bool) -> np.ndarray:
    """A noise-free loss over the K's 800/K updates that needs S = 20 (1 + B_NOISE / 64K) updates per e-fold
    (gain) or the same number of updates at every K (no gain)."""
    updates = np.arange(800 // k)
    scale = 20 * (1 + B_NOISE / (64 * k)) if gain else 20 * (1 + B_NOISE / 64)
    return 0.5 + 2.0 * np.exp(-updates / scale)


def series_frame(runs: pd.DataFrame, gain: bool = True, noise: bool = True) -> pd.DataFrame:
    rows = []
    for run in runs[runs["part"] == "converge"].itertuples():
        for step, value in enumerate(loss_curve(run.k, gain)):
            rows.append((run.run_id, "converge", run.k, "train_loss_update", step, value))
        if noise and run.k >= 2:
            for epoch in range(1, 6):
                rows.append((run.run_id, "converge", run.k, "noise_scale_simple_epoch", epoch, B_NOISE * epoch / 3))
            for step in range(800 // run.k):
                rows.append((run.run_id, "converge", run.k, "noise_scale_simple", step, B_NOISE))
    frame = pd.DataFrame(rows, columns=["run_id", "part", "k", "key", "step", "value"])
    return frame.astype({"k": "Int64"})


def protocol_and_variant(variant_accuracy):
    protocol = runs_frame(accuracy={1: 44.0, 2: 42.0, 4: 40.0, 8: 36.0})
    variant = runs_frame(accuracy=variant_accuracy).assign(variant="lr=linear,warmup=1", lr_scaling="linear")
    variant["run_id"] = variant["run_id"] + "-v"
    protocol["lr_scaling"] = "none"
    return pd.concat([protocol, variant], ignore_index=True)


def test_noise_sentences_give_b_simple_per_k_and_epoch_and_the_lr_caveat():
    runs = protocol_and_variant({1: 44.0, 2: 43.0})
    sections = build_sections(runs)
    protocol = next(s for s in sections if s.setting["variant"] == "protocol")
    text = " ".join(noise_sentences(protocol, series_frame(protocol.runs)))
    assert "per epoch 1..5: K=2: 66.7, 133, 200, 267, 333" in text
    assert "rises from 66.7 in epoch 1 to 333 in epoch 5" in text
    assert "K=2: 128 < 333, K=4: 256 < 333, K=8: 512 >= 333 (2 of 3 effective batches lie below" in text
    assert "with B_noise = 333 (epoch 5, mean over K), a batch of 512 needs 2.13x the images" in text
    assert "K=1: no noise scale (unavailable: K=1 has one gradient per update" in text
    assert "holds the lr at 0.1 for every K" in text and "decay 0.95" in text and "weight decay" in text
    silent = " ".join(noise_sentences(protocol, series_frame(protocol.runs, noise=False)))
    assert "No converge run of this setting measured the gradient noise scale" in silent


def test_prediction_is_tested_on_the_linear_scaling_variant():
    runs = protocol_and_variant({1: 44.0, 2: 43.5, 4: 43.0, 8: 42.0})
    variant = next(s for s in build_sections(runs) if s.setting["variant"] != "protocol")
    holds = " ".join(noise_sentences(variant, series_frame(variant.runs, gain=True)))
    assert "The prediction holds" in holds and "Updates to reach a training loss of" in holds
    fails = " ".join(noise_sentences(variant, series_frame(variant.runs, gain=False)))
    assert "The prediction does not hold: K=8 departs from it by +" in fails
    flat = series_frame(variant.runs, gain=False)
    flat.loc[(flat["key"] == "train_loss_update") & (flat["k"] == 8), "value"] = 3.0  # K=8 never improves
    assert "Inconclusive: the lowest running-mean loss every K reaches (3) is already reached at the first update " \
        "by K=1,2,4,8" in " ".join(noise_sentences(variant, flat))


def test_variant_beside_the_protocol_and_the_plot(tmp_path):
    runs = protocol_and_variant({1: 44.0, 2: 43.5, 4: 43.0, 8: 42.0})
    sections = build_sections(runs)
    assert len(sections) == 2  # kept apart
    page = variants_html(sections)
    assert "Variants beside the protocol" in page and "variant lr=linear,warmup=1" in page
    assert "From K=1 to K=8, test accuracy falls by 8.0 points under the protocol and falls by 2.0 points" in page
    assert "whether the variant changes the gap is not resolved" in page and "K=8 +6.0" in page  # one seed
    assert "these differences carry no interval" in page and "narrows" not in page
    partial = build_sections(protocol_and_variant({2: 42.0, 8: 41.5}))  # the K both measured: 2 and 8
    assert "From K=2 to K=8, test accuracy falls by 6.0 points under the protocol and falls by 0.5 points in " \
        "the variant: one seed at some of these K" in variants_html(partial)
    assert variants_html([s for s in sections if s.setting["variant"] == "protocol"]) == ""
    # a variant of other data or epochs is set beside the same data and epochs without the lr scaling
    short = runs.assign(variant=runs["variant"].map({"protocol": "epochs=1", "lr=linear,warmup=1":
                                                      "lr=linear,warmup=1,epochs=1"}), epochs=1)
    assert "beside epochs=1" in variants_html(build_sections(pd.concat([runs, short.assign(
        run_id=short["run_id"] + "-short")], ignore_index=True)))
    variant = next(s for s in sections if s.setting["variant"] != "protocol")
    made = write_plots(variant, series_frame(variant.runs), tmp_path)
    assert made["noise_scale_vs_epoch"].read_bytes().startswith(b"\x89PNG")


def test_compare_over_a_store_shows_noise_and_variant(tmp_path, monkeypatch, capsys):
    """From the store: noise series of converge runs loaded, the variant a section of its own, report sections."""
    from mlflow.entities import Metric
    fresh_store(tmp_path, monkeypatch)
    store = SyntheticStore()
    for variant in (None, "lr=linear"):
        for k in (1, 2):
            run_id = store.log("converge", k, variant=variant, accuracy=44.0 - k * (3 if variant is None else 1))
            if k >= 2:
                store.client.log_batch(run_id, metrics=[Metric("noise_scale_simple_epoch", 100.0 * e, 0, e)
                                                        for e in range(1, 6)]
                                       + [Metric("noise_scale_simple_final", 500.0, 0, 0)])
    path = run_compare(output_dir=tmp_path / "out", log=False)
    report = path.read_text()
    assert report.count("Part 3, why: the gradient noise scale") == 2
    assert "K=2: 100, 200, 300, 400, 500" in report and "Variants beside the protocol" in report
    assert path == tmp_path / "out" / "experiment-Default" / "report.html" and (path.parent / "plots").is_dir()
    assert "gradient noise scale B_simple, last epoch (images): K=2 500" in capsys.readouterr().out
