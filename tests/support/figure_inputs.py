"""Synthetic inputs for the figure checks (tests/integration/test_figures_fit.py): short and long runs, one seed
and several, as load_runs and load_series give them, and the commmodel's rows."""
from __future__ import annotations

import hashlib

import numpy as np
import pandas as pd

from gradacc.analysis.commmodel import model as cm
from gradacc.analysis.compare import build_sections
from tests.support.compare import runs_frame

DEVICE = "NVIDIA H100 80GB HBM3"  # a long device name and a smoke variant: the longest subtitles a setting gets


def section_runs(ks, seeds=(42,), epochs=5, smoke=False, variant="protocol", only=None, gap_pct=2.0):
    """Typed runs of one setting: micro, update and converge per K and seed (seed 42 for every K, the other
    seeds for the two smallest K only: uneven run counts); update time `gap_pct` % off 'K x micro + step'."""
    train = 1024 if smoke else 10_240
    frames = []
    for i, seed in enumerate(seeds):
        at, micro = ks if i == 0 else ks[:2], 100.0 + 3 * i
        frames.append(runs_frame(micro={k: micro for k in at}, seeds=(seed,),
                                 update={k: (k * micro + 5.0) * (1 + gap_pct / 100) / 1e3 for k in at},
                                 accuracy={k: 45.0 - 2 * np.log2(k) + i for k in at},
                                 loss={k: 1.5 + 0.05 * k for k in at}))
    runs = pd.concat(frames, ignore_index=True)
    if only:
        runs = runs[runs["part"].isin(only)]
    upe = runs["k"].map(lambda k: max(1, train // (64 * k)))
    ids = runs["run_id"].map(lambda r: hashlib.md5(r.encode()).hexdigest())  # as long as MLflow's run ids
    return runs.assign(run_id=ids, epochs=epochs, train_size=train, smoke=smoke, variant=variant, device_type="cuda",
                       device_name=DEVICE, torch_threads=8, total_updates=upe * epochs).reset_index(drop=True)


def series_of(runs, lone_k=None, scale=1.0):
    """Loss per epoch and per update, B_simple per update and per epoch (K >= 2, times `scale`) for the converge
    runs; `lone_k`: that K has one per-epoch B_simple and no per-update values (as a run whose EMA never settled)."""
    rng = np.random.default_rng(0)
    rows = []
    for run in runs[runs["part"] == "converge"].itertuples():
        updates = int(run.total_updates)
        for epoch in range(1, run.epochs + 1):
            rows.append((run.run_id, run.k, "train_loss", epoch, 2.5 - 0.2 * epoch + 0.03 * run.k))
        for step in range(updates):
            rows.append((run.run_id, run.k, "train_loss_update", step, 2.6 - step / updates + rng.normal(0, 0.1)))
        if run.k < 2:
            continue
        for epoch in range(1, (1 if run.k == lone_k else run.epochs) + 1):
            rows.append((run.run_id, run.k, "noise_scale_simple_epoch", epoch, 150.0 * epoch * scale))
        if run.k != lone_k:
            for step in range(updates):
                rows.append((run.run_id, run.k, "noise_scale_simple", step, (100.0 + 400.0 * step / updates) * scale))
    frame = pd.DataFrame(rows, columns=["run_id", "k", "key", "step", "value"]).assign(part="converge")
    return frame.astype({"k": "Int64"})


SECTIONS = {  # name: (section_runs arguments, series_of arguments)
    "long-one-seed": ({"ks": (1, 2, 4, 8, 16)}, {"scale": 300.0}),  # B_simple to 150,000: wide tick labels
    "long-three-seeds-uneven": ({"ks": (1, 2, 4, 8), "seeds": (42, 43, 44), "gap_pct": -2.0}, {}),
    "short-smoke": ({"ks": (1, 2, 4, 8, 16), "epochs": 1, "smoke": True, "variant": "lr=linear,warmup=1,train=50000"},
                    {}),
    "short-lone-k8": ({"ks": (1, 2, 4, 8), "epochs": 2, "smoke": True}, {"lone_k": 8}),
    "one-k": ({"ks": (4,), "seeds": (42, 43)}, {}),
    "update-only": ({"ks": (1, 8), "only": ("update",)}, {}),
}


def sections_and_series():
    runs = {name: section_runs(**given) for name, (given, _how) in SECTIONS.items()}
    return [(name, build_sections(runs[name])[0], series_of(runs[name], **how)) for name, (_g, how) in SECTIONS.items()]


def run_series(part: str, updates: int, epochs: int):
    """A run's series as plot_run gets them (step lists, value lists)."""
    rng = np.random.default_rng(1)

    def noisy(n, base):
        return list(range(n)), list(base + rng.normal(0, base * 0.05, n))
    epoch_steps = list(range(1, epochs + 1))
    return {"micro": {"micro_iter_ms": noisy(80, 100.0), "opt_step_ms": noisy(10, 5.0)},
            "update": {"update_time_s": noisy(updates, 0.8)},
            "ddp": {"update_time_s": noisy(updates, 0.5), "compute_ms": noisy(updates, 340.0),
                    "allreduce_ms": noisy(updates, 120.0), "opt_step_ms": noisy(updates, 5.0)},
            "converge": {"train_loss": (epoch_steps, [2.5 - 0.2 * e for e in epoch_steps]),
                         "train_loss_update": noisy(updates, 2.0),
                         "test_accuracy_epoch": (epoch_steps, [30.0 + e for e in epoch_steps]),
                         "noise_scale_simple": noisy(max(updates - 3, 1), 300.0),
                         "noise_scale_simple_epoch": (epoch_steps, [150.0 * e for e in epoch_steps]),
                         "grad_norm_sq_est": noisy(updates, 0.5), "grad_trace_sigma_est": noisy(updates, 90.0)}}[part]


def model_inputs(max_workers: int, custom: bool, ddp: bool):
    """The commmodel's rows, best N and DDP checks as `gradacc commmodel` builds them."""
    micro = 0.3 + np.random.default_rng(2).lognormal(-3, 0.5, 80)
    extra = [cm.custom_link(5.0, 10.0)] if custom else []
    rows = cm.predict(micro, 0.01, 44_726_568, cm.preset_topologies(8, "nvlink", extra), range(1, max_workers + 1))
    best = cm.best_workers(rows, cm.updates_curve({1: 800, 2: 420, 4: 250}, range(1, max_workers + 1)))
    # as check_rows gives them: (mean, 95% half-width) per run, the injected straggler's mean (0: none)
    checks = [{"workers": n, "straggle_ms": straggle, "measured_update_s": (0.5 * n ** 0.2, 0.01),
               "predicted_update_s": (0.45 * n ** 0.2, 0.03)} for n, straggle in ((2, 0.0), (4, 300.0)) if ddp]
    return pd.DataFrame(rows), best, pd.DataFrame(checks)
