"""A per-run plot's legend ("mean ...", "middle 60%") never covers a data point, the last one included."""
from __future__ import annotations

import numpy as np

import gradacc.analysis.plots.run as run_plot


def test_the_legend_leaves_every_point_visible(tmp_path, monkeypatch):
    figures = []
    real_close = run_plot.plt.close
    monkeypatch.setattr(run_plot.plt, "close", lambda fig: figures.append(fig))
    values = [1.0 + 0.01 * (i % 5) for i in range(40)]
    values[-1] = 1.3  # the run's last update, high, as a slow last step is
    run_plot.plot_run("converge-k4", {"update_time_s": (list(range(40)), values)}, tmp_path / "p.png",
                      window=(8, 32))
    (fig,) = figures
    ax = fig.axes[0]
    box = ax.get_legend().get_window_extent(fig.canvas.get_renderer())
    points = ax.transData.transform(np.column_stack([range(40), values]))
    assert not any(box.contains(x, y) for x, y in points)
    real_close(fig)
