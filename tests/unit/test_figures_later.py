"""The runs' PNGs a sweep puts off (gradacc/study/figures.py): drawn by a forked child while the sweep compares,
logged here to their runs; whatever a child did not draw (it failed, hung, or cannot fork) drawn here."""
from __future__ import annotations

import os
import sys
import time

import pytest

from gradacc.study import figures

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="children are forked on Linux only")


class FakeRun:
    """Records what each log_files call would upload: {relative path: text}."""

    def __init__(self):
        self.logged: dict[str, str] = {}

    def log_files(self, files, writers=()):
        target = figures.Path(figures.tempfile.mkdtemp())
        for write in writers:
            write(target)
        self.logged.update({str(p.relative_to(target)): p.read_text() for p in target.rglob("*") if p.is_file()})


def drawer(name: str, fail_in_child: bool = False, hang_in_child: bool = False):
    """A plot that writes which process drew it; optionally one that fails or hangs in a child only."""
    parent = os.getpid()

    def plot(root):
        if os.getpid() != parent and fail_in_child:
            raise RuntimeError("no fonts here")
        if os.getpid() != parent and hang_in_child:
            time.sleep(60)
        root.mkdir(parents=True, exist_ok=True)
        (root / f"{name}.png").write_text(str(os.getpid()))
    return plot


def test_a_child_draws_them_and_this_process_logs_them():
    plots, runs = figures.PlotsLater(), [FakeRun() for _ in range(3)]
    for i, run in enumerate(runs):
        plots.append(run, drawer(f"p{i}"))
    plots.start()
    (pid, _folder, _batch), = plots.drawing
    assert pid is not None and pid != os.getpid()
    figures.finish_drawing(plots)
    for i, run in enumerate(runs):
        assert run.logged == {f"p{i}.png": str(pid)}  # drawn by the child, logged to its own run
    assert not plots.drawing and not plots.waiting


def test_what_the_child_did_not_draw_is_drawn_here(monkeypatch):
    monkeypatch.setattr(figures, "CHILD_WAIT_S", 2)
    plots, runs = figures.PlotsLater(), [FakeRun() for _ in range(3)]
    plots.append(runs[0], drawer("ok"))
    plots.append(runs[1], drawer("fails", fail_in_child=True))
    plots.append(runs[2], drawer("hangs", hang_in_child=True))
    plots.start()
    child = plots.drawing[0][0]
    figures.finish_drawing(plots)
    assert runs[0].logged == {"ok.png": str(child)}
    assert runs[1].logged == {"fails.png": str(os.getpid())}
    assert runs[2].logged == {"hangs.png": str(os.getpid())}
    with pytest.raises(ChildProcessError):  # stopped and reaped: no process left behind
        os.waitpid(child, os.WNOHANG)


def test_not_started_or_no_fork_draws_here(monkeypatch):
    plots, runs = figures.PlotsLater(), [FakeRun(), FakeRun()]
    plots.append(runs[0], drawer("a"))
    monkeypatch.setattr(figures.sys, "platform", "darwin")
    plots.start()
    plots.append(runs[1], drawer("b"))  # never given to a child
    figures.finish_drawing(plots)
    assert runs[0].logged == {"a.png": str(os.getpid())} and runs[1].logged == {"b.png": str(os.getpid())}


def test_overlap_starts_a_child_per_configuration():
    plots, runs = figures.PlotsLater(overlap=True), [FakeRun() for _ in range(2)]
    for i, run in enumerate(runs):
        plots.append(run, drawer(f"c{i}"))
        plots.configuration_done()
    pids = [pid for pid, _f, _b in plots.drawing]
    assert len(pids) == 2 and len(set(pids)) == 2 and os.getpid() not in pids
    figures.finish_drawing(plots)
    assert [run.logged for run in runs] == [{"c0.png": str(pids[0])}, {"c1.png": str(pids[1])}]
    on_cpu = figures.PlotsLater()
    on_cpu.append(FakeRun(), drawer("d"))
    on_cpu.configuration_done()  # the device is the CPU: no child takes its cores from the next measurement
    assert not on_cpu.drawing
    figures.finish_drawing(on_cpu)
