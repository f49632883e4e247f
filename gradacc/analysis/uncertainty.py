"""How far the seeds let a comparison go: 95% t intervals of a mean over seeds, whether two K values' difference
is resolved (their intervals do not overlap, a conservative test), and how many seeds would resolve it."""
from __future__ import annotations

import math

# Student's t, two-sided 95% (0.975 quantile), by degrees of freedom; 1.96 beyond the table.
T_975 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306, 9: 2.262, 10: 2.228,
         12: 2.179, 15: 2.131, 20: 2.086, 30: 2.042}
# The seed-to-seed std of the final test accuracy where a setting has one seed: the middle of the 1-3 points
# measured between seeds on the GPU (docs/results.md). Used only to say how many seeds a difference would need.
TYPICAL_ACCURACY_SD = 2.0
MAX_SEEDS = 50


def t_975(dof: int) -> float:
    if dof < 1:
        return float("nan")
    known = [d for d in T_975 if d <= dof]
    return T_975[max(known)] if dof <= 30 else 1.96


def half_width(sd: float, n: int) -> float:
    """The 95% t interval's half-width of a mean of n values with std sd (NaN below two values)."""
    if n < 2 or sd != sd:
        return float("nan")
    return t_975(n - 1) * sd / math.sqrt(n)


def resolved(mean_a: float, half_a: float, mean_b: float, half_b: float) -> bool | None:
    """True where the two 95% intervals do not overlap, False where they do, None without intervals."""
    if half_a != half_a or half_b != half_b:
        return None
    return abs(mean_a - mean_b) > half_a + half_b


def seeds_to_resolve(difference: float, sd: float) -> int | None:
    """The fewest seeds per K whose two intervals (each t * sd / sqrt(n)) would no longer overlap at this
    difference; None if more than MAX_SEEDS (or nothing to resolve)."""
    if not difference or sd != sd or sd <= 0:
        return None
    for n in range(2, MAX_SEEDS + 1):
        if abs(difference) > 2 * half_width(sd, n):
            return n
    return None


def ordering_claim(rows, metric: str, label: str, unit: str, n_col: str, repeat: str = "seed") -> str:
    """One sentence that says whether the neighbouring K values' differences in `metric` (called `label`) are
    resolved by the repeats (`rows`: one per K with `<metric>`, `<metric>_ci` and the run count `n_col`;
    `repeat`: what a repeat is, a seed for training results, a run for timings)."""
    pairs = list(zip(rows.itertuples(), list(rows.itertuples())[1:]))
    if not pairs:
        return ""
    ns = sorted({int(getattr(r, n_col)) for r in rows.itertuples()})
    if ns == [1]:
        diffs = [(abs(getattr(b, metric) - getattr(a, metric)), a, b) for a, b in pairs]
        largest, a, b = max(diffs, key=lambda d: d[0])
        if not largest:
            return ""
        text = (f"One {repeat} per K: no ordering of the {label} within the {repeat}-to-{repeat} spread can "
                f"be claimed from these runs; its largest step, K={int(a.k)} to K={int(b.k)}, is "
                f"{largest:.3g}{unit}.")
        if metric == "test_accuracy":
            need = seeds_to_resolve(largest, TYPICAL_ACCURACY_SD)
            text += (f" With the typical seed-to-seed std of {TYPICAL_ACCURACY_SD:g} points (docs/results.md), "
                     + (f"{need} seeds per K would resolve it." if need else
                        f"more than {MAX_SEEDS} seeds per K would be needed to resolve it."))
        return text
    done, open_ = [], []
    for a, b in pairs:
        verdict = resolved(getattr(a, metric), getattr(a, f"{metric}_ci"), getattr(b, metric),
                           getattr(b, f"{metric}_ci"))
        (done if verdict else open_).append(f"K={int(a.k)}-{int(b.k)}")
    seeds = f"{ns[0]}" if len(ns) == 1 else f"{ns[0]}-{ns[-1]}"
    return (f"{label[0].upper()}{label[1:]}, {seeds} {repeat}s per K (a step is resolved where the two 95% "
            f"t intervals do not overlap): resolved {', '.join(done) or 'none'}; within the spread "
            f"{', '.join(open_) or 'none'}.")
