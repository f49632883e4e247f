"""The report as one self-contained HTML page: per setting its table, plots (inline PNG), discussion and runs."""
from __future__ import annotations

import base64
import re
from pathlib import Path

import pandas as pd

from gradacc.analysis.compare import CI_NOTE, CONFIG_KEYS, FIGURES, Section, display_rows, notes
from gradacc.analysis.report.claims import MEANING
from gradacc.analysis.report.discussion import discussion
from gradacc.analysis.report.noise import variants_html
from gradacc.analysis.text import esc, html_table

# The MLflow artifact viewer shows the report in an iframe 800-1000 px wide: tables shrink to fit it (a smaller
# font, headers that break after slashes and commas, a number and its interval kept together), scroll sideways inside
# a .wide box where they cannot, and the figures fall to one column.
CSS = """body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}
body{line-height:1.45}
h1{font-size:1.6em}h2{border-bottom:2px solid #ddd;padding-bottom:.2em;margin-top:2em}h3{margin-bottom:.3em}
.wide{max-width:100%;overflow-x:auto}
table{border-collapse:collapse;margin:.8em 0;font-size:.85em;max-width:100%}
th,td{border:1px solid #ccc;padding:.25em .45em}
th{background:#f3f3f3}td.n{text-align:right;font-variant-numeric:tabular-nums}
.plots{display:grid;grid-template-columns:repeat(auto-fill,minmax(min(480px,100%),1fr));gap:1em}
.plots img{width:100%;border:1px solid #e3e3e3}.meta{color:#555;font-size:.92em}.missing{color:#a33}
details{margin:1em 0}code{font-size:.95em;overflow-wrap:anywhere}"""


def prose(text: str) -> str:
    """A sentence as HTML: escaped, with `command` spans set as code rather than shown with their backticks."""
    return re.sub(r"`([^`]+)`", r"<code>\1</code>", esc(text))


def _in_part_order(plots: dict[str, Path]) -> list[tuple[str, Path]]:
    return sorted(plots.items(), key=lambda item: FIGURES.index(item[0]) if item[0] in FIGURES else len(FIGURES))


def _fitting(html: str) -> str:
    """Every table in a box that scrolls sideways rather than cut off what the viewer cannot show; headers may
    break after a slash or comma ('(micro/update/converge)', 'lr=linear,warmup=1'), by zero-width spaces."""
    html = re.sub(r"<th>(.*?)</th>", lambda m: "<th>" + re.sub(r"([/,])(?=\S)", "\\1\u200b", m.group(1)) + "</th>",
                  html)
    return html.replace("<table>", "<div class=wide><table>").replace("</table>", "</table></div>")


def _versions(runs: pd.DataFrame, column: str) -> str:
    values = sorted({str(v) for v in runs.get(column, pd.Series(dtype=object)).dropna()})
    return ", ".join(values) if values else "(not logged)"


def _runs_html(runs: pd.DataFrame) -> str:
    header = ["part", "run name", "K", "seed", "run id", "started (UTC)", "studies"]
    rows = [[r.part, r.run_name, int(r.k), "" if pd.isna(r.seed) else int(r.seed), r.run_id,
             r.start_time.strftime("%Y-%m-%d %H:%M:%S"), ", ".join(r.studies)]
            for r in runs.sort_values(["part", "k", "seed"]).itertuples()]
    return (f"<details><summary>The {len(runs)} runs this section comes from (newest run per seed)</summary>"
            + html_table(header, rows) + "</details>")


def section_html(section: Section, series: pd.DataFrame, plots: dict[str, Path]) -> str:
    runs = section.runs
    config = ", ".join(f"{k}={section.setting[k]}" for k in CONFIG_KEYS if section.setting.get(k) is not None)
    parts = [f"<h2 id='{esc(section.slug)}'>{esc(section.label)}</h2>",
             f"<p class=meta>Config: <code>{esc(config)}</code><br>"
             "Environment: " + "; ".join(f"{label} {esc(_versions(runs, column))}" for label, column in (
                 ("torch", "torch_version"), ("CUDA", "cuda_version"), ("CPU", "cpu_model"),
                 ("code version", "code_version"))) + "</p>"]
    if runs["code_version"].nunique() > 1:
        parts.append(f"<p class=missing>These runs come from {runs['code_version'].nunique()} code versions.</p>")
    header, rows = display_rows(section.table)
    rows = [[cell.replace(" ± ", "\u00a0±\u00a0") for cell in row] for row in rows]  # never broken apart
    parts += ["<h3>Summary (mean ± 95% interval over seeds where a K has several runs)</h3>", html_table(header, rows)]
    if section.missing:
        parts.append("<ul class=missing>" + "".join(f"<li>{esc(m)}</li>" for m in section.missing) + "</ul>")
    if section.repeats:
        parts.append("<ul class=meta>" + "".join(f"<li>{esc(m)}</li>" for m in section.repeats) + "</ul>")
    if CI_NOTE in notes(section):
        parts.append(f"<p class=meta>{esc(CI_NOTE)}</p>")
    if plots:
        parts.append("<div class=plots>" + "".join(
            f"<img alt='{esc(name)}' src='data:image/png;base64,{base64.b64encode(path.read_bytes()).decode()}'>"
            for name, path in _in_part_order(plots)) + "</div>")
    for heading, sentences in discussion(section, series).items():
        parts.append(f"<h3>{esc(heading)}</h3>" + "".join(f"<p>{prose(s)}</p>" for s in sentences))
    parts.append(_runs_html(runs))
    return "\n".join(parts)


def render_report(sections: list[Section], series: pd.DataFrame, plots: dict[str, dict[str, Path]],
                  title: str, source: str, appendix: str = "") -> str:
    """One self-contained HTML page: per setting its table, plots (inline PNG), discussion and runs; then the
    study-wide sections (the variants, and `appendix`: the critical batch size where critical runs exist)."""
    nav = ""
    if len(sections) > 1:
        nav = (f"<p>{len(sections)} settings, kept apart (never averaged together):</p><ul>" + "".join(
            f"<li><a href='#{esc(s.slug)}'>{esc(s.label)}</a> ({len(s.runs)} runs)</li>" for s in sections)
            + "</ul>")
    body = _fitting("\n".join(section_html(s, series, plots.get(s.slug, {})) for s in sections)
                      + variants_html(sections) + appendix)
    return (f"<!DOCTYPE html><html lang=en><head><meta charset=utf-8><title>{esc(title)}</title>"
            f"<style>{CSS}</style></head><body><h1>{esc(title)}</h1><p class=meta>{esc(source)}</p>"
            f"<p class=meta>{esc(MEANING)}</p>"
            f"{nav}\n{body}\n</body></html>\n")
