"""The look every figure shares: the Agg backend (no display needed), size, resolution, margins, one colour per K."""
from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (after choosing the backend)

DPI = 110
SIZE_IN = (6.4, 4.2)
MARGINS = {"left": 0.12, "right": 0.97, "top": 0.87, "bottom": 0.12}

__all__ = ["DPI", "MARGINS", "SIZE_IN", "finish", "k_colors", "plt"]


def k_colors(ks) -> dict[int, tuple]:
    """One viridis colour per K, in K's order."""
    ks = sorted(int(k) for k in ks)
    cmap = plt.get_cmap("viridis")
    return {k: cmap(0.85 * i / max(len(ks) - 1, 1)) for i, k in enumerate(ks)}


def finish(fig, ax, title: str, subtitle: str, path: Path) -> Path:
    """Title, grid, fixed margins; saved as PNG and closed."""
    ax.set_title(f"{title}\n{subtitle}", fontsize=10)
    ax.grid(alpha=0.3)
    fig.subplots_adjust(**MARGINS)  # fixed: tight_layout would cost a third of each figure's time
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=DPI, pil_kwargs={"compress_level": 3})
    plt.close(fig)
    return path
