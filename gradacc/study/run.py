"""One tracked run of one part of one configuration: measure, then log everything at once. The lifecycle (tags,
params, progress, the divergence tag, logging whatever was measured) is written once, here, for every part and
for the DDP worker's run."""
from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import time
from dataclasses import dataclass

from gradacc.analysis.plots.run import plot_run
from gradacc.core.config import Protocol
from gradacc.core.data import FOLDER, TEST_FILE, TRAIN_FILES, class_counts
from gradacc.core.errors import Diverged
from gradacc.core.noise import status as noise_status
from gradacc.core.request import Request
from gradacc.core.runtime import environment_report
from gradacc.core.timing import middle_bounds
from gradacc.names import (
    CONFIG,
    DDP,
    EVALUATION,
    FAILURE,
    NOISE_SCALE,
    NOTE,
    TOGETHER,
    TRAINING,
    VARIANT,
    part_tags,
    run_name,
)
from gradacc.parts.context import Context, Result
from gradacc.parts.converge import PROGRESS, run_converge
from gradacc.parts.micro import run_micro
from gradacc.parts.together import run_together
from gradacc.parts.update import run_update_part
from gradacc.study.console import progress_bar, say
from gradacc.study.deferred import signals_held
from gradacc.study.figures import PlotsLater
from gradacc.tracking.datasets import subset_record
from gradacc.tracking.live import LiveWriter
from gradacc.tracking.orphans import missing_plot
from gradacc.tracking.runs import TrackedRun, print_link, series_csv, tracked_run

RUNNERS = {"micro": run_micro, "update": run_update_part, "converge": run_converge}
EVALUATES = ("converge", DDP)  # the parts that measure test accuracy; every part trains on the training subset


def progress_length(part: str, protocol: Protocol) -> int:
    if part == "micro":
        return protocol.warmup_micro_iters + protocol.timed_micro_iters
    return protocol.total_updates


@functools.cache
def environment_text(runtime) -> str:
    return environment_report(runtime)  # reading every package's metadata takes a moment: once per process


def config_key(part: str, protocol: Protocol, ctx: Context, timed: bool = True) -> str:
    """What makes two runs the same measurement: part, the whole protocol, the device, threads and code version;
    and whether it has timings (a seed trained together with others has none)."""
    runtime = ctx.runtime.as_params()
    fields = {"part": part, **protocol.as_params(),
              **{key: runtime[key] for key in ("device_type", "device_name", "torch_threads", "tf32_conv",
                                               "tf32_matmul", "code_version")},
              **({} if timed else {"timings": "none"})}
    return hashlib.sha1(json.dumps(fields, sort_keys=True).encode()).hexdigest()[:16]


def subset_inputs(protocol: Protocol, ctx: Context, parts) -> list[dict]:
    """The dataset inputs of a run of `parts`: the protocol's training subset, and its test subset where one of
    the parts evaluates; each with the digest of exactly the images and labels used (computed once per process)."""
    folder = ctx.data_path / FOLDER
    uses = [(TRAINING, "train", ctx.subset.train_images, ctx.subset.train_labels, protocol.train_size,
             f"{TRAIN_FILES[0]} to {TRAIN_FILES[-1]}")]
    if any(part in EVALUATES for part in parts):
        uses.append((EVALUATION, "test", ctx.subset.test_images, ctx.subset.test_labels, protocol.test_size,
                     TEST_FILE))
    return [subset_record(context, ctx.subset_digest(split, n), folder, n, class_counts(labels[:n]),
                          images.shape[1:], files) for context, split, images, labels, n, files in uses]


def write_result(run: TrackedRun, result: Result, protocol: Protocol, ctx: Context,
                 name: str | None = None, plots_later: PlotsLater | None = None) -> None:
    """Metrics (series + summaries, batched), the series as CSV, the run's plot and environment.txt. With
    `plots_later` (a sweep's study/figures.PlotsLater), the plot is not drawn now but put off there: the sweep draws
    them after its last configuration (or beside the next), so none waits between two measurements."""
    run.log_metrics(result.series, result.summaries)
    if result.model is not None:
        run.log_model(result.model)
    files = {f"series/{name}.csv": series_csv(*steps_values) for name, steps_values in result.series.items()}
    files["environment.txt"] = environment_text(ctx.runtime)
    total = len(result.series.get("update_time_s", ([], []))[0])
    window = middle_bounds(total) if total else None
    title = f"{name or run_name(result.part, protocol.k, protocol.smoke)} on {ctx.runtime.device_name}"

    measured = {key: steps_values for key, steps_values in result.series.items() if key not in PROGRESS}

    def plot(root):  # the measurements; epoch, images_seen and lr are axes, not figures to draw
        plot_run(title, measured, root / "plots" / f"{result.part}.png", window=window)

    if plots_later is None:
        run.log_files(files, writers=[plot])
        return
    run.log_files(files)
    plots_later.append(run, plot)


def plot_if_missing(run_id: str, exp_id: str, part: str) -> bool:
    """Draws and logs the plot of a finished run that lacks it (its process was killed before a sweep drew the plots
    it had put off), from the series the run logged; True if it drew one."""
    found = missing_plot(run_id, part)
    if found is None:
        return False
    name, device_name, series = found
    total = len(series.get("update_time_s", ([], []))[0])

    def plot(root):
        plot_run(f"{name} on {device_name}", series, root / "plots" / f"{part}.png",
                 window=middle_bounds(total) if total else None)

    with signals_held():
        TrackedRun(run_id, exp_id).log_files({}, writers=[plot])
    return True


HEADLINES = (("micro_iter_ms_mean", "micro-iteration {:.4g} ms"), ("update_time_s_mean", "update {:.4g} s"),
             ("throughput_img_s", "{:.4g} images/s"), ("test_accuracy", "test accuracy {:.1f} %"),
             ("final_train_loss", "final training loss {:.3f}"),
             ("noise_scale_simple_final", "gradient noise scale B_simple {:.0f} images (last epoch)"),
             ("wall_time_s", "{:.0f} s of wall time"))


def description(what: str, summaries: dict[str, float], finished: bool) -> str:
    """The run's description in the UI: what it measured, then its headline figures."""
    figures = ", ".join(text.format(summaries[key]) for key, text in HEADLINES if key in summaries)
    return (f"{what[0].upper()}{what[1:]}. " + ("Results: " if finished else "Stopped early; measured so far: ")
            + figures + ".")


@dataclass
class Planned:
    """One run to open: its name, part, tags, params (as given and resolved), protocol, and what it measures (the
    first words of its description)."""

    name: str
    part: str
    tags: dict[str, str]
    given: dict[str, str]
    resolved: dict[str, str]
    protocol: Protocol
    what: str


def measure_runs(planned: list[Planned], ctx: Context, intro: str, measure, length: int, exp_id: str,
                 parent_run_id: str | None = None, plots_later: PlotsLater | None = None, timed: bool = True,
                 started=None) -> list[Result]:
    """Tracked runs around one `measure(results, advance)` (a progress bar of `length` steps) that fills a Result per
    run and returns, per run, the error that stopped that run alone (None: it finished); seeds trained together
    are several runs measured at once, a part's run is one. Whatever was measured is logged even when the
    measurement fails or is interrupted, each run then ending FAILED or KILLED. `timed=False`: no wall time or
    peak memory (runs that share a device have none of their own). `started(run_ids)`, once the runs are open:
    where a process that may be killed outright says which runs someone else must end if it is."""
    results = [Result(p.part) for p in planned]
    stopped: list[BaseException | None] = [None] * len(planned)
    with contextlib.ExitStack() as held, contextlib.ExitStack() as runs_open:  # held: exits after the runs end
        runs = [runs_open.enter_context(tracked_run(p.name, p.tags, exp_id, parent_run_id, measures=True))
                for p in planned]
        if started is not None:
            started([run.run_id for run in runs])
        for run, p in zip(runs, planned):
            run.log_inputs(subset_inputs(p.protocol, ctx, [p.part]))
        for run, p in zip(runs, planned):
            run.log_params(p.given, p.resolved)  # last before measuring: the resolved params say it begins
        writers = [LiveWriter(run) for run in runs]
        for result, writer in zip(results, writers):
            result.live = writer
        say(intro)
        ctx.reset_peak_memory()
        start = time.perf_counter()
        finished = False
        try:
            with progress_bar(length, planned[0].name) as advance:
                stopped = measure(results, advance)
            held.enter_context(signals_held())  # measured in full: a signal waits until it is all logged
            finished = True
        except Diverged as err:
            for run in runs:
                run.set_tags({FAILURE: str(err)})
            raise
        finally:
            for run, p, result, error, writer in zip(runs, planned, results, stopped, writers):
                writer.close()  # what it holds is written before the rest, which skips it
                if timed:
                    result.summaries.update(wall_time_s=time.perf_counter() - start,
                                            peak_memory_mb=ctx.peak_memory_mb())
                write_result(run, result, p.protocol, ctx, p.name, plots_later)
                run.set_tags({NOTE: description(p.what, result.summaries, finished and error is None)})
                if error is not None:  # this run stopped alone; the others go on to FINISHED
                    run.set_tags({FAILURE: str(error)})
                    run.end("FAILED")
        for p, result in zip(planned, results):
            label = p.name + (f" seed {p.protocol.seed}" if len(planned) > 1 else "")
            say(f"{label}: " + ", ".join(f"{k}={v:.4g}" for k, v in result.summaries.items()))
        runs_open.close()  # the runs end (FINISHED where measured in full), then their links; then a held signal
        for run in runs:
            print_link(run.experiment_id, run.run_id)
    failed = [f"{p.name} seed {p.protocol.seed}: {error}" for p, error in zip(planned, stopped) if error]
    if failed:
        raise Diverged("; ".join(failed) + (f" (the other {len(planned) - len(failed)} runs finished)"
                                            if len(failed) < len(planned) else ""))
    return results


def measure_tracked(planned: Planned, ctx: Context, measure, length: int, exp_id: str,
                    parent_run_id: str | None = None, plots_later: PlotsLater | None = None, started=None) -> Result:
    """One tracked run around `measure(result, advance)` (see `measure_runs`); its intro is its name and what."""
    def measure_one(results: list[Result], advance) -> list[None]:
        measure(results[0], advance)
        return [None]

    return measure_runs([planned], ctx, f"{planned.name}: {planned.what}", measure_one, length, exp_id,
                        parent_run_id, plots_later, started=started)[0]


def run_tags_of(part: str, protocol: Protocol, ctx: Context, tags: dict[str, str] | None,
                timed: bool = True) -> dict[str, str]:
    run_tags = {**part_tags(part, protocol.smoke), CONFIG: config_key(part, protocol, ctx, timed),
                VARIANT: protocol.variant, **(tags or {})}
    if part == "converge":
        run_tags[NOISE_SCALE] = noise_status(protocol.noise_scale, protocol.k)
    return run_tags


def what_is_measured(part: str, protocol: Protocol, ctx: Context) -> str:
    """'converge on <device> (cuda), k=4, effective batch 256, 200 updates; ...': a run's intro after its name."""
    work = (f"{protocol.warmup_micro_iters} warm-up + {protocol.timed_micro_iters} timed micro-iterations"
            if part == "micro" else f"{protocol.total_updates} updates")
    return (f"{part} on {ctx.runtime.device_name} ({ctx.runtime.device.type}), k={protocol.k}, "
            f"effective batch {protocol.effective_batch}, {work}"
            + ("" if protocol.variant == "protocol" else f"; variant {protocol.variant}")
            + (f"; each epoch takes {protocol.images_per_epoch:,} images ({protocol.updates_per_epoch} whole updates), "
               f"a pass over the subset {protocol.images_per_pass:,}: the stream runs on, so its passes drift "
               "against the epochs" if protocol.images_per_epoch != protocol.images_per_pass else "")
            + (f"; each pass drops the subset's last {protocol.train_size - protocol.images_per_pass} shuffled "
               "images (not a whole micro-batch)" if protocol.images_per_pass != protocol.train_size else "")
            + (f"; noise scale {noise_status(protocol.noise_scale, protocol.k)}" if part == "converge" else ""))


def execute(part: str, protocol: Protocol, ctx: Context, request: Request, parent_run_id: str | None = None,
            tags: dict[str, str] | None = None, plots_later: PlotsLater | None = None) -> Result:
    """One tracked run of `part` of `protocol` (one of the request's), into the request's experiment; whatever was
    measured is logged even when the run fails or is interrupted. With the request's `log_model`, a run that trained
    every epoch also logs its model (mlflow.pytorch), beside its metrics."""
    def measure(result: Result, advance) -> None:
        result.keep_model = request.log_model
        RUNNERS[part](protocol, ctx, result, advance)

    planned = Planned(run_name(part, protocol.k, protocol.smoke), part, run_tags_of(part, protocol, ctx, tags),
                      request.child_params(protocol), {**protocol.as_params(), **ctx.params()}, protocol,
                      what_is_measured(part, protocol, ctx))
    return measure_tracked(planned, ctx, measure, progress_length(part, protocol), request.experiment_id,
                           parent_run_id, plots_later)


def execute_together(protocols: list[Protocol], ctx: Context, request: Request, parent_run_id: str | None = None,
                     tags: dict[str, str] | None = None, plots_later: PlotsLater | None = None) -> list[Result]:
    """The converge runs of several seeds of one protocol trained together (gradacc/parts/together.py): one run per
    seed, as a solo run of that seed but tagged with the group's seeds and with no timings. A seed that diverges
    ends its run FAILED and the others go on; then Diverged names it."""
    seeds = ", ".join(str(p.seed) for p in protocols)
    first = protocols[0]
    name = run_name("converge", first.k, first.smoke)
    planned = [Planned(name, "converge", run_tags_of("converge", p, ctx, {**(tags or {}), TOGETHER: seeds}, False),
                       request.child_params(p), {**p.as_params(), **ctx.params()}, p,
                       f"{what_is_measured('converge', p, ctx)}; seed {p.seed}, trained together with seeds "
                       f"{seeds} on one device, so no timings") for p in protocols]
    intro = (f"{name}: seeds {seeds} trained together, each a {what_is_measured('converge', first, ctx)}; "
             "no timings")
    return measure_runs(planned, ctx, intro, lambda results, advance: run_together(protocols, ctx, results, advance),
                        first.total_updates, request.experiment_id, parent_run_id, plots_later, timed=False)
