"""Part 4 of the report in numbers: the communication and straggler model fed by the section's micro and
converge runs, and the real DDP runs beside accumulation at the same global batch (pure: frames in, sentences out)."""
from __future__ import annotations

import pandas as pd

from gradacc.analysis.commmodel import model as cm
from gradacc.analysis.commmodel.inputs import check_rows, convergence, micro_samples
from gradacc.core.config import GRADIENT_BYTES

# Three interconnects span the range: one node's fabric, a fast and a slow network between 8-GPU nodes.
SHOWN = ("NVLink 4", "InfiniBand NDR", "10 GbE")
SHOWN_NS = (8, 64)
DDP_MATCH_KEYS = ("device_type", "device_name", "loader", "epochs", "micro_batch", "train_size", "test_size", "lr",
                  "momentum", "weight_decay", "smoke", "tf32_conv")  # threads differ by design: one per DDP worker


def matching_ddp(ddp_runs: pd.DataFrame | None, setting: dict) -> pd.DataFrame:
    """The DDP runs of a section's setting (all but the thread count), newest per worker count."""
    if ddp_runs is None or ddp_runs.empty:
        return pd.DataFrame()
    keep = pd.Series(True, index=ddp_runs.index)
    for key in DDP_MATCH_KEYS:
        if key in ddp_runs and setting.get(key) is not None:
            keep &= ddp_runs[key].astype(object).eq(setting[key])
    chosen = ddp_runs[keep].sort_values("start_time", ascending=False)
    return chosen.drop_duplicates("workers").sort_values("workers")


def _ms(seconds: float) -> str:
    ms = seconds * 1e3
    return f"{ms:,.0f} ms" if ms >= 100 else f"{ms:.3g} ms"


def model_sentences(runs: pd.DataFrame, series: pd.DataFrame) -> list[str]:
    """The model's predictions for this section: update time, efficiency, stragglers, best N."""
    micro = runs[runs["part"] == "micro"]
    samples = micro_samples(micro, series)
    if samples is None:
        return ["No micro-iteration samples in this setting: the communication and straggler model needs Part 1."]
    grad = GRADIENT_BYTES
    topologies = [t for t in cm.preset_topologies() if t.name.split(" (")[0] in SHOWN]
    ns = list(range(1, max(SHOWN_NS) + 1))
    rows = cm.predict(samples.seconds, samples.step_s, grad, topologies, ns)
    at = {(r["interconnect"].split(" (")[0], r["workers"]): r for r in rows}
    out = [f"The model (gradacc commmodel): the float32 gradient is {grad / 1e6:.1f} MB (ResNet-18's parameters), "
           f"sent by DDP in {cm.bucket_count(grad)} buckets (a first of 1 MiB, then at most 25 MiB each); each worker "
           f"computes one micro-batch per update, taken as the slowest of N draws from the {len(samples.seconds)} "
           "micro-iterations measured "
           f"here (mean {_ms(samples.seconds.mean())}), plus the optimizer step ({_ms(samples.step_s)}), plus the "
           "all-reduce over a two-level topology (8 GPUs per node on NVLink where a network joins nodes, through one "
           "network card per GPU, as in DGX/HGX nodes: each card carries an eighth of the gradient)."]
    for n in SHOWN_NS:
        parts = [f"{name}: {_ms(at[name, n]['update_s'])} per update, of which all-reduce "
                 f"{_ms(at[name, n]['allreduce_s'])}, efficiency {at[name, n]['efficiency'] * 100:.0f}%"
                 for name in SHOWN if (name, n) in at]
        wait = at[SHOWN[0], n]["straggler_s"]
        out.append(f"At N={n}: " + "; ".join(parts) + f". Waiting for the slowest worker adds {_ms(wait)} "
                   f"({wait / samples.seconds.mean() * 100:.0f}% of a mean micro-iteration; "
                   f"{at[SHOWN[0], n]['straggler_method']}).")
    conv = convergence(runs[runs["part"] == "converge"], series)
    if conv:
        curve = cm.updates_curve(conv.measured, ns)
        within = {n.split(" (")[0]: b["workers"] for n, b in cm.best_workers(rows, curve, True).items()}
        choices = []
        for full_name, b in cm.best_workers(rows, curve).items():
            name = full_name.split(" (")[0]
            note = (f", updates extrapolated beyond the measured batches; within them N={within[name]}"
                    if b["extrapolated"] else "")
            choices.append(f"{name} N={b['workers']} ({b['time_to_target_s']:.3g} s{note})")
        ks = sorted(conv.measured)
        out.append(f"Best N for the time to reach training loss {conv.target_loss:.3f} (updates to it measured at "
                   f"N={', '.join(map(str, ks))}: {', '.join(str(conv.measured[k]) for k in ks)}): "
                   + "; ".join(choices) + ".")
    return out


def ddp_sentences(ddp: pd.DataFrame, table: pd.DataFrame) -> list[str]:
    """Each real DDP run beside accumulation with K = N: time split, accuracy, final loss."""
    out = []
    for run in ddp.itertuples():
        n = int(run.workers)
        acc = table[table["k"] == n]
        text = (f"Real DDP, {n} workers ({run.run_name}, {int(run.torch_threads)} thread each): "
                f"{run.update_time_s_mean:.3g} s per update = compute {run.compute_ms_mean:,.0f} ms + all-reduce "
                f"{run.allreduce_ms_mean:,.0f} ms ({run.allreduce_bytes / 1e6:.1f} MB per update; algbw "
                f"{run.algbw_gb_s:.3g} GB/s, busbw {run.busbw_gb_s:.3g} GB/s; the all-reduce includes waiting "
                f"for the slower worker) + step {run.opt_step_ms_mean:.3g} ms; test accuracy "
                f"{run.test_accuracy:.1f}%, final training loss {run.final_train_loss:.3f}")
        if len(acc) and pd.notna(acc["update_time_s_mean"].iloc[0]):
            row = acc.iloc[0]
            text += (f". Accumulation with K={n} here: {row['update_time_s_mean']:.3g} s per update, test accuracy "
                     f"{row['test_accuracy']:.1f}%, final loss {row['final_train_loss']:.3f}")
        out.append(text + ".")
    return out


def check_sentence(ddp: pd.DataFrame, runs: pd.DataFrame, series: pd.DataFrame) -> list[str]:
    """The model's prediction for each DDP run, beside what it measured."""
    rows = check_rows(ddp, runs[runs["part"] == "micro"], series, GRADIENT_BYTES)
    if not rows:
        return []
    return ["Predicted against measured (the all-reduce's bandwidth calibrated on each run's busbw; compute from "
            "this setting's micro-iterations" + ("" if all(r["micro_match"] for r in rows) else
                                                 ", whose thread count differs from the DDP workers'")
            + "): " + "; ".join(f"N={r['workers']}: {r['predicted_update_s']:.3g} s per update predicted, "
                                f"{r['measured_update_s']:.3g} s measured" for r in rows)
            + ". Where CPU workers share the cores with other jobs, the measured compute exceeds the prediction."]


def part4_numbers(runs: pd.DataFrame, table: pd.DataFrame, series: pd.DataFrame, ddp: pd.DataFrame) -> list[str]:
    """The sentences that replace Part 4's prose about 'a later issue': the model, then the real DDP runs."""
    out = model_sentences(runs, series)
    out += ddp_sentences(ddp, table) + check_sentence(ddp, runs, series) if len(ddp) else [
        "No real DDP runs in this setting (`gradacc ddp --workers N` adds them)."]
    return out
