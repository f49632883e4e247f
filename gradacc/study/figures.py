"""The runs' PNGs a sweep puts off (study/run.py write_result), so that none is drawn between two measurements.
After the last measurement a child process forked from this one draws them while this one compares the study
(on the 2-core CPU the per-run PNGs and the comparison took about a second each, one after the other); where the
device is not the CPU, a child starts after each configuration and draws while the next one trains. This process
logs what the children drew to the runs, and draws here whatever a child did not (it failed or was killed).
Children are forked on Linux only: macOS's system libraries are not fork-safe and Windows has no fork; there the
plots are drawn here, one after another, as before."""
from __future__ import annotations

import os
import shutil
import signal
import sys
import tempfile
import time
from pathlib import Path

from gradacc.study.console import say
from gradacc.study.deferred import signals_held
from gradacc.tracking.runs import copies_of

CHILD_WAIT_S = 300  # a child that has not drawn its plots by then is stopped, and they are drawn here


class PlotsLater:
    """Plots put off: (run, plot) pairs, `plot(root)` writing the run's PNG under `root`; `overlap`: a child draws
    each configuration's plots while the next one is measured (the device is not the CPU, whose cores it would
    take from the measurement)."""

    def __init__(self, overlap: bool = False):
        self.overlap = overlap
        self.waiting: list[tuple] = []  # not given to a child yet
        self.drawing: list[tuple[int | None, Path, list[tuple]]] = []  # (child pid or None, its folder, its plots)

    def append(self, run, plot) -> None:
        self.waiting.append((run, plot))

    def configuration_done(self) -> None:
        if self.overlap:
            self.start()

    def start(self) -> None:
        """A child draws the waiting plots into a temporary folder: one subfolder per plot, `<index>.done` beside
        it once its PNG is whole."""
        if not self.waiting:
            return
        batch, self.waiting = self.waiting, []
        folder = Path(tempfile.mkdtemp(prefix="gradacc-plots-"))
        self.drawing.append((_fork_drawing(batch, folder) if sys.platform == "linux" else None, folder, batch))


def _fork_drawing(batch: list[tuple], folder: Path) -> int | None:
    sys.stdout.flush()  # what is buffered now would otherwise be written twice, once by each process
    sys.stderr.flush()
    try:
        pid = os.fork()
    except OSError:
        return None  # drawn here
    if pid:
        return pid
    # the child: draws, then leaves at once, running none of this process's exit handlers (its store connections
    # and its runs belong to the parent); a plot it cannot draw is left to the parent, which says why
    try:
        for sig in (signal.SIGINT, signal.SIGTERM):  # a Ctrl-C stops it; the parent draws what is missing
            signal.signal(sig, signal.SIG_DFL)
        for index, (_run, plot) in enumerate(batch):
            try:
                plot(folder / str(index))
            except Exception:  # noqa: BLE001, S112 - the parent draws it again and reports the error
                continue
            (folder / f"{index}.done").touch()
    finally:
        os._exit(0)


def _wait(pid: int, deadline: float) -> None:
    while not os.waitpid(pid, os.WNOHANG)[0]:
        if time.monotonic() > deadline:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            return
        time.sleep(0.005)


def finish_drawing(plots: PlotsLater) -> None:
    """Waits for the children, then logs every plot to its run (which has ended by now), drawing here what no child
    drew. A plot that cannot be drawn or logged costs one line, not the study (its series are logged as CSV
    already). A signal waits until they are all logged."""
    if plots.waiting:  # never given to a child: drawn here
        plots.drawing.append((None, Path(tempfile.mkdtemp(prefix="gradacc-plots-")), plots.waiting))
        plots.waiting = []
    deadline = time.monotonic() + CHILD_WAIT_S
    with signals_held():
        for pid, folder, batch in plots.drawing:
            if pid is not None:
                _wait(pid, deadline)
            for index, (run, plot) in enumerate(batch):
                root = folder / str(index)
                try:
                    if not (folder / f"{index}.done").exists():  # a half-drawn file is drawn over
                        plot(root)
                    run.log_files({}, writers=[copies_of([p for p in root.rglob("*") if p.is_file()], root)])
                except Exception as err:  # noqa: BLE001 - derived from what is logged; the sweep goes on
                    say(f"a run's plot could not be drawn or logged: {type(err).__name__}: {err}".splitlines()[0])
            shutil.rmtree(folder, ignore_errors=True)
        plots.drawing.clear()
