"""The study's discussion (Parts 1-4) as sentences, every claim computed from the measured table."""
from __future__ import annotations

import pandas as pd

from gradacc.analysis.compare import Section, curves
from gradacc.analysis.report.claims import RESOLVED, claim_sentences, steps, trend
from gradacc.analysis.report.noise import noise_sentences
from gradacc.analysis.report.part4 import part4_numbers
from gradacc.analysis.text import short
from gradacc.analysis.uncertainty import TYPICAL_ACCURACY_SD

TRACK_PCT = 15.0  # an update time within this share of 'K x micro + step' is said to track it
NOTE_PCT = 2.0  # a mean gap to 'K x micro + step' below this is not worth explaining
ACCURACY_SD_SOURCE = "the middle of the stds of 1.1-2.9 points between two seeds on an H100, docs/results.md"


def _pct(value: float, sign: bool = True) -> str:
    """A percentage with one decimal below 10 (a 0.4% gap is not '0%'), none above."""
    text = f"{value:+.1f}" if sign else f"{value:.1f}"
    return (text if abs(value) < 10 else text.split(".")[0]) + "%"


def _percent(value: float) -> str:
    return f"{value:.1f}%"


def part1(table: pd.DataFrame) -> list[str]:
    rows = table[table["micro_iter_ms_mean"].notna()]
    if rows.empty:
        return ["No micro runs: Part 1 was not measured in this setting."]
    ms = rows["micro_iter_ms_mean"].tolist()
    ks = rows["k"].astype(int).tolist()
    mean = sum(ms) / len(ms)
    noise = (rows["micro_iter_ms_std"] / rows["micro_iter_ms_mean"]).mean() * 100
    within = [f"Within a run the timed micro-iterations vary with a std of {noise:.1f}% of their mean "
              "(averaged over runs)."] if pd.notna(noise) else []
    if len(ms) == 1:
        return [f"Only K={ks[0]} was measured: {short(ms[0])} ms per micro-iteration; no spread across K to judge."] \
            + within
    spread = (max(ms) - min(ms)) / mean * 100
    adding = f"{(1 - 1 / ks[0]) * 100:.0f}% at K={ks[0]} to {(1 - 1 / ks[-1]) * 100:.0f}% at K={ks[-1]}"
    facts = (f"The micro-iteration time spans {short(min(ms))}-{short(max(ms))} ms over K={ks[0]}..{ks[-1]}, "
             f"{spread:.1f}% of its mean ({short(mean)} ms). A micro-iteration is the same forward and backward pass "
             "over one micro-batch for every K; the one K-dependent piece inside the timer is that a backward after "
             f"the first of an update adds into the gradients instead of storing them ({adding} of "
             "micro-iterations).")
    shape = trend(rows, "micro_iter_ms_mean", "micro_n")
    why = {"flat": ["That is what the protocol predicts: K only sets how often the optimizer steps."],
           "rises": ["These runs cannot separate the cost of adding into the gradients from the conditions of "
                     "measurement (clocks, memory state, other load)."]}.get(shape, [])
    return [facts] + within + claim_sentences(rows, "micro_iter_ms_mean", "micro-iteration time", "micro_n", "run",
                                              fmt=lambda v: f"{short(v)} ms", diff_unit=" ms") + why


def _per_k(rows: pd.DataFrame, counts: pd.Series) -> str:
    """'2 per K', or 'K=2: 1, K=4: 2' where the counts differ."""
    values = [int(v) for v in counts]
    if len(set(values)) == 1:
        return f"{values[0]} per K"
    return ", ".join(f"K={int(k)}: {v}" for k, v in zip(rows["k"], values))


def _faster_parts(device_type: str | None) -> str:
    """Why an update can take less than K micro-iterations and a step timed alone, by what the timers do here."""
    if device_type == "cuda":
        return ("On average the update is faster than its parts timed alone: the micro-iteration timer "
                "synchronises the device at both ends of every micro-batch, a whole update only once.")
    return (f"On average the update is faster than its parts timed alone. On this {device_type or 'unknown'} "
            "device no timer synchronises anything (the work runs in the host's order), so these runs do not say "
            "why: the micro runs and the runs that timed the updates ran at different times, beside whatever else the "
            "machine ran.")


def part2(table: pd.DataFrame, device_type: str | None = None) -> list[str]:
    rows = table[table["throughput_img_s"].notna()]
    if rows.empty:
        return ["No update runs: Part 2 was not measured in this setting."]
    first, last = rows.iloc[0], rows.iloc[-1]
    ratio = last["throughput_img_s"] / first["throughput_img_s"]
    sources = {str(s) for s in rows["update_source"].dropna()} if "update_source" in rows else {"update"}
    out = [{"update": "These figures come from update runs.",
            "converge": "These figures come from the converge runs, which time each of their updates whole "
                        "(the same updates an update run of the same seed makes): no separate pass over the data."
            }.get(next(iter(sources)), "") if len(sources) == 1 else
           "Update runs give these figures where they exist; converge runs, which time the same updates, the rest."]
    together = rows["converge_n"] - rows["update_n"]
    if sources == {"converge"} and together.max() > 0:  # seeds trained together shared the device: no timings
        out.append(f"Converge runs trained together with other seeds log no timings ({_per_k(rows, together)}); "
                   f"these figures come from the runs trained alone ({_per_k(rows, rows['update_n'])}).")
    if len(rows) > 1:
        out.append(f"Throughput at K={int(last.k)} is {ratio:.2f}x that of K={int(first.k)} "
                   f"({short(last.throughput_img_s)} vs {short(first.throughput_img_s)} images/s).")
        out += claim_sentences(rows, "throughput_img_s", "throughput", "update_n", "run",
                               fmt=lambda v: f"{short(v)} images/s", diff_unit=" images/s")
    else:
        out.append(f"Only K={int(first.k)} was measured: {short(first.throughput_img_s)} images/s.")
    both = rows[rows["model_gap_pct"].notna()]
    if both.empty:
        return out + ["Without micro runs for these K, the update time cannot be set beside K x micro-iteration + "
                      "optimizer step."]
    gaps = ", ".join(f"K={int(r.k)} {_pct(r.model_gap_pct)}" for r in both.itertuples())
    worst = both.loc[both["model_gap_pct"].abs().idxmax()]
    if abs(worst.model_gap_pct) <= TRACK_PCT:
        out.append(f"The update time tracks K x micro-iteration + optimizer step within "
                   f"{_pct(abs(worst.model_gap_pct), sign=False)} at every K ({gaps}; tracks means within "
                   f"{TRACK_PCT:g}%).")
    else:
        out.append(f"The update time departs from K x micro-iteration + optimizer step by up to "
                   f"{_pct(abs(worst.model_gap_pct), sign=False)} (at K={int(worst.k)}; {gaps}).")
    mean_gap = both["model_gap_pct"].mean()
    if abs(mean_gap) < NOTE_PCT and (both["model_gap_pct"].abs() < NOTE_PCT).all():
        out.append(f"On average the two agree within {_pct(abs(mean_gap), sign=False)}.")
    elif (both["model_gap_pct"] > 0).any() and (both["model_gap_pct"] < 0).any():
        out.append("The gap changes sign across K: these runs show no systematic difference between a whole update "
                   "and its parts timed alone.")
    elif mean_gap > 0:
        out.append("On average the update is slower than its parts: the update timer also holds the K batch "
                   "fetches and augmentations and the host work between micro-iterations, which the "
                   "micro-iteration timer leaves out.")
    elif mean_gap < 0:
        out.append(_faster_parts(device_type))
    steps = both[both["opt_step_ms_mean"].notna()]
    if len(steps):
        share = steps["opt_step_ms_mean"] / (steps["model_update_time_s"] * 1e3) * 100
        out.append(f"The optimizer step takes {short(steps['opt_step_ms_mean'].mean())} ms: {share.iloc[0]:.1f}% of "
                   f"a K={int(steps.iloc[0].k)} update and {share.iloc[-1]:.1f}% of a K={int(steps.iloc[-1].k)} "
                   "update, the part of the cost that accumulation spreads over K micro-batches.")
    return out


def lr_words(runs: pd.DataFrame, ks: list[int]) -> str:
    """How these runs set the lr across K, read from their params ('the lr held at 0.1 for every K', or scaled)."""
    lrs = sorted({float(v) for v in runs.get("lr", pd.Series(dtype=float)).dropna()})
    scaling = {str(v) for v in runs.get("lr_scaling", pd.Series(dtype=object)).dropna()}
    if len(lrs) != 1:
        return "the lr as each run logged it" if lrs else "the lr (not logged)"
    if scaling == {"linear"}:
        warm = runs.get("warmup_epochs", pd.Series(dtype=float)).dropna()
        ramp = f", after a warm-up of {int(warm.max())} epoch(s)" if len(warm) and warm.max() > 0 else ""
        return (f"the lr scaled linearly with K ({lrs[0]:g} x K: {lrs[0] * ks[0]:g} at K={ks[0]} to "
                f"{lrs[0] * ks[-1]:g} at K={ks[-1]}{ramp})")
    return f"the lr held at {lrs[0]:g} for every K" if scaling <= {"none"} else "the lr as each run logged it"


def _expectation(rows: pd.DataFrame, lr: str | None, images: str) -> list[str]:
    """The protocol's expectation (held lr: larger K ends higher in loss, lower in accuracy) and whether the
    intervals resolve it, depart from it, or neither; nothing with one seed, nor where the lr scales with K."""
    if (rows["converge_n"] < 2).all():
        return []
    lr = lr or "the lr held the same for every K"
    if "held" not in lr:
        return [f"These runs train with {lr}: larger batches take larger steps, so the plain expectation of a held "
                "lr (higher loss and lower accuracy at larger K) is not theirs to test."]
    text = (f"With {lr}, K times larger batches take K times fewer steps of the same size{images}: the plain "
            "expectation is higher loss and lower accuracy at larger K.")
    against = [("test accuracy", s) for s in steps(rows, "test_accuracy", "converge_n", every_pair=True)
               if s.verdict == RESOLVED and s.diff > 0] + [
        ("final training loss", s) for s in steps(rows, "final_train_loss", "converge_n", every_pair=True)
        if s.verdict == RESOLVED and s.diff < 0]
    if against:
        said = [f"the {metric} {sense} " + ", ".join(f"at K={s.b} than at K={s.a}" for label, s in against
                                                    if label == metric) for metric, sense in
                (("test accuracy", "higher"), ("final training loss", "lower"))
                if any(label == metric for label, _s in against)]
        return [text + " These runs depart from it, resolved: " + "; ".join(said) + "."]
    if trend(rows, "test_accuracy", "converge_n") == "falls" and trend(rows, "final_train_loss",
                                                                      "converge_n") == "rises":
        return [text + " These runs resolve it: every step of both goes that way."]
    return [text + " These runs neither resolve it nor depart from it resolvably."]


def part3(table: pd.DataFrame, epoch_curve: pd.DataFrame, images_per_run: int | None,
          lr: str | None = None) -> list[str]:
    rows = table[table["test_accuracy"].notna() & table["final_train_loss"].notna()]
    if rows.empty:
        return ["No converge runs: Part 3 was not measured in this setting."]
    if len(rows) == 1:
        r = rows.iloc[0]
        return [f"Only K={int(r.k)} was trained: final loss {short(r.final_train_loss)}, "
                f"test accuracy {r.test_accuracy:.1f}%."]
    images = f" over the same {images_per_run:,} images" if images_per_run else ""
    out = claim_sentences(rows, "final_train_loss", "final training loss", "converge_n", "seed")
    out += claim_sentences(rows, "test_accuracy", "test accuracy", "converge_n", "seed", fmt=_percent,
                           diff_unit=" points", typical_sd=(TYPICAL_ACCURACY_SD, ACCURACY_SD_SOURCE))
    out += _expectation(rows, lr, images)
    if not epoch_curve.empty:
        ks = sorted(epoch_curve["k"].unique())
        at = {(k, s): m for k, s, m in epoch_curve[["k", "step", "mean"]].itertuples(index=False)}
        first, last = int(epoch_curve["step"].min()), int(epoch_curve["step"].max())
        if (ks[0], first) in at and (ks[-1], first) in at and first != last:
            out.append(f"After epoch {first} the loss is {short(at[ks[0], first])} at K={ks[0]} and "
                       f"{short(at[ks[-1], first])} at K={ks[-1]}; after epoch {last}, "
                       f"{short(at.get((ks[0], last), float('nan')))} and "
                       f"{short(at.get((ks[-1], last), float('nan')))}.")
    return out


def _marked(sentences: list[str], smoke: bool) -> list[str]:
    """In a smoke study every claim says so: the first of a part says why (the tiny subset says nothing about K),
    the others carry the mark."""
    if not smoke or not sentences:
        return sentences
    first, *rest = sentences
    return ["Smoke runs (tiny data): nothing here says anything about K. " + first] + [
        f"Smoke runs: {_lowered(s)}" for s in rest]


def _lowered(sentence: str) -> str:
    """The sentence with its first word in lower case where it is a plain word ('Throughput'), not a name or a
    symbol ('BatchNorm', 'K=1:')."""
    word = sentence.split(" ", 1)[0].rstrip(",:;.").replace("-", "")
    plain = word.isalpha() and word[1:].islower()
    return sentence[0].lower() + sentence[1:] if plain else sentence


def discussion(section: Section, series: pd.DataFrame) -> dict[str, list[str]]:
    """Parts 1-4 as sentences, each computed from the section's table and loss curves."""
    runs = section.runs
    sizes = (runs["epochs"] * runs["train_size"]).dropna()
    smoke = bool(section.setting.get("smoke"))
    return {
        "Part 1: micro-iteration time": _marked(part1(section.table), smoke),
        "Part 2: update time and throughput": _marked(part2(section.table, section.setting.get("device_type")),
                                                      smoke),
        "Part 3: convergence under a fixed epoch budget": _marked(part3(
            section.table, curves(series, runs, "train_loss"), int(sizes.iloc[0]) if len(sizes) else None,
            lr_words(runs[runs["part"] == "converge"], sorted(int(k) for k in section.table["k"]))), smoke),
        "Part 3, why: the gradient noise scale": _marked(noise_sentences(section, series), smoke),
        "Part 4: what real synchronous SGD adds": _marked(part4_numbers(runs, section.table, series, section.ddp),
                                                           smoke),
    }
