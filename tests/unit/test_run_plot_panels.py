"""The per-run figure has a panel per series of two or more points: a one-point series (an epoch series of a
one-epoch run) is a number among the run's metrics; where no series has two points, each is drawn."""
from PIL import Image

from gradacc.analysis.plots import run as run_plot
from gradacc.analysis.plots.style import DPI

PANEL_PX = round(2.6 * DPI)  # plot_run's height per panel


def _panels(tmp_path, series) -> int:
    path = run_plot.plot_run("converge-k1", series, tmp_path / "p.png")
    with Image.open(path) as image:
        return round(image.height / PANEL_PX)


def test_one_point_series_get_no_panel(tmp_path):
    curve = (list(range(30)), [2.0 - 0.01 * i for i in range(30)])
    assert _panels(tmp_path, {"train_loss_update": curve, "update_time_s": curve, "train_loss": ([1], [1.7]),
                              "test_accuracy_epoch": ([1], [35.0])}) == 2


def test_only_one_point_series_are_each_drawn(tmp_path):
    assert _panels(tmp_path, {"train_loss": ([1], [1.7]), "test_accuracy_epoch": ([1], [35.0])}) == 2
    assert _panels(tmp_path, {"train_loss": ([1], [1.7]), "update_time_s": ([], [])}) == 1
