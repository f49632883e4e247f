"""What the repeats resolve across K, as sentences: each step between K values judged from the 95% intervals
(resolved, not resolved, identical, without an interval, or with a zero-width one), the trend those verdicts
allow, and how many seeds a power calculation asks for. Nothing here compares means with a fixed threshold."""
from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import pandas as pd

from gradacc.analysis.text import short
from gradacc.analysis.uncertainty import MAX_SEEDS, POWER, resolved, seeds_to_resolve

# Said once per report, where the intervals are read (gradacc/analysis/report/html.py).
MEANING = ("How the intervals are read: where two K values' 95% intervals do not overlap, their difference is "
           "called resolved, a conservative test (two equal intervals that do not overlap happen by chance about "
           "0.5% of the time, not 5%); where they overlap, the values are not shown equal, only not told apart by "
           "these repeats.")

IDENTICAL, NO_INTERVAL, ZERO, RESOLVED, OPEN = "identical", "no interval", "zero spread", "resolved", "not resolved"


@dataclass(frozen=True)
class Step:
    """Two K values of one metric and what their intervals say about the difference (b minus a)."""

    a: int
    b: int
    diff: float
    verdict: str
    sd: float  # the two K's stds pooled (NaN without two intervals)


def _step(ra, rb, metric: str, n_col: str) -> Step:
    ma, mb = float(getattr(ra, metric)), float(getattr(rb, metric))
    ca, cb = float(getattr(ra, f"{metric}_ci")), float(getattr(rb, f"{metric}_ci"))
    sa, sb = (float(getattr(r, f"{metric}_sd", float("nan"))) for r in (ra, rb))
    sd = math.sqrt((sa ** 2 + sb ** 2) / 2)
    if math.isclose(ma, mb, rel_tol=1e-12, abs_tol=1e-12):
        verdict = IDENTICAL
    elif min(int(getattr(ra, n_col)), int(getattr(rb, n_col))) < 2 or ca != ca or cb != cb:
        verdict = NO_INTERVAL
    elif ca == 0 or cb == 0:  # every repeat gave the same value: the interval measures no spread
        verdict = ZERO
    else:
        verdict = RESOLVED if resolved(ma, ca, mb, cb) else OPEN
    return Step(int(ra.k), int(rb.k), mb - ma, verdict, sd)


def steps(rows: pd.DataFrame, metric: str, n_col: str, every_pair: bool = False) -> list[Step]:
    """The steps between neighbouring K values (rows sorted by K), or between every pair of them."""
    items = list(rows.itertuples())
    if every_pair:
        return [_step(a, b, metric, n_col) for i, a in enumerate(items) for b in items[i + 1:]]
    return [_step(a, b, metric, n_col) for a, b in zip(items, items[1:])]


def trend(rows: pd.DataFrame, metric: str, n_col: str) -> str | None:
    """'rises' or 'falls' where every neighbouring step is resolved the same way; 'flat' where no two K values
    (of all pairs) are resolved apart and each has a non-zero interval; otherwise None: the intervals allow no
    claim about the shape across K."""
    near = steps(rows, metric, n_col)
    if not near:
        return None
    if all(s.verdict == RESOLVED for s in near) and len({s.diff > 0 for s in near}) == 1:
        return "rises" if near[0].diff > 0 else "falls"
    if all(s.verdict in (OPEN, IDENTICAL) for s in steps(rows, metric, n_col, every_pair=True)) \
            and (rows[f"{metric}_ci"] > 0).all():
        return "flat"
    return None


def _counts(rows: pd.DataFrame, n_col: str, repeat: str) -> str:
    values = [int(v) for v in rows[n_col]]
    if len(set(values)) == 1:
        return f"{values[0]} {repeat}s per K"
    return f"{repeat}s per K " + ", ".join(f"K={int(k)}: {v}" for k, v in zip(rows["k"], values))


def _ks(found: list[Step]) -> str:
    return ", ".join(f"K={s.a}-{s.b}" for s in found)


def _identical(found: list[Step], rows: pd.DataFrame, metric: str, fmt) -> list[str]:
    """One sentence per run of neighbouring K values with the same value ('K=1, K=2 and K=4 are identical')."""
    value = dict(zip(rows["k"].astype(int), rows[metric]))
    chains: list[list[int]] = []
    for s in found:
        if chains and chains[-1][-1] == s.a:
            chains[-1].append(s.b)
        else:
            chains.append([s.a, s.b])
    return [f"{', '.join(f'K={k}' for k in chain[:-1])} and K={chain[-1]} are identical ({fmt(value[chain[0]])}): "
            "no difference to resolve." for chain in chains]


def _need(need: int | None, repeat: str) -> str:
    count = f"{need} {repeat}s per K" if need else f"more than {MAX_SEEDS} {repeat}s per K"
    return f"{count} would resolve it in {POWER:.0%} of studies (a power calculation, simulated)"


def claim_sentences(rows: pd.DataFrame, metric: str, label: str, n_col: str, repeat: str = "seed",
                    fmt: Callable[[float], str] = short, diff_unit: str = "",
                    typical_sd: tuple[float, str] | None = None) -> list[str]:
    """What `rows` (one per K, sorted, with `<metric>`, `<metric>_ci`, `<metric>_sd` and the count `n_col`) resolve
    about `metric` (called `label`; a repeat is a `repeat`). typical_sd: (std, where it comes from) for saying how
    many seeds a one-seed study would need."""
    near = steps(rows, metric, n_col)
    if not near:
        return []
    ns = sorted({int(n) for n in rows[n_col]})
    same = [s for s in near if s.verdict == IDENTICAL]
    if ns == [1]:
        values = ", ".join(f"K={int(r.k)} {fmt(getattr(r, metric))}" for r in rows.itertuples())
        out = [f"One {repeat} per K ({label}: {values}): one {repeat} orders nothing, since with no "
               f"{repeat}-to-{repeat} spread measured no difference between K can be told from noise."]
        out += _identical(same, rows, metric, fmt)
        largest = max(near, key=lambda s: abs(s.diff))
        if typical_sd and largest.diff:
            sd, source = typical_sd
            need = seeds_to_resolve(largest.diff, sd)
            step = f"K={largest.a} to K={largest.b} ({short(abs(largest.diff))}{diff_unit})"
            out.append(f"If the largest step, {step}, were the true difference and the seed-to-seed std were "
                       f"{sd:g}{diff_unit} at every K ({source}; seeds normal), {_need(need, repeat)}.")
        return out
    by = {v: [s for s in near if s.verdict == v] for v in (RESOLVED, OPEN, NO_INTERVAL, ZERO)}
    done = ", ".join(f"K={s.a}-{s.b} ({'higher' if s.diff > 0 else 'lower'} at K={s.b})" for s in by[RESOLVED])
    clauses = ([f"resolved {done}"] if done else []) + ([f"not resolved {_ks(by[OPEN])}"] if by[OPEN] else [])
    out = [f"{label[0].upper()}{label[1:]}, {_counts(rows, n_col, repeat)}: "
           + ("; ".join(clauses) if clauses else "no step to judge from the intervals") + "."]
    single = [int(r.k) for r in rows.itertuples() if int(getattr(r, n_col)) < 2]
    if by[NO_INTERVAL]:
        out.append(f"K={', '.join(map(str, single))} {'has' if len(single) == 1 else 'have'} one {repeat} and so "
                   f"no interval: {_ks(by[NO_INTERVAL])} not judged.")
    if by[ZERO]:
        flat = [int(r.k) for r in rows.itertuples() if getattr(r, f"{metric}_ci") == 0]
        out.append(f"At K={', '.join(map(str, flat))} every {repeat} gave the same value, a zero-width interval that "
                   f"measures no spread: {_ks(by[ZERO])} not judged.")
    out += _identical(same, rows, metric, fmt)
    shape = trend(rows, metric, n_col)
    if shape in ("rises", "falls"):
        out.append(f"Every step is resolved: the {label} {shape} with K.")
    elif shape == "flat":
        out.append(f"No two K values are resolved apart: the {label} is flat within these intervals.")
    elif by[RESOLVED] and len(near) > 1:
        out.append(f"Not every step is resolved: no trend of the {label} across K is claimed.")
    elif by[OPEN]:
        out.append(f"No step is resolved: no trend of the {label} across K is claimed.")
    if by[OPEN]:
        worst = max(by[OPEN], key=lambda s: abs(s.diff))
        need = seeds_to_resolve(worst.diff, worst.sd)
        out.append(f"If its largest unresolved step, K={worst.a}-{worst.b} ({short(abs(worst.diff))}{diff_unit}), "
                   f"were the true difference and the std were the measured {short(worst.sd)}{diff_unit} at both K "
                   f"({repeat}s normal), {_need(need, repeat)}.")
    return out
