"""The report's noise-scale discussion (why larger batches converge slower) and the variants set beside the
protocol; every sentence computed from the runs' numbers."""
from __future__ import annotations

import math

import numpy as np
import pandas as pd

from gradacc.analysis.compare import Section, curves
from gradacc.analysis.text import esc, html_table, short
from gradacc.analysis.uncertainty import t_975
from gradacc.core.noise import EMA_DECAY
from gradacc.names import NOISE_UNAVAILABLE_K1

HOLD_PCT = 25.0  # measured step ratios within this share of 1 + B_noise/B's are said to follow the prediction
SMOOTH_SHARE = 10  # steps-to-loss uses a centred running mean over 1/10 of each K's updates
SAME_ENV = ("smoke", "device_type", "device_name", "loader", "torch_threads")  # what a variant's partner shares


def b_noise_of(series: pd.DataFrame, runs: pd.DataFrame) -> float | None:
    """The section's B_noise estimate: the mean of its per-epoch B_simple over every K and epoch."""
    epochs = curves(series, runs, "noise_scale_simple_epoch")
    return float(epochs["mean"].mean()) if len(epochs) else None


def steps_to_loss(update_curve: pd.DataFrame) -> tuple[float, dict[int, int]]:
    """The lowest smoothed loss that every K reaches, and the first update (1-based) at which each K reaches it.

    Centred running means: a trailing one would lag by half its window, which is K times shorter at K than at 1."""
    smoothed = {}
    for k, rows in update_curve.groupby("k"):
        window = max(1, len(rows) // SMOOTH_SHARE)
        smoothed[int(k)] = rows["mean"].rolling(window, center=True, min_periods=1).mean().to_numpy()
    target = max(np.nanmin(values) for values in smoothed.values())
    return target, {k: int(np.argmax(values <= target)) + 1 for k, values in smoothed.items()}


def prediction_test(update_curve: pd.DataFrame, b_noise: float, micro_batch: int) -> list[str]:
    """Steps to a common loss per K against S = S_min (1 + B_noise / B), relative to the smallest K."""
    if update_curve["k"].nunique() < 2:
        return ["One K only: no steps-to-loss ratio to test the 1 + B_noise/B prediction with."]
    target, steps = steps_to_loss(update_curve)
    ks = sorted(steps)
    if any(steps[k] == 1 for k in ks):  # some K never got below where it started: nothing to time
        return [f"Inconclusive: the lowest running-mean loss every K reaches ({short(target)}) is already reached at "
                "the first update by K=" + ",".join(str(k) for k in ks if steps[k] == 1) + " (its loss never fell "
                "below its start), so the updates needed cannot be compared; the runs are too short or diverged."]
    base = ks[0]

    def model(k):
        return 1 + b_noise / (micro_batch * k)

    measured = {k: steps[k] / steps[base] for k in ks}
    predicted = {k: model(k) / model(base) for k in ks}
    off = {k: (measured[k] / predicted[k] - 1) * 100 for k in ks[1:]}
    worst = max(off, key=lambda k: abs(off[k]))
    verdict = (f"The prediction holds: every K is within {HOLD_PCT:g}% of it (largest departure {off[worst]:+.0f}% "
               f"at K={worst})." if abs(off[worst]) <= HOLD_PCT else
               f"The prediction does not hold: K={worst} departs from it by {off[worst]:+.0f}% (more than "
               f"{HOLD_PCT:g}%; {'more' if off[worst] > 0 else 'fewer'} steps than predicted).")
    return [f"Updates to reach a training loss of {short(target)} (the lowest running mean over 1/{SMOOTH_SHARE} of "
            f"its updates that every K reaches): " + ", ".join(f"K={k} {steps[k]}" for k in ks) + ". "
            f"Relative to K={base} that is " + ", ".join(f"{measured[k]:.2f}" for k in ks[1:]) + " for K=" +
            ",".join(map(str, ks[1:])) + f"; S = S_min (1 + B_noise/B) with B_noise = {short(b_noise)} predicts "
            + ", ".join(f"{predicted[k]:.2f}" for k in ks[1:]) + " (perfect scaling: " +
            ", ".join(f"{base / k:.2f}" for k in ks[1:]) + ", no gain: 1.00).", verdict]


def noise_sentences(section: Section, series: pd.DataFrame) -> list[str]:
    """Part 3's why: B_simple per K and epoch, the effective batches against it, the paper's prediction."""
    runs = section.runs[section.runs["part"] == "converge"]
    if runs.empty:
        return ["No converge runs: no gradient noise scale in this setting."]
    epochs = curves(series, runs, "noise_scale_simple_epoch")
    micro = int(runs["micro_batch"].dropna().iloc[0]) if runs["micro_batch"].notna().any() else 64
    out = []
    if epochs.empty:
        out.append("No converge run of this setting measured the gradient noise scale (it needs K >= 2 and "
                   "--noise-scale auto or on; runs made with it off, or before it existed, have none).")
    else:
        per_k = "; ".join(f"K={k}: " + ", ".join(short(v) for v in rows["mean"]) for k, rows in epochs.groupby("k"))
        by_epoch = epochs.groupby("step")["mean"].mean()
        first, last = by_epoch.index.min(), by_epoch.index.max()
        epochs_said = f"per epoch {first}..{last}" if last > first else f"in epoch {first}"
        out.append(f"The simple gradient noise scale B_simple = tr(Sigma) / |G|^2 (McCandlish et al. 2018, in "
                   f"images), {epochs_said}: {per_k}.")
        b_noise = float(by_epoch.loc[last])
        if last > first:
            sense = "rises" if by_epoch.loc[last] > by_epoch.loc[first] else "falls"
            out.append(f"Averaged over K it {sense} from {short(by_epoch.loc[first])} in epoch {first} to "
                       f"{short(b_noise)} in epoch {last}: as the loss falls, the mean gradient shrinks faster than "
                       "its per-example noise, and larger batches become useful." if sense == "rises" else
                       f"Averaged over K it {sense} from {short(by_epoch.loc[first])} in epoch {first} to "
                       f"{short(b_noise)} in epoch {last}.")
        own = {int(k): float(rows["mean"].iloc[-1]) for k, rows in epochs.groupby("k")}
        marks = ", ".join(f"K={k}: {micro * k} {'<' if micro * k < b else '>='} {short(b)}" for k, b in own.items())
        below = sum(micro * k < b for k, b in own.items())
        where = ("every effective batch lies below its B_simple" if below == len(own) else
                 "no effective batch lies below its B_simple" if below == 0 else
                 f"{below} of {len(own)} effective batches lie below their B_simple")
        batches = (micro, micro * 8)
        out.append(f"Each K's effective batch against its own B_simple of epoch {last}: {marks} ({where}). "
                   "In the paper's model a batch B needs S = S_min (1 + B_noise/B) updates and E = E_min "
                   f"(1 + B/B_noise) images to reach a given loss: with B_noise = {short(b_noise)} (epoch {last}, "
                   f"mean over K), a batch of {batches[1]} needs "
                   f"{(1 + batches[1] / b_noise) / (1 + batches[0] / b_noise):.2f}x the images of a batch of "
                   f"{batches[0]}, so a fixed budget of images leaves the larger K further from the loss a smaller "
                   "K reaches.")
    if (runs["k"] == 1).any():
        out.append(f"K=1: no noise scale ({NOISE_UNAVAILABLE_K1}).")
    out.append("How it is measured: per update, |G_small|^2 is the mean squared norm of the K micro-batch "
               f"gradients (B_small = {micro}, each K times the change of .grad over its backward) and |G_big|^2 "
               f"that of their mean (B_big = {micro}K); the unbiased estimates of |G|^2 and tr(Sigma) of appendix A "
               f"are smoothed over updates by exponential moving averages (decay {EMA_DECAY:g} per update, numerator "
               "and denominator separately); per epoch, the ratio of their means over the epoch. Gradients are those "
               "of the cross-entropy alone (SGD adds the weight decay inside its step, not into .grad), and "
               "BatchNorm couples the 64 images of a micro-batch, so the micro-batch is the smallest unit measured.")
    linear = (runs.get("lr_scaling", pd.Series(dtype=object)) == "linear").any()
    if not linear:
        lrs = sorted({float(v) for v in runs.get("lr", pd.Series(dtype=float)).dropna()})
        held = f"holds the lr at {lrs[0]:g} for every K" if len(lrs) == 1 else "does not scale the lr with K"
        out.append("The 1 + B_noise/B prediction assumes a learning rate tuned for each batch size. This setting "
                   f"{held}, so any ordering of its losses would mostly reflect K times fewer "
                   "steps of the same size, not the noise scale; the linear-scaling variant (--lr-scaling linear) "
                   "is where the prediction applies better, and the report tests it there.")
    elif epochs.empty:
        out.append("The linear-scaling variant without a measured noise scale: no B_noise to test the prediction.")
    else:
        out.append("This setting scales the lr linearly with K (Goyal et al. 2017), closer to the tuned lr the "
                   "prediction assumes; B_noise is taken as the mean of the per-epoch B_simple over every K and "
                   "epoch here.")
        out += prediction_test(curves(series, runs, "train_loss_update"), b_noise_of(series, runs), micro)
    return out


def _partner(section: Section, sections: list[Section]) -> Section | None:
    """What a variant section is set beside, in the same environment: the same variant without its lr scaling
    and warm-up (e.g. 'train=50000' for 'lr=linear,warmup=1,train=50000') if present, else the protocol."""
    variant = section.setting.get("variant") or "protocol"
    base = ",".join(p for p in variant.split(",") if not p.startswith(("lr=", "warmup="))) or "protocol"
    same = [other for other in sections if other is not section and all(
        other.setting.get(key) == section.setting.get(key) for key in SAME_ENV)]
    for wanted in dict.fromkeys((base, "protocol")):
        found = [other for other in same if (other.setting.get("variant") or "protocol") == wanted]
        if found and wanted != variant:
            return found[0]
    return None


def _cell(table: pd.DataFrame, k: int, metric: str, fmt: str) -> str:
    values = table.loc[table["k"] == k, metric] if metric in table.columns else pd.Series(dtype=float)
    return format(float(values.iloc[0]), fmt) if len(values) and pd.notna(values.iloc[0]) else "-"


def _change(gap: float) -> str:
    return f"{'falls' if gap >= 0 else 'rises'} by {abs(gap):.1f} points"


def _accuracy(section: Section) -> dict[int, tuple[float, float, int]]:
    """K -> (mean test accuracy, its std over seeds, seeds) of a section's converge runs."""
    return {int(r.k): (float(r.test_accuracy), float(r.test_accuracy_sd), int(r.converge_n))
            for r in section.table.itertuples() if pd.notna(r.test_accuracy)}


def _gap_verdict(base: dict, variant: dict, low: int, high: int) -> str:
    """Whether the variant's K=low-to-high accuracy gap is resolved apart from the base's: the 95% t interval of
    the difference of the two gaps (four independent means, the fewest seeds' degrees of freedom), or none with
    one seed at any of the four."""
    cells = [base[low], base[high], variant[low], variant[high]]
    change = (base[low][0] - base[high][0]) - (variant[low][0] - variant[high][0])
    if min(n for _m, _sd, n in cells) < 2:
        return "one seed at some of these K, so the gaps carry no interval: whether the variant changes the gap is " \
               "not resolved"
    half = t_975(min(n for _m, _sd, n in cells) - 1) * math.sqrt(sum(sd ** 2 / n for _m, sd, n in cells))
    if abs(change) <= half:
        return f"the two gaps differ by {abs(change):.1f} points, within the 95% interval of that difference " \
               f"(± {half:.1f}): not resolved"
    return (f"the variant {'narrows' if change > 0 else 'widens'} the gap by {abs(change):.1f} points, resolved "
            f"(95% interval ± {half:.1f})")


def variant_sentences(variant: Section, base: Section) -> list[str]:
    """The accuracy gap from the smallest to the largest K that both measured, under the base (the protocol)
    and under the variant, whether the intervals resolve a change of it, and the per-K differences."""
    name = "the protocol" if (base.setting.get("variant") or "protocol") == "protocol" else \
        f"variant {base.setting['variant']}"
    accuracy = {"base": _accuracy(base), "variant": _accuracy(variant)}
    both = sorted(set(accuracy["base"]) & set(accuracy["variant"]))
    out = []
    if len(both) >= 2:
        low, high = both[0], both[-1]
        pg, vg = (accuracy[w][low][0] - accuracy[w][high][0] for w in ("base", "variant"))
        out.append(f"From K={low} to K={high}, test accuracy {_change(pg)} under {name} and {_change(vg)} in the "
                   f"variant: {_gap_verdict(accuracy['base'], accuracy['variant'], low, high)}.")
    if both:
        single = all(accuracy[w][k][2] < 2 for w in accuracy for k in both)
        out.append(f"Variant minus {name}, test accuracy: " + ", ".join(
            f"K={k} {round(accuracy['variant'][k][0] - accuracy['base'][k][0], 1) + 0.0:+.1f}" for k in both)
            + " points" + (" (one seed per K in each: these differences carry no interval)." if single else
                           "; each K's intervals are in the tables of the two settings above."))
    return out


def variants_html(sections: list[Section]) -> str:
    """Each variant section beside the protocol section of the same environment: accuracy, loss, B_simple."""
    parts = []
    for section in sections:
        if section.setting.get("variant") in (None, "protocol"):
            continue
        protocol = _partner(section, sections)  # the protocol, or the variant's own base (same data and epochs)
        if protocol is None:
            continue
        ks = sorted(set(protocol.table["k"]) | set(section.table["k"]))
        beside = protocol.setting.get("variant") or "protocol"
        header = ["K", f"test accuracy % ({beside})", "(variant)", f"final loss ({beside})", "(variant)",
                  f"B_simple last epoch ({beside})", "(variant)"]
        rows = [[str(k)] + [_cell(t, k, m, f) for m, f in (("test_accuracy", ".1f"), ("final_train_loss", ".3f"),
                                                           ("noise_scale_simple_final", ",.0f"))
                            for t in (protocol.table, section.table)] for k in ks]
        parts.append(f"<h3>{esc(section.label)} beside {esc(beside)}</h3>" + html_table(header, rows) + "".join(
            f"<p>{esc(s)}</p>" for s in variant_sentences(section, protocol)))
    return ("<h2 id='variants'>Variants beside the protocol</h2>" + "\n".join(parts)) if parts else ""


def noise_summary_text(sections: list[Section]) -> str:
    """For the terminal: B_simple of the last epoch per K, one line per setting that measured it."""
    lines = []
    for section in sections:
        table = section.table
        if "noise_scale_simple_final" not in table.columns or table["noise_scale_simple_final"].isna().all():
            continue
        rows = table[table["noise_scale_simple_final"].notna()]
        lines.append(f"{section.label}: gradient noise scale B_simple, last epoch (images): " + ", ".join(
            f"K={int(r.k)} {short(r.noise_scale_simple_final)}" for r in rows.itertuples()))
    return "".join(line + "\n" for line in lines)
