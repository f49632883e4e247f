"""The study's fixed costs by kind, for `gradacc bench`'s end-to-end line: `python -m gradacc.bench.costs --out FILE
<gradacc arguments>` runs the command as `python -m gradacc` does, with a stopwatch around the steps a study pays
outside its measurements, and writes their seconds to FILE (JSON) when the command returns.

Imports: the modules the sweep command imports when it starts (torch, torchvision, MLflow's client, pandas,
matplotlib), imported here first, as the command would; what is imported later counts where it happens (MLflow's
sqlalchemy store: the store). Each second goes to one kind, the innermost step running (a stack). Inside a tracked
run everything is the run's: the bench takes the runs' own `wall_time_s` out of that time to get what tracking
them cost. A hook on every import statement would have added about 4% to the imports; this adds nothing."""
from __future__ import annotations

import importlib
import json
import runpy
import sys
import time
from pathlib import Path

RUNS = "runs"
COMMAND = ("gradacc.cli", "gradacc.distributed.spread", "gradacc.parts.context", "gradacc.study.compare",
           "gradacc.study.run", "gradacc.study.sweep")  # what `gradacc sweep` imports before it measures
# (module, function, kind): looked up at call time by their callers, so that replacing them here takes effect
STEPS = (("gradacc.parts.context", "prepare", "data"),
         ("gradacc.tracking.experiments", "experiment_id", "store"),
         ("gradacc.study.run", "measure_runs", RUNS),
         ("gradacc.study.sweep", "finish_drawing", "per-run PNGs"),
         ("gradacc.study.compare", "run_compare", "compare"))
KINDS = ("start", "imports", "data", "store", "runs' tracking", "per-run PNGs", "compare", "exit", "other")


class Stopwatch:
    """Seconds by kind, each charged to the innermost kind open (the bottom one: 'other')."""

    def __init__(self, clock=time.perf_counter):
        self.clock = clock
        self.stack = ["other"]
        self.seconds: dict[str, float] = {}
        self.mark = clock()

    def _charge(self) -> None:
        now = self.clock()
        self.seconds[self.stack[-1]] = self.seconds.get(self.stack[-1], 0.0) + now - self.mark
        self.mark = now

    def timed(self, kind: str, call, *args, **kwargs):
        self._charge()
        self.stack.append(kind)
        try:
            return call(*args, **kwargs)
        finally:
            self._charge()
            self.stack.pop()

    def wrap(self, kind: str, function):
        def timed(*args, **kwargs):
            return self.timed(kind, function, *args, **kwargs)
        timed.__wrapped__ = function
        return timed

    def totals(self) -> dict[str, float]:
        self._charge()
        return dict(self.seconds)


def install(watch: Stopwatch) -> None:
    """The command's modules imported (timed as 'imports'), then the stopwatch around every step in STEPS; a step
    that is gone is an error here (rename it in STEPS), not a silent zero."""
    for module_name in COMMAND:
        watch.timed("imports", importlib.import_module, module_name)
    for module_name, name, kind in STEPS:
        module = importlib.import_module(module_name)
        setattr(module, name, watch.wrap(kind, getattr(module, name)))


def main() -> None:
    started = time.time()
    if len(sys.argv) < 3 or sys.argv[1] != "--out":
        sys.exit("usage: python -m gradacc.bench.costs --out FILE <gradacc arguments>")
    out, args = Path(sys.argv[2]), sys.argv[3:]
    watch = Stopwatch()
    if args[:1] == ["sweep"]:  # as `gradacc sweep` does once its options are parsed, before it imports its floors
        from gradacc.tracking import new_store
        new_store.start()  # a new sqlite store made beside the imports (tracking/new_store.py)
    install(watch)
    sys.argv = ["gradacc", *args]  # as the process's own command line: cli/heap.py's policy applies
    try:
        runpy.run_module("gradacc", run_name="__main__")  # `python -m gradacc`: the program, not a floor below
    finally:
        out.write_text(json.dumps({"seconds": watch.totals(), "started_at": started, "returned_at": time.time()}))


if __name__ == "__main__":
    main()
