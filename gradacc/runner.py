"""Runs one part of one configuration as a tracked run: measure, then log everything at once."""
from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import sys
import time

import click

from .config import Protocol
from .parts import Context, Result
from .errors import Diverged
from .parts.converge import run_converge
from .parts.micro import run_micro
from .noise import status as noise_status
from .parts.update import run_update_part
from .plots import plot_run
from .runtime import environment_report
from .timing import middle_bounds
from .tracking import TrackedRun, print_link, series_csv, tracked_run

PARTS = {"micro": run_micro, "update": run_update_part, "converge": run_converge}


def progress_length(part: str, protocol: Protocol) -> int:
    if part == "micro":
        return protocol.warmup_micro_iters + protocol.timed_micro_iters
    return protocol.total_updates


@contextlib.contextmanager
def progress_bar(length: int, label: str):
    """click's progress bar on a terminal; silent otherwise. Yields a callback `advance(n)`."""
    if not sys.stderr.isatty():
        yield lambda n=1: None
        return
    with click.progressbar(length=length, label=label, file=sys.stderr) as bar:
        yield bar.update


@functools.cache
def _environment_text(runtime) -> str:
    return environment_report(runtime)  # reading every package's metadata takes a moment: once per process


def run_name(part: str, protocol: Protocol) -> str:
    return f"{part}-k{protocol.k}" + ("-smoke" if protocol.smoke else "")


def config_key(part: str, protocol: Protocol, ctx: Context) -> str:
    """What makes two runs the same measurement: part, the whole protocol, the device, threads and code version."""
    runtime = ctx.runtime.as_params()
    fields = {"part": part, **protocol.as_params(),
              **{key: runtime[key] for key in ("device_type", "device_name", "torch_threads", "code_version")}}
    return hashlib.sha1(json.dumps(fields, sort_keys=True).encode()).hexdigest()[:16]


def write_result(run: TrackedRun, result: Result, protocol: Protocol, ctx: Context,
                 name: str | None = None) -> None:
    """Metrics (series + summaries, batched), the series as CSV, the run's plot and environment.txt."""
    run.log_metrics(result.series, result.summaries)
    files = {f"series/{name}.csv": series_csv(*steps_values) for name, steps_values in result.series.items()}
    files["environment.txt"] = _environment_text(ctx.runtime)
    total = len(result.series.get("update_time_s", ([], []))[0])
    window = middle_bounds(total) if total else None
    title = f"{name or run_name(result.part, protocol)} on {ctx.runtime.device_name}"

    def plot(root):
        plot_run(title, result.series, root / "plots" / f"{result.part}.png", window=window)

    run.log_files(files, writers=[plot])


def execute(part: str, protocol: Protocol, ctx: Context, given: dict[str, str], experiment: str | None = None,
            parent_run_id: str | None = None, tags: dict[str, str] | None = None) -> Result:
    """One tracked run of `part`; whatever was measured is logged even when the run fails or is interrupted."""
    name = run_name(part, protocol)
    run_tags = {"gradacc.part": part, "gradacc.smoke": str(protocol.smoke).lower(),
                "gradacc.config": config_key(part, protocol, ctx), "gradacc.variant": protocol.variant,
                **(tags or {})}
    if part == "converge":
        run_tags["gradacc.noise_scale"] = noise_status(protocol.noise_scale, protocol.k)
    with tracked_run(name, run_tags, experiment, parent_run_id) as run:
        run.log_params(given, {**protocol.as_params(), **ctx.params()})
        work = (f"{protocol.warmup_micro_iters} warm-up + {protocol.timed_micro_iters} timed micro-iterations"
                if part == "micro" else f"{protocol.total_updates} updates")
        click.echo(f"{name}: {part} on {ctx.runtime.device_name} ({ctx.runtime.device.type}), k={protocol.k}, "
                   f"effective batch {protocol.effective_batch}, {work}"
                   + ("" if protocol.variant == "protocol" else f"; variant {protocol.variant}")
                   + (f"; noise scale {run_tags['gradacc.noise_scale']}" if part == "converge" else ""), err=True)
        result = Result(part)
        ctx.reset_peak_memory()
        start = time.perf_counter()
        try:
            with progress_bar(progress_length(part, protocol), name) as advance:
                PARTS[part](protocol, ctx, result, advance)
        except Diverged as err:
            run.set_tags({"gradacc.failure": str(err)})
            raise
        finally:
            result.summaries.update(wall_time_s=time.perf_counter() - start,
                                    peak_memory_mb=ctx.peak_memory_mb())
            write_result(run, result, protocol, ctx)
        click.echo(f"{name}: " + ", ".join(f"{k}={v:.4g}" for k, v in result.summaries.items()), err=True)
    print_link(run.experiment_id, run.run_id)
    return result

