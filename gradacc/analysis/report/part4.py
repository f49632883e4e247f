"""Part 4 of the report: what accumulation captures and misses, the communication and straggler model fed by the
section's micro and converge runs, and the real DDP runs beside accumulation at the same global batch, checked
against the model with an all-reduce benchmark's link (pure: frames in, sentences out)."""
from __future__ import annotations

import os

import pandas as pd

from gradacc.analysis.commmodel import model as cm
from gradacc.analysis.commmodel.check import check_rows
from gradacc.analysis.commmodel.inputs import convergence, micro_samples
from gradacc.analysis.text import short
from gradacc.core.config import GRADIENT_BYTES, RESNET18_PARAMS
from gradacc.names import ALLREDUCE, DDP

# Three interconnects span the range: one node's fabric, a fast and a slow network between 8-GPU nodes.
SHOWN = ("NVLink 4", "InfiniBand NDR", "10 GbE")
SHOWN_NS = (8, 64)
DDP_MATCH_KEYS = ("device_type", "device_name", "loader", "epochs", "micro_batch", "train_size", "test_size", "lr",
                  "momentum", "weight_decay", "smoke", "tf32_conv")  # threads differ by design: one per DDP worker


def matching_ddp(ddp_runs: pd.DataFrame | None, setting: dict) -> pd.DataFrame:
    """The DDP runs of a section's setting (all but the thread count), newest per worker count and straggler;
    with the all-reduce benchmarks (part allreduce) of its device, where the frame holds any."""
    if ddp_runs is None or ddp_runs.empty:
        return pd.DataFrame()
    part = ddp_runs["part"] if "part" in ddp_runs else pd.Series(DDP, index=ddp_runs.index)
    bench = ddp_runs[part == ALLREDUCE]
    ddp_runs = ddp_runs[part != ALLREDUCE]
    keep = pd.Series(True, index=ddp_runs.index)
    for key in DDP_MATCH_KEYS:
        if key in ddp_runs and setting.get(key) is not None:
            keep &= ddp_runs[key].astype(object).eq(setting[key])
    chosen = ddp_runs[keep].sort_values("start_time", ascending=False)
    if "straggle_ms_set" not in chosen:
        chosen = chosen.assign(straggle_ms_set=0.0)
    chosen = chosen.assign(straggle_ms_set=chosen["straggle_ms_set"].fillna(0.0))
    chosen = chosen.drop_duplicates(["workers", "straggle_ms_set"]).sort_values(["workers", "straggle_ms_set"])
    if len(bench) and setting.get("device_name") is not None:
        bench = bench[bench["device_name"] == setting["device_name"]]
        chosen = pd.concat([chosen, bench], ignore_index=True) if len(chosen) else chosen
    return chosen.reset_index(drop=True)


def _ms(seconds: float) -> str:
    ms = seconds * 1e3
    return f"{ms:,.0f} ms" if ms >= 100 else f"{ms:.3g} ms"


def _plural(count: int, noun: str) -> str:
    return f"{count} {noun}{'' if count == 1 else 's'}"


def intro_sentences(table: pd.DataFrame, runs: pd.DataFrame) -> list[str]:
    """What accumulation captures and what it misses; the ideal N-worker throughput from one measured worker."""
    batch = runs["micro_batch"].dropna()
    batch = int(batch.iloc[0]) if len(batch) else None
    of = f" of {batch}" if batch else ""
    out = [
        "What accumulation captures: each update applies the same gradient as N=K synchronous workers that each "
        f"compute one micro-batch{of} and average their gradients (the sum of loss/K over K micro-batches is "
        "that average), with the same effective batch, lr and number of updates, so Part 3's convergence "
        "carries over to N=K workers.",
        f"BatchNorm normalises each micro-batch{of} on its own, as DDP without SyncBatchNorm does; its running "
        "statistics are updated K times per update here, where a DDP job keeps rank 0's.",
        "What it misses: the all-reduce of the gradient every update (latency plus bandwidth: ResNet-18 has "
        f"{RESNET18_PARAMS:,} parameters, {GRADIENT_BYTES / 1e6:.1f} MB in float32), the barrier at which every worker "
        "waits for the slowest (stragglers), the topology that sets the all-reduce's cost (NVLink, PCIe, "
        "network; ring or tree), and the overlap of that communication with the backward pass.",
    ]
    one = table[(table["k"] == 1) & table["throughput_img_s"].notna()] if "throughput_img_s" in table else table[:0]
    if len(one):
        base = float(one["throughput_img_s"].iloc[0])
        ks = [int(k) for k in table["k"] if k > 1]
        bounds = ", ".join(f"N={k}: {short(base * k)} images/s" for k in ks)
        out.append(f"Without communication and waiting, N workers would process at most N times what one worker "
                   f"does (K=1 in Part 2: {short(base)} images/s)" + (f": {bounds}" if bounds else "")
                   + "; the all-reduce, the barrier and stragglers only lower these figures.")
    return out


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
           f"micro-iterations of {_plural(samples.runs, 'micro run')} on {samples.device_name} "
           f"({_plural(samples.threads or 0, 'thread')}; each run centred on their common mean, so that drift between "
           f"runs is not taken for jitter between workers; mean {_ms(samples.seconds.mean())}), plus the optimizer "
           f"step ({_ms(samples.step_s)}), plus the all-reduce over a two-level topology (8 GPUs per node on NVLink "
           "where a network joins nodes, through one network card per GPU, as in DGX/HGX nodes: each card carries "
           "an eighth of the gradient)."]
    for n in SHOWN_NS:
        shown = [name for name in SHOWN if (name, n) in at]
        same = all(at[name, n]["update_s"] == at[shown[0], n]["update_s"] for name in shown)
        parts = [f"{name}: {_ms(at[name, n]['update_s'])} per update, of which all-reduce "
                 f"{_ms(at[name, n]['allreduce_s'])}, efficiency {at[name, n]['efficiency'] * 100:.0f}%"
                 for name in (shown[:1] if same else shown)]
        if same and len(shown) > 1:  # N within one node: no network is crossed
            parts[0] += f" (the same on {', '.join(shown[1:])}: {n} workers fit in one node)"
        wait = at[SHOWN[0], n]["straggler_s"]
        out.append(f"At N={n}: " + "; ".join(parts) + f". Waiting for the slowest worker adds {_ms(wait)} "
                   f"({wait / samples.seconds.mean() * 100:.0f}% of a mean micro-iteration; "
                   f"{at[SHOWN[0], n]['straggler_method']}).")
    return out + target_sentences(runs, series, rows, ns)


def target_sentences(runs: pd.DataFrame, series: pd.DataFrame, rows: list[dict], ns: list[int]) -> list[str]:
    """The best N for the time to a target loss, unless the target says nothing (met at the first update)."""
    conv = convergence(runs[runs["part"] == "converge"], series)
    if not conv:
        return []
    ks = sorted(conv.measured)
    at_once = [k for k in ks if conv.measured[k] <= 1]
    if at_once:  # the untrained model's first losses already meet it: no training is measured
        return [f"The loss every K reached, {conv.target_loss:.3f}, is met at the first update already (K="
                f"{', '.join(map(str, at_once))}): the time to it measures no training, so no best N is given."]
    curve = cm.updates_curve(conv.measured, ns)
    within = {n.split(" (")[0]: b["workers"] for n, b in cm.best_workers(rows, curve, True).items()}
    choices = []
    for full_name, b in cm.best_workers(rows, curve).items():
        name = full_name.split(" (")[0]
        note = (f", updates extrapolated beyond the measured batches; within them N={within[name]}"
                if b["extrapolated"] else "")
        choices.append(f"{name} N={b['workers']} ({b['time_to_target_s']:.3g} s{note})")
    return [f"Best N for the time to reach training loss {conv.target_loss:.3f} (updates to it measured at "
            f"N={', '.join(map(str, ks))}: {', '.join(str(conv.measured[k]) for k in ks)}): "
            + "; ".join(choices) + "."]


def ddp_sentences(ddp: pd.DataFrame, table: pd.DataFrame) -> list[str]:
    """Each real DDP run beside accumulation with K = N: time split, accuracy, final loss."""
    out = []
    for run in ddp.itertuples():
        n = int(run.workers)
        acc = table[table["k"] == n]
        straggle = getattr(run, "straggle_ms_set", 0.0)
        straggle = 0.0 if straggle != straggle else float(straggle)
        waits = (f"; of the all-reduce, waiting for the slowest rank {_ms(run.wait_ms_mean / 1e3)} and the "
                 f"collective {_ms(run.collective_ms_mean / 1e3)}" if pd.notna(getattr(run, "wait_ms_mean", None))
                 else "; the all-reduce includes waiting for the slower worker")
        text = (f"Real DDP, {n} workers ({run.run_name}, {_plural(int(run.torch_threads), 'thread')} each"
                + (f", rank {n - 1} straggling by an exponential sleep of mean {straggle:g} ms" if straggle else "")
                + f"): {run.update_time_s_mean:.3g} s per update, of which compute {run.compute_ms_mean:,.0f} ms, "
                f"all-reduce {run.allreduce_ms_mean:,.0f} ms ({run.allreduce_bytes / 1e6:.1f} MB per update; algbw "
                f"{run.algbw_gb_s:.3g} GB/s, busbw {run.busbw_gb_s:.3g} GB/s{waits}) and step "
                f"{run.opt_step_ms_mean:.3g} ms; test accuracy {run.test_accuracy:.1f}%, final training loss "
                f"{run.final_train_loss:.3f}" + (" (a straggler changes the times, not the arithmetic)" if straggle
                                                 else ""))
        if len(acc) and pd.notna(acc["update_time_s_mean"].iloc[0]) and not straggle:
            row = acc.iloc[0]
            text += (f". Accumulation with K={n} here: {row['update_time_s_mean']:.3g} s per update, test accuracy "
                     f"{row['test_accuracy']:.1f}%, final loss {row['final_train_loss']:.3f}")
        out.append(text + ".")
    return out


def check_sentence(ddp: pd.DataFrame, bench: pd.DataFrame, runs: pd.DataFrame, series: pd.DataFrame) -> list[str]:
    """The model's prediction for each DDP run, beside what it measured (95% intervals)."""
    rows = check_rows(ddp, runs[runs["part"] == "micro"], series, bench, cores=os.cpu_count())
    if not rows:
        return ["No DDP run here has per-rank times and a micro run of its device and threads to calibrate on, so "
                "none is checked against the model (gradacc commmodel does it where they exist)."]
    links = sorted({r["link"] for r in rows})
    return ["Predicted against measured (compute and step from this setting's micro runs, times the cores' "
            "sharing where CPU workers outnumber the cores; the wait from each run's per-rank compute times; the "
            f"all-reduce from {'; '.join(links)}): " + "; ".join(
                f"N={r['workers']}{' straggler ' + format(r['straggle_ms'], 'g') + ' ms' if r['straggle_ms'] else ''}:"
                f" {r['measured_update_s'][0]:.3g} ± {r['measured_update_s'][1]:.2g} s measured, "
                f"{r['predicted_update_s'][0]:.3g} ± {r['predicted_update_s'][1]:.2g} s predicted "
                f"({r['error'] * 100:+.0f}%)" for r in rows) + " (95% intervals)."]


def part4_numbers(runs: pd.DataFrame, table: pd.DataFrame, series: pd.DataFrame, ddp: pd.DataFrame) -> list[str]:
    """Part 4 in sentences: what accumulation captures and misses, the model, then the real DDP runs (`ddp`:
    matching_ddp's frame, the DDP runs of this setting and the all-reduce benchmarks of its device)."""
    out = intro_sentences(table, runs) + model_sentences(runs, series)
    part = ddp["part"] if "part" in ddp else pd.Series(DDP, index=ddp.index)
    bench, ddp = ddp[part == ALLREDUCE], ddp[part != ALLREDUCE]
    out += ddp_sentences(ddp, table) + check_sentence(ddp, bench, runs, series) if len(ddp) else [
        "No real DDP runs in this setting (`gradacc ddp --workers N` adds them)."]
    return out
