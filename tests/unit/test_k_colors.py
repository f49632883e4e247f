"""One colour per K in every figure: a figure without K=1 (the noise scale's) draws each K in its own colour."""
from __future__ import annotations

from gradacc.analysis.plots.style import k_colors


def test_each_k_keeps_its_colour_whichever_ks_a_figure_has():
    every = k_colors([1, 2, 4, 8])
    assert len(set(every.values())) == 4
    for some in ([2, 4, 8], [4], [8, 2]):
        assert all(k_colors(some)[k] == every[k] for k in some)
    assert len(set(k_colors([1, 2, 3, 4, 8]).values())) == 5  # a K beyond the study's gets a colour of its own
