"""Which runs a comparison takes: the settings that are never averaged together, the FINISHED runs of the
measuring parts, the newest run where one seed has several, and a line that names the runs left out."""
from __future__ import annotations

import math

import numpy as np
import pandas as pd

from gradacc.analysis.text import short
from gradacc.names import PARTS

# Everything of a configuration but part, K and seed (and values derived from K): runs that differ in any of
# these are never averaged together. The environment's versions are listed in the report, not grouped on.
CONFIG_KEYS = ("variant", "smoke", "cuda_graphs", "tf32_conv", "device_type", "device_name", "torch_threads", "loader",
               "epochs", "micro_batch", "train_size", "test_size", "lr", "momentum", "weight_decay", "eval_batch",
               "warmup_micro_iters", "timed_micro_iters")


def plain(value):
    """A hashable, comparable stand-in for a key value (NA -> None, numpy scalars -> Python)."""
    if value is None or (isinstance(value, float) and math.isnan(value)) or value is pd.NA:
        return None
    return value.item() if isinstance(value, np.generic) else value


def setting_of(row) -> tuple:
    return tuple(plain(row.get(key)) for key in CONFIG_KEYS)


def _finished(runs: pd.DataFrame) -> pd.DataFrame:
    """FINISHED runs of the measuring parts with a K, each with its `setting`, newest first."""
    ok = runs["part"].isin(PARTS) & (runs["status"] == "FINISHED") & runs["k"].notna()
    chosen = runs[ok].copy()
    for key in CONFIG_KEYS:
        if key not in chosen.columns:
            chosen[key] = None
    chosen["setting"] = [setting_of(row) for row in chosen[list(CONFIG_KEYS)].to_dict("records")]
    chosen["k"] = chosen["k"].astype(int)
    return chosen.sort_values("start_time", ascending=False, kind="stable")


def select_runs(runs: pd.DataFrame) -> pd.DataFrame:
    """FINISHED runs of the measuring parts with a K; where a seed repeats in a group, the newest run."""
    chosen = _finished(runs).drop_duplicates(["setting", "part", "k", "seed"], keep="first")
    return chosen.sort_values(["k", "part", "seed"], kind="stable").reset_index(drop=True)


# What a repeated run of one seed is shown by, where compare takes one of several.
HEADLINE = {"micro": ("micro_iter_ms_mean", " ms"), "update": ("update_time_s_mean", " s"),
            "converge": ("test_accuracy", "%")}


def repeat_lines(runs: pd.DataFrame) -> dict[tuple, list[str]]:
    """Per setting, a line for each part, K and seed with several finished runs: which one the comparison takes
    (the newest) and what the others measured, so that a left-out run is seen rather than silently dropped."""
    lines: dict[tuple, list[str]] = {}
    finished = _finished(runs) if len(runs) else runs
    if not len(finished):
        return lines
    for (setting, part, k, seed), group in finished.groupby(["setting", "part", "k", "seed"], sort=True,
                                                            dropna=False):
        if len(group) < 2:
            continue
        metric, unit = HEADLINE[part]
        values = group[metric] if metric in group.columns else pd.Series([float("nan")] * len(group))
        shown = [f"{short(v)}{unit}" if pd.notna(v) else "-" for v in values]
        seed_text = "" if pd.isna(seed) else f", seed {int(seed)}"
        lines.setdefault(setting, []).append(
            f"{part} K={int(k)}{seed_text}: {len(group)} finished runs ({', '.join(shown)}, newest first); the "
            f"newest, started {group['start_time'].iloc[0]:%Y-%m-%d %H:%M} UTC, is taken (the latest code), not "
            "their mean: the intervals are over seeds, one run each")
    return lines
