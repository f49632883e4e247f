"""Every figure the package draws, on synthetic short and long runs, one seed and several: each text inside the
figure, titles clear of other texts and axes, annotations inside their axes, and every legend entry and style
note ('faint', 'dots', 'star' ...) backed by an artist drawn with data. Measured with matplotlib's extents."""
from __future__ import annotations

import html
import re
from pathlib import Path

import matplotlib.figure
import numpy as np
import pandas as pd
import pytest
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.container import BarContainer, ErrorbarContainer
from matplotlib.lines import Line2D

from gradacc.analysis.compare import build_sections
from gradacc.analysis.plots.commmodel import write_model_plots
from gradacc.analysis.plots.compare import write_plots
from gradacc.analysis.plots.run import plot_run
from gradacc.analysis.report.html import render_report
from tests.support.figure_inputs import (
    DEVICE,
    model_inputs,
    run_series,
    section_runs,
    sections_and_series,
    series_of,
)

NONE_STYLES = ("None", "none", "", " ")


# --- the checks ------------------------------------------------------------------------------------------------

@pytest.fixture
def drawn(monkeypatch):
    """Every figure the package saves, kept for measuring instead of written: [(file name, figure, dpi)]."""
    figures = []

    def keep(fig, path, *args, **kwargs):  # measured as saved: the draw of a save, without the PNG
        figures.append(("/".join(Path(path).parts[-2:]), fig, kwargs.get("dpi", fig.dpi)))
    monkeypatch.setattr(matplotlib.figure.Figure, "savefig", keep)
    return figures


def _shown(text) -> bool:
    return text.get_visible() and bool(text.get_text().strip())


def _tick_labels(ax):
    """The tick labels drawn: visible, non-empty, at a tick inside the view (matplotlib keeps others unshown)."""
    out = []
    for axis, index, transform in ((ax.xaxis, 0, ax.get_xaxis_transform()), (ax.yaxis, 1, ax.get_yaxis_transform())):
        if not axis.get_visible():
            continue
        low, high = sorted((ax.bbox.x0, ax.bbox.x1) if index == 0 else (ax.bbox.y0, ax.bbox.y1))
        for locs, ticks in ((axis.get_majorticklocs(), axis.get_major_ticks), (axis.get_minorticklocs(),
                                                                                 axis.get_minor_ticks)):
            for loc, tick in zip(locs, ticks(len(locs))):
                where = transform.transform((loc, 0) if index == 0 else (0, loc))[index]
                if low - 1 <= where <= high + 1:
                    out += [label for label in (tick.label1, tick.label2) if _shown(label)]
        if _shown(axis.get_offset_text()):
            out.append(axis.get_offset_text())
    return out


def texts_of(fig):
    """(kind, text, axes) for every text the figure draws."""
    out = [("figure text", t, None) for t in fig.texts if _shown(t)]
    for ax in fig.axes:
        out += [(kind, t, ax) for kind, t in (("title", ax.title), ("xlabel", ax.xaxis.label),
                                             ("ylabel", ax.yaxis.label)) if _shown(t)]
        out += [("annotation", t, ax) for t in ax.texts if _shown(t)]
        out += [("tick label", t, ax) for axes in (ax, *ax.child_axes) for t in _tick_labels(axes)]  # secondary too
        legend = ax.get_legend()
        if legend is not None:
            out += [("legend", t, ax) for t in [*legend.get_texts(), legend.get_title()] if _shown(t)]
    return out


def _overlap(a, b, tol=0.5) -> bool:  # two boxes (display pixels) share more than a hairline
    return a.x0 < b.x1 - tol and b.x0 < a.x1 - tol and a.y0 < b.y1 - tol and b.y0 < a.y1 - tol


def _inside(inner, outer, tol=0.5) -> bool:
    return inner.x0 >= outer.x0 - tol and inner.x1 <= outer.x1 + tol and inner.y0 >= outer.y0 - tol \
        and inner.y1 <= outer.y1 + tol


def _finite_points(artist, ax, renderer) -> bool:
    """At least one finite point of the artist lies in the axes' view, and for a line outside its legend."""
    if isinstance(artist, Line2D):
        xy = artist.get_xydata()
        xy = xy[np.isfinite(xy).all(axis=1)]
        if not len(xy):
            return False
        x, y = artist.get_transform().transform(xy).T
        shown = (x >= ax.bbox.x0 - 1) & (x <= ax.bbox.x1 + 1) & (y >= ax.bbox.y0 - 1) & (y <= ax.bbox.y1 + 1)
        legend = ax.get_legend()
        if legend is not None:
            box = legend.get_window_extent(renderer)
            shown &= ~((x > box.x0) & (x < box.x1) & (y > box.y0) & (y < box.y1))
        return bool(shown.any())
    extent = artist.get_window_extent(renderer)
    return extent.width > 0 and extent.height > 0 and _overlap(extent, ax.bbox, 0)


def _line_drawn(line: Line2D, ax, renderer) -> bool:
    """A line shows as a stroke (2+ finite points, a line style) or as markers."""
    if not line.get_visible() or line.get_alpha() == 0 or not _finite_points(line, ax, renderer):
        return False
    stroke = line.get_linestyle() not in NONE_STYLES and line.get_linewidth() > 0 and \
        np.isfinite(line.get_xydata()).all(axis=1).sum() >= 2
    marker = line.get_marker() not in (None, *NONE_STYLES) and line.get_markersize() > 0
    return stroke or marker


def drawn_with_data(handle, ax, renderer) -> bool:
    if isinstance(handle, ErrorbarContainer):
        return _line_drawn(handle.lines[0], ax, renderer)
    if isinstance(handle, BarContainer):
        return any(p.get_visible() and p.get_height() and _finite_points(p, ax, renderer) for p in handle.patches)
    if isinstance(handle, Line2D):
        return _line_drawn(handle, ax, renderer)
    return handle.get_visible() and _finite_points(handle, ax, renderer)


def _lines(ax, renderer):
    return [line for line in ax.get_lines() if _line_drawn(line, ax, renderer)]


# A style a text promises, and what must be drawn for it (checked on every axes' lines).
PROMISES = {
    r"\bfaint\b": lambda ax, r: any((line.get_alpha() or 1) <= 0.5 for line in _lines(ax, r)),
    r"\bbold\b": lambda ax, r: any(line.get_linewidth() >= 1.5 and (line.get_alpha() or 1) > 0.5
                                   for line in _lines(ax, r)),
    r"\bdots?\b": lambda ax, r: any(line.get_marker() in ("o", ".") and line.get_linestyle() in NONE_STYLES
                                    for line in _lines(ax, r)),
    r"\bdotted\b": lambda ax, r: any(line.get_linestyle() == ":" for line in _lines(ax, r)),
    r"\bdashed\b": lambda ax, r: any(line.get_linestyle() == "--" for line in _lines(ax, r)),
    r"\bstars?\b": lambda ax, r: any(line.get_marker() == "*" for line in _lines(ax, r)),
    r"\bbars: 95% CI\b": lambda ax, r: any(isinstance(c, ErrorbarContainer) and c.has_yerr for c in ax.containers),
}


def check_figure(name: str, fig, dpi: float) -> list[str]:
    """What does not fit in one figure as saved, as readable lines (empty: it fits)."""
    FigureCanvasAgg(fig)  # pyplot.close left the figure a bare canvas: draw it on an Agg one, as a save does
    fig.set_dpi(dpi)
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    problems = []
    texts = [(kind, t, ax, t.get_window_extent(renderer)) for kind, t, ax in texts_of(fig)]
    for kind, text, ax, box in texts:  # (a) inside the figure
        if not _inside(box, fig.bbox):
            problems.append(f"{name}: {kind} {text.get_text()!r} leaves the figure ({box} not in {fig.bbox})")
    titles = [(kind, t, ax, box) for kind, t, ax, box in texts if kind in ("title", "figure text")]
    for kind, text, ax, box in titles:  # (b) titles clear of every other text and of every axes
        for other_kind, other, other_ax, other_box in texts:
            if other is not text and _overlap(box, other_box):
                problems.append(f"{name}: {kind} {text.get_text()!r} overlaps {other_kind} {other.get_text()!r}")
        for axes in fig.axes:
            if _overlap(box, axes.bbox):
                problems.append(f"{name}: {kind} {text.get_text()!r} overlaps the axes of {axes.get_title()!r}")
    notes = [(text, ax, box) for kind, text, ax, box in texts if kind == "annotation"]
    for i, (text, ax, box) in enumerate(notes):  # annotations inside their axes, clear of each other and the legend
        if not _inside(box, ax.bbox):
            problems.append(f"{name}: annotation {text.get_text()!r} leaves its axes onto the labels")
        problems += [f"{name}: annotations {text.get_text()!r} and {other.get_text()!r} overlap"
                     for other, _ax, other_box in notes[i + 1:] if _overlap(box, other_box)]
        legend = ax.get_legend()
        if legend is not None and _overlap(box, legend.get_window_extent(renderer)):
            problems.append(f"{name}: annotation {text.get_text()!r} under the legend")
    for ax in fig.axes:  # (c) each legend entry an artist drawn with data; each promised style drawn
        legend = ax.get_legend()
        if legend is not None:
            handles, labels = ax.get_legend_handles_labels()
            assert [t.get_text() for t in legend.get_texts()] == labels, f"{name}: legend of proxy artists"
            problems += [f"{name}: legend entry {label!r} has nothing drawn" for handle, label in
                         zip(handles, labels) if not drawn_with_data(handle, ax, renderer)]
        promises = " ".join(t.get_text() for kind, t, owner, _box in texts
                            if (owner is ax and kind in ("title", "xlabel", "ylabel", "legend", "annotation"))
                            or (owner is None and len(fig.axes) == 1))
        problems += [f"{name}: {pattern!r} promised in {promises!r} but not drawn"
                     for pattern, holds in PROMISES.items() if re.search(pattern, promises) and not holds(ax, renderer)]
    return problems


def assert_all_fit(figures, expected: int):
    assert len(figures) >= expected, f"only {len(figures)} figures drawn"
    problems = [line for name, fig, dpi in figures for line in check_figure(name, fig, dpi)]
    assert not problems, "\n".join(problems)


# --- the figures -----------------------------------------------------------------------------------------------

def test_compare_figures_fit(drawn, tmp_path):
    made = {}
    for name, section, series in sections_and_series():
        made[name] = write_plots(section, series, tmp_path / name)
    assert len(made["long-one-seed"]) == 7 and len(made["short-smoke"]) == 7
    assert set(made["update-only"]) == {"throughput_vs_batch", "update_time_vs_k"}
    assert_all_fit(drawn, sum(len(m) for m in made.values()))


def test_run_figures_fit(drawn, tmp_path):
    title = f"converge-k16-smoke on {DEVICE}"
    for part, updates, epochs in (("micro", 0, 0), ("update", 120, 0), ("update", 3, 0), ("converge", 800, 5),
                                  ("converge", 1, 1), ("ddp", 40, 2)):
        window = (updates // 5, updates - updates // 5) if part == "update" else None
        plot_run(title, run_series(part, updates, epochs), tmp_path / f"{part}-{updates}.png", window=window)
    assert_all_fit(drawn, 6)


def test_commmodel_figures_fit(drawn, tmp_path):
    for max_workers, custom, ddp in ((32, True, True), (8, False, False), (1, False, True)):
        rows, best, checks = model_inputs(max_workers, custom, ddp)
        write_model_plots(rows, best, checks, tmp_path / f"n{max_workers}")
    assert_all_fit(drawn, 9)


# --- the report ------------------------------------------------------------------------------------------------

FIGURE_ORDER = ("micro_time_vs_k", "throughput_vs_batch", "update_time_vs_k", "loss_vs_epoch", "accuracy_vs_k",
                "loss_vs_updates", "noise_scale_vs_epoch")  # Part 1, Part 2, Part 3, the noise scale
VIEWER_PX = 800 - 32 - 15  # the MLflow artifact viewer's iframe, 800-1000 px, less the body's padding, a scrollbar
CHAR_EM = 0.58  # a generous mean width of a character (digits, hex, lower case) in em; calibrated in Chromium


def table_px(table: str, css: str) -> float:
    """The narrowest a table can be in the page's CSS: each column as wide as its longest unbreakable piece,
    cells and headers breaking at spaces (not at the no-break ones in '103.0 ± 3.0'), headers also at zero-width
    ones; in the table's font size, plus each cell's padding."""
    font_px = 16 * float(re.search(r"table\{[^}]*font-size:([.\d]+)em", css).group(1))
    pad_em = float(re.search(r"th,td\{[^}]*padding:[.\d]+em ([.\d]+)em", css).group(1))
    rows = [re.findall(r"<t[hd][^>]*>(.*?)</t[hd]>", r) for r in re.findall(r"<tr>(.*?)</tr>", table)]
    return sum(max(len(piece) for cell in column for piece in re.split("[ \u200b]", html.unescape(cell)))
               * CHAR_EM * font_px + 2 * pad_em * font_px + 1 for column in zip(*rows))


def test_report_orders_figures_by_part_and_tables_fit(tmp_path):
    base = section_runs((1, 2, 4, 8), seeds=(42, 43, 44), variant="train=50000")
    variant = base.assign(variant="lr=linear,warmup=1,train=50000", run_id=base["run_id"].str[::-1])
    runs = pd.concat([base, variant], ignore_index=True)
    sections = build_sections(runs)
    series = series_of(runs)
    plots = {s.slug: dict(sorted(write_plots(s, series, tmp_path / s.slug).items())) for s in sections}
    page = render_report(sections, series, plots, "study S", "test")
    assert re.findall(r"<img alt='(\w+)'", page) == list(FIGURE_ORDER) * 2
    assert "Variants beside the protocol" in page
    css = re.search(r"<style>(.*?)</style>", page, flags=re.S).group(1)
    tables = re.findall(r"(.{16})(<table>.*?</table>)", page, flags=re.S)
    assert len(tables) == 5  # summary and runs per section, the variant beside its base
    for before, table in tables:
        assert table_px(table, css) <= VIEWER_PX, f"a table {table_px(table, css):.0f} px wide: {table[:300]}"
        assert before == "<div class=wide>", "every table in a box that scrolls sideways where it cannot fit"
    assert re.search(r"\.wide\{[^}]*overflow-x:auto", css) and re.search(r"table\{[^}]*max-width:100%", css)
