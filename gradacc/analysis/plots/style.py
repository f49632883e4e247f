"""The look every figure shares: the Agg backend (no display needed), size, resolution, margins measured from the
texts, titles wrapped to the figure, one colour per K."""
from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (after choosing the backend)
from matplotlib.font_manager import FontProperties  # noqa: E402

from gradacc.core.config import DEFAULT_KS  # noqa: E402

DPI = 110
SIZE_IN = (6.4, 4.2)
PAD_IN = 0.08  # kept clear between the outermost text and the figure's edge
TITLE_SHARE = 0.86  # titles wrap to this share of the figure's width: centred over their axes, they stay inside
TITLE_SIZE = 10

__all__ = ["DPI", "SIZE_IN", "finish", "fit", "fit_column", "k_colors", "plt", "wrap"]


def k_colors(ks) -> dict[int, tuple]:
    """One viridis colour per K, in K's order; the study's Ks are always in that order, so a figure without K=1
    (the noise scale's) draws K=2 in K=2's colour, not in K=1's."""
    ks = sorted({int(k) for k in ks} | set(DEFAULT_KS))
    cmap = plt.get_cmap("viridis")
    return {k: cmap(0.85 * i / max(len(ks) - 1, 1)) for i, k in enumerate(ks)}


def wrap(fig, text: str, fontsize: float = TITLE_SIZE, share: float = TITLE_SHARE) -> str:
    """Each line of `text` broken at spaces so that none is wider than `share` of the figure, measured in the
    font itself (a setting's label runs to 170 characters; a character count would misjudge its width)."""
    renderer = fig.canvas.get_renderer()
    font = FontProperties(size=fontsize)
    limit = fig.bbox.width * share
    lines = []
    for paragraph in text.split("\n"):
        line = ""
        for word in paragraph.split(" "):
            longer = f"{line} {word}" if line else word
            if line and renderer.get_text_width_height_descent(longer, font, ismath=False)[0] > limit:
                lines.append(line)
                line = word
            else:
                line = longer
        lines.append(line)
    return "\n".join(lines)


def fit(fig, ax) -> None:
    """Margins from what lies around the one axes (title, tick labels, axis labels), measured once and without
    its lines and legend: fixed margins clipped wide tick labels and long titles; this adds about a tenth to a
    figure's time (the save reuses the ticks it makes), tight_layout about two fifths."""
    renderer = fig.canvas.get_renderer()
    outer, inner = ax.get_tightbbox(renderer, bbox_extra_artists=ax.child_axes), ax.bbox  # with a secondary axis
    pad, width, height = PAD_IN * fig.dpi, fig.bbox.width, fig.bbox.height
    fig.subplots_adjust(left=(inner.x0 - outer.x0 + pad) / width, right=1 - (outer.x1 - inner.x1 + pad) / width,
                        bottom=(inner.y0 - outer.y0 + pad) / height, top=1 - (outer.y1 - inner.y1 + pad) / height)


def fit_column(fig, axes, heading) -> None:
    """Margins for a column of axes under a figure title (`heading`, placed at the top here), measured once from
    what lies around each axes (title above, tick and axis labels below and left): constrained layout measured
    the same texts twice per save and took half of a per-run figure's time."""
    renderer = fig.canvas.get_renderer()
    pad, width, height = PAD_IN * fig.dpi, fig.bbox.width, fig.bbox.height
    heading.set(y=1 - pad / height, verticalalignment="top")
    boxes = [(ax.get_tightbbox(renderer), ax.bbox) for ax in axes]
    left = max(inner.x0 - outer.x0 for outer, inner in boxes) + pad
    right = max(outer.x1 - inner.x1 for outer, inner in boxes) + pad
    above = max(outer.y1 - inner.y1 for outer, inner in boxes)
    below = max(inner.y0 - outer.y0 for outer, inner in boxes)
    top = pad + heading.get_window_extent(renderer).height + pad + above
    gap = above + below + pad
    panel = (height - top - below - pad - (len(axes) - 1) * gap) / len(axes)
    fig.subplots_adjust(left=left / width, right=1 - right / width, bottom=(below + pad) / height,
                        top=1 - top / height, hspace=gap / panel)


def finish(fig, ax, title: str, subtitle: str, path: Path) -> Path:
    """Title (the setting wrapped below it), grid, margins that fit the texts; saved as PNG and closed."""
    fig.set_dpi(DPI)  # measured at the saved resolution: the save then reuses the measured text metrics
    ax.set_title(wrap(fig, f"{title}\n{subtitle}"), fontsize=TITLE_SIZE)
    ax.grid(alpha=0.3)
    fit(fig, ax)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=DPI, pil_kwargs={"compress_level": 3})
    plt.close(fig)
    return path
