"""The critical-batch part in the comparison: the `critical` children of the experiment (or study), one per K and
seed with its updates to a target, grouped by target and setting (a fit never mixes two targets, devices or epoch
caps), each group's fit (analysis/critical.py), its sentence, a table per K and its two plots' inputs.

The fit is computed again from the children rather than read from a parent run: in an experiment-wide comparison
the children of several `critical` invocations (one K each, or reused ones) form one curve that no single parent
fitted. Where one seed of a K has several finished children, the newest is taken, as compare does for the parts."""
from __future__ import annotations

import base64
import re
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from gradacc.analysis.compare import describe_setting
from gradacc.analysis.critical import Fit, Point, fit, noise_interval, regime, sentence
from gradacc.analysis.selection import CONFIG_KEYS, setting_of
from gradacc.analysis.text import esc, html_table
from gradacc.names import CRITICAL, DEFAULT_VARIANT

NEEDED = ("k", "seed", "effective_batch", "target", "target_reached", "updates_to_target", "images_to_target")


@dataclass
class CriticalGroup:
    """The children of one target in one setting, and what the report says of them."""

    target: float
    setting: dict
    runs: pd.DataFrame  # newest child per (K, seed), sorted by K and seed
    points: list[Point]
    fit: Fit | None
    sentence: str
    label: str = ""
    slug: str = ""
    plots: dict[str, Path] = field(default_factory=dict)  # filled by whoever writes them

    @property
    def title(self) -> str:
        return f"Critical batch: target loss {self.target:g}" + (" (smoke)" if self.setting.get("smoke") else "")


def _children(runs: pd.DataFrame) -> pd.DataFrame:
    """FINISHED critical children that logged a K and their updates to target (the parents log neither)."""
    if not len(runs) or any(column not in runs.columns for column in NEEDED):
        return runs.iloc[0:0]
    ok = (runs["part"] == CRITICAL) & (runs["status"] == "FINISHED")
    for column in NEEDED:
        ok &= runs[column].notna()
    return runs[ok]


def _without_k(variant) -> str:
    """The variant without its K: a K outside the protocol's list is tagged as a variant ('k=32,epochs=6'), but
    the critical part's K are what its fit runs over, not settings to keep apart."""
    rest = [p for p in str(variant or DEFAULT_VARIANT).split(",") if p and not re.fullmatch(r"k=\d+", p)]
    return ",".join(rest) or DEFAULT_VARIANT


def critical_groups(runs: pd.DataFrame) -> list[CriticalGroup]:
    """One group per (target, setting) of the runs' critical children, the most children first; [] without any."""
    children = _children(runs).copy()
    if not len(children):
        return []
    children["variant"] = children.get("variant", pd.Series(DEFAULT_VARIANT, index=children.index)).map(_without_k)
    for key in CONFIG_KEYS:
        if key not in children.columns:
            children[key] = None
    children["setting"] = [setting_of(row) for row in children[list(CONFIG_KEYS)].to_dict("records")]
    children = children.sort_values("start_time", ascending=False, kind="stable")
    children = children.drop_duplicates(["target", "setting", "k", "seed"], keep="first")
    groups = []
    for (target, setting), chosen in children.groupby(["target", "setting"], sort=False):
        chosen = chosen.sort_values(["k", "seed"], kind="stable").reset_index(drop=True)
        points = [Point(int(r.effective_batch), float(r.updates_to_target), bool(r.target_reached), int(r.seed))
                  for r in chosen.itertuples()]
        result = fit(points)
        b_simple = chosen.get("noise_scale_simple_to_target", pd.Series(dtype=float)).dropna().tolist()
        words = sentence(result, {int(r.k): int(r.effective_batch) for r in chosen.itertuples()},
                         noise_interval(b_simple))
        named = dict(zip(CONFIG_KEYS, setting))
        groups.append(CriticalGroup(float(target), named, chosen, points, result, words,
                                    f"target loss {float(target):g}, {describe_setting(named)}"))
    groups.sort(key=lambda g: -len(g.runs))
    for i, group in enumerate(groups):
        group.slug = "critical" if len(groups) == 1 else re.sub(r"[^\w.-]+", "-", f"critical-{i + 1}-"
                                                                               f"target-{group.target:g}")
    return groups


def _rows(group: CriticalGroup) -> list[list[str]]:
    rows = []
    for r in group.runs.itertuples():
        bound = "" if r.target_reached else ">= "
        b_simple = getattr(r, "noise_scale_simple_to_target", float("nan"))
        rows.append([str(int(r.k)), str(int(r.effective_batch)), str(int(r.seed)),
                     "yes" if r.target_reached else "no", f"{bound}{r.updates_to_target:,.0f}",
                     f"{bound}{r.images_to_target:,.0f}", "" if b_simple != b_simple else f"{b_simple:,.0f}",
                     regime(r.effective_batch, group.fit.b_crit) if group.fit else ""])
    return rows


def critical_html(groups: list[CriticalGroup]) -> str:
    """The report's section: per group its sentence, the per-K table and the two plots (inline PNG); '' without
    critical runs."""
    if not groups:
        return ""
    header = ["K", "batch", "seed", "reached", "updates to target", "images to target", "B_simple to target",
              "regime on the fit"]
    parts = ["<h2 id='critical'>The critical batch size (updates and images to a target loss)</h2>"]
    for group in groups:
        parts.append(f"<h3>{esc(group.label)}</h3><p>{esc(group.sentence)}</p>" + html_table(header, _rows(group)))
        if group.plots:
            parts.append("<div class=plots>" + "".join(
                f"<img alt='{esc(name)}' src='data:image/png;base64,{base64.b64encode(path.read_bytes()).decode()}'>"
                for name, path in group.plots.items()) + "</div>")
    return "\n".join(parts)


def critical_text(groups: list[CriticalGroup]) -> str:
    """For the terminal: one line per group."""
    return "".join(f"critical batch ({group.label}): {group.sentence}\n" for group in groups)
