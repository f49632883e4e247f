"""Pure functions from typed runs to the study's comparison: groups, newest run per seed, mean ± 95% interval,
tables."""
from __future__ import annotations

import re
from dataclasses import dataclass, field

import pandas as pd

from gradacc.analysis.selection import CONFIG_KEYS, plain, repeat_lines, select_runs
from gradacc.analysis.uncertainty import half_width
from gradacc.core.config import DEFAULT_KS, Protocol
from gradacc.core.errors import GradaccError
from gradacc.names import PARTS

METRICS = {"micro": ("micro_iter_ms_mean", "micro_iter_ms_std", "opt_step_ms_mean"),
           "update": ("update_time_s_mean", "throughput_img_s"),
           "converge": ("test_accuracy", "final_train_loss", "noise_scale_simple_final")}
LOSS_KEYS = ("train_loss", "train_loss_update")
NOISE_KEYS = ("noise_scale_simple", "noise_scale_simple_epoch")  # gradacc/core/noise.py
# The figures (plots/<setting>/<name>.png), in the order of the study's parts: Part 1, Part 2, Part 3, its noise scale.
# analysis/plots/ draws them; the report shows them in this order.
FIGURES = ("micro_time_vs_k", "throughput_vs_batch", "update_time_vs_k", "loss_vs_epoch", "accuracy_vs_k",
           "loss_vs_updates", "noise_scale_vs_epoch")


class CompareError(GradaccError, RuntimeError):
    """Nothing to compare, or the comparison's output cannot be written."""


@dataclass
class Section:
    """The runs of one configuration (all K, all parts) and their summary: never mixed with another."""

    setting: dict
    runs: pd.DataFrame  # the selected runs: FINISHED, newest per seed
    table: pd.DataFrame  # one row per K, numeric
    missing: list[str] = field(default_factory=list)
    label: str = ""
    slug: str = ""
    ddp: pd.DataFrame = field(default_factory=pd.DataFrame)  # real DDP runs of this setting (Part 4)
    repeats: list[str] = field(default_factory=list)  # where one seed has several runs: which one is taken


def _first(values: pd.Series):
    values = values.dropna()
    return plain(values.iloc[0]) if len(values) else None


def timed_converge(runs: pd.DataFrame) -> pd.Series:
    """Which runs are converge runs that timed their updates (not those trained together with other seeds)."""
    timed = runs.get("update_time_s_mean", pd.Series(index=runs.index, dtype=float)).notna()
    return (runs["part"] == "converge") & timed


def timing_runs(runs: pd.DataFrame) -> tuple[pd.DataFrame, str | None]:
    """Where one K's Part 2 figures come from: its update runs; else its converge runs, which time the same
    updates of the same seed whole (a run that measured something else per update logs no timings)."""
    updates = runs[runs["part"] == "update"]
    if len(updates):
        return updates, "update"
    timed = runs[timed_converge(runs)]
    return timed, ("converge" if len(timed) else None)


def summary_table(runs: pd.DataFrame) -> pd.DataFrame:
    """One row per K (numerically sorted) of one setting's selected runs: for each metric the mean over runs
    (seeds), its standard deviation `<metric>_sd` and the half-width of its 95% t interval `<metric>_ci` (NaN
    below two runs), and the run count `<part>_n`; plus the
    'K x micro-iteration + optimizer step' model of the update time and the measured gap to it in %."""
    ks = sorted({int(k) for k in runs["k"]})
    rows = []
    for k in ks:
        at_k = runs[runs["k"] == k]
        row = {"k": k, "effective_batch": _first(at_k["effective_batch"]),
               "total_updates": _first(at_k["total_updates"])}
        for part, metrics in METRICS.items():
            of_part = at_k[at_k["part"] == part]
            row[f"{part}_runs"] = len(of_part)
            if part == "update":
                of_part, row["update_source"] = timing_runs(at_k)
            row[f"{part}_n"] = len(of_part)
            for metric in metrics:
                values = (of_part[metric] if metric in of_part.columns else pd.Series(dtype=float)).dropna()
                row[metric] = float(values.mean()) if len(values) else float("nan")
                row[f"{metric}_sd"] = float(values.std(ddof=1)) if len(values) > 1 else float("nan")
                row[f"{metric}_ci"] = half_width(row[f"{metric}_sd"], len(values))  # 95% t interval
        rows.append(row)
    table = pd.DataFrame(rows)
    if table.empty:
        return table
    step_ms = table["opt_step_ms_mean"].fillna(0.0)
    table["model_update_time_s"] = (table["k"] * table["micro_iter_ms_mean"] + step_ms) / 1e3
    table["model_gap_pct"] = (table["update_time_s_mean"] / table["model_update_time_s"] - 1) * 100
    return table


def missing_lines(runs: pd.DataFrame, expected_ks=DEFAULT_KS, expected_parts=PARTS, scoped: bool = False) -> list[str]:
    """'no update runs for K=8' for each part that lacks some K of the setting or of the expected list; `scoped`
    (a comparison of several settings) adds 'in this setting', so that the line is not read against another
    setting's table."""
    all_ks = sorted({int(k) for k in runs["k"]} | {int(k) for k in expected_ks})
    where = " in this setting" if scoped else ""
    lines = []
    for part in expected_parts:
        have = {int(k) for k in runs.loc[runs["part"] == part, "k"]}
        if part == "update":  # converge runs that timed their updates stand in for update runs
            have |= {int(k) for k in runs.loc[timed_converge(runs), "k"]}
        lacking = [k for k in all_ks if k not in have]
        if not have:  # K values listed here would read as if the other settings' tables lacked them too
            lines.append(f"no {part} runs in this setting")
        elif lacking:
            lines.append(f"no {part} runs for K={', '.join(map(str, lacking))}{where}")
    return lines


def describe_setting(setting: dict) -> str:
    """'NVIDIA H100 (cuda), loader device, 8 threads', plus every value that departs from the protocol and whether
    convolutions used TF32 (PyTorch's default on CUDA cards of the Ampere generation and newer)."""
    text = f"{setting.get('device_name') or '?'} ({setting.get('device_type') or '?'}), " \
           f"loader {setting.get('loader') or '?'}, {setting.get('torch_threads') or '?'} threads"
    defaults = Protocol()
    extras = []
    for key in ("epochs", "micro_batch", "train_size", "test_size", "lr", "momentum", "weight_decay",
                "eval_batch", "warmup_micro_iters", "timed_micro_iters"):
        value = setting.get(key)
        if value is not None and value != getattr(defaults, key):
            extras.append(f"{key} {value:g}" if isinstance(value, float) else f"{key} {value}")
    if setting.get("variant") not in (None, "protocol"):
        extras.insert(0, f"variant {setting['variant']}")
    if setting.get("tf32_conv"):
        extras.insert(0, "TF32 convolutions")
    elif setting.get("device_type") == "cuda" and setting.get("tf32_conv") is None:
        extras.insert(0, "TF32 unknown (runs from before it was logged)")
    if setting.get("cuda_graphs"):
        extras.insert(0, "CUDA graphs (Parts 2-3)")
    if setting.get("smoke"):
        extras.insert(0, "SMOKE")
    return text + ("; " + ", ".join(extras) if extras else "")


def _slug(setting: dict) -> str:
    parts = [setting.get("device_type"), setting.get("loader"), f"t{setting.get('torch_threads')}"]
    if setting.get("variant") not in (None, "protocol"):
        parts.append(setting["variant"])
    if setting.get("cuda_graphs"):
        parts.append("graphs")
    if setting.get("tf32_conv"):
        parts.append("tf32")
    if setting.get("smoke"):
        parts.append("smoke")
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", "-".join(str(p) for p in parts)).strip("-") or "runs"


def build_sections(runs: pd.DataFrame, expected_ks=DEFAULT_KS, expected_parts=PARTS,
                   where: str = "") -> list[Section]:
    """One Section per setting, the one with most runs first. Raises CompareError if nothing is there."""
    selected = select_runs(runs) if len(runs) else runs
    if not len(selected):
        raise CompareError(f"no finished {', '.join(expected_parts)} runs to compare{' ' + where if where else ''}")
    sections = []
    repeats = repeat_lines(runs)
    scoped = selected["setting"].nunique() > 1
    for setting, group in selected.groupby("setting", sort=False):
        named = dict(zip(CONFIG_KEYS, setting))
        group = group.drop(columns="setting").reset_index(drop=True)
        sections.append(Section(named, group, summary_table(group), missing_lines(group, expected_ks,
                                                                                   expected_parts, scoped),
                                describe_setting(named), _slug(named), repeats=repeats.get(setting, [])))
    sections.sort(key=lambda s: (-len(s.runs), -s.runs["start_time"].max().value))
    seen: dict[str, int] = {}
    for section in sections:  # distinct folder names even where two settings share device and loader
        seen[section.slug] = seen.get(section.slug, 0) + 1
        if seen[section.slug] > 1:
            section.slug += f"-{seen[section.slug]}"
    return sections


def curves(series: pd.DataFrame, runs: pd.DataFrame, key: str) -> pd.DataFrame:
    """Mean and std over a section's runs of one series at each (K, step): [k, step, mean, sd, n]."""
    chosen = series[(series["key"] == key) & series["run_id"].isin(runs["run_id"])]
    if chosen.empty:
        return pd.DataFrame(columns=["k", "step", "mean", "sd", "n"])
    grouped = chosen.assign(k=chosen["k"].astype(int)).groupby(["k", "step"])["value"]
    out = grouped.agg(mean="mean", sd="std", n="count").reset_index()
    return out.sort_values(["k", "step"]).reset_index(drop=True)


# --- renderings -------------------------------------------------------------------------------------------

COLUMNS = (("K", None, None), ("effective batch", None, None), ("U", None, None),
           ("micro-iteration ms", "micro_iter_ms_mean", "micro"), ("update time s", "update_time_s_mean", "update"),
           ("throughput img/s", "throughput_img_s", "update"), ("test accuracy %", "test_accuracy", "converge"))


def _number(metric: str, value: float) -> str:
    if metric == "throughput_img_s":
        return f"{value:,.0f}"
    if metric == "update_time_s_mean":
        return f"{value:.4g}" if value < 10 else f"{value:.1f}"
    return f"{value:.1f}" if abs(value) >= 1 or value == 0 else f"{value:.3g}"


def cell(row, metric: str, part: str) -> str:
    """'mean ± half-width of the 95% t interval' over the part's runs when there are several, the mean alone
    for one, '-' for none."""
    n, mean, ci = row[f"{part}_n"], row[metric], row[f"{metric}_ci"]
    if n == 0 or pd.isna(mean):
        return "-"
    text = _number(metric, mean)
    decimals = len(text.split(".")[1]) if "." in text else 0  # the interval to the mean's precision
    return text + (f" ± {ci:,.{decimals}f}" if n > 1 and pd.notna(ci) else "")


CI_NOTE = "± : half-width of the 95% t interval of the mean over seeds (table.csv also has the std, *_sd)"


def display_rows(table: pd.DataFrame) -> tuple[list[str], list[list[str]]]:
    header = [name for name, _m, _p in COLUMNS] + ["runs (micro/update/converge)"]
    rows = []
    for _, row in table.iterrows():
        cells = [str(int(row["k"])), "-" if pd.isna(row["effective_batch"]) else f"{int(row['effective_batch'])}",
                 "-" if pd.isna(row["total_updates"]) else f"{int(row['total_updates'])}"]
        cells += [cell(row, metric, part) for _n, metric, part in COLUMNS[3:]]
        cells.append("/".join(str(int(row[f"{p}_runs"])) for p in PARTS))
        rows.append(cells)
    return header, rows


def table_markdown(section: Section) -> str:
    header, rows = display_rows(section.table)
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines) + "\n"


def table_text(section: Section) -> str:
    """The table aligned for a terminal: numbers right-aligned under their headers."""
    header, rows = display_rows(section.table)
    widths = [max(len(c) for c in column) for column in zip(header, *rows)]
    lines = ["  ".join(h.rjust(w) for h, w in zip(header, widths)), "  ".join("-" * w for w in widths)]
    lines += ["  ".join(c.rjust(w) for c, w in zip(r, widths)) for r in rows]
    return "\n".join(lines) + "\n"


def notes(section: Section) -> list[str]:
    """What lacks, and what '±' means where some K has several runs."""
    repeated = any((section.table[f"{part}_n"] > 1).any() for part in PARTS if f"{part}_n" in section.table)
    return section.missing + section.repeats + ([CI_NOTE] if repeated else [])


def tables_markdown(sections: list[Section], title: str = "Summary") -> str:
    out = [f"# {title}\n"]
    for section in sections:
        out += [f"## {section.label}\n", table_markdown(section)]
        out += [f"- {line}" for line in notes(section)] + ([""] if notes(section) else [])
    return "\n".join(out)


def tables_text(sections: list[Section]) -> str:
    out = []
    for section in sections:
        out += [section.label, table_text(section)] + [f"  {line}" for line in notes(section)] + [""]
    return "\n".join(out)


def tables_csv(sections: list[Section]) -> str:
    """Every section's numeric table in one CSV, each row with the setting it belongs to."""
    frames = [section.table.assign(**{key: section.setting[key] for key in CONFIG_KEYS}) for section in sections]
    table = pd.concat(frames, ignore_index=True)
    first = list(CONFIG_KEYS) + ["k"]
    return table[first + [c for c in table.columns if c not in first]].to_csv(index=False)
