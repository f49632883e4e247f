"""`gradacc bench`: the performance lines, each two figures measured side by side and their ratio."""
from __future__ import annotations

import json
import os
import tempfile
from dataclasses import asdict, replace
from pathlib import Path

import click

from .cli_types import KList, Threads
from .config import DEVICES, Protocol, smoke_protocol

LINES = ("streams", "tracking", "logging", "e2e", "graph")


def _lines(value: str) -> tuple[str, ...]:
    chosen = tuple(v.strip() for v in value.split(",") if v.strip())
    unknown = sorted(set(chosen) - set(LINES))
    if unknown or not chosen:
        raise click.BadParameter(f"unknown line(s) {', '.join(unknown) or '(none)'}; choose from "
                                 f"{', '.join(LINES)}", param_hint="--lines")
    return chosen


@click.command()
@click.option("--lines", default=",".join(LINES), show_default=True,
              help="Which lines to run (graph runs on CUDA only).")
@click.option("--device", type=click.Choice(DEVICES), default="auto", show_default=True)
@click.option("--threads", type=Threads(), default="auto", show_default=True,
              help="torch CPU threads for every line (auto = torch's default, one per physical core).")
@click.option("--data-dir", default="", show_default="$GRADACC_DATA_DIR, else ./data")
@click.option("--batches", type=click.IntRange(1), default=200, show_default=True,
              help="Micro-batches drawn per stream for the delivery rate.")
@click.option("--updates", type=click.IntRange(5), default=40, show_default=True,
              help="K=1 updates timed with each stream.")
@click.option("--tracking-epochs", type=click.IntRange(1), default=1, show_default=True,
              help="Epochs of the K=1 converge run timed tracked and bare (ABBA).")
@click.option("--e2e-epochs", type=click.IntRange(1), default=1, show_default=True,
              help="Epochs of the end-to-end study on both sides (5 = the full protocol).")
@click.option("--e2e-ks", type=KList(), default="1,2,4,8", show_default=True, help="K values of the end-to-end study.")
@click.option("--log-values", type=click.IntRange(1), default=800, show_default=True,
              help="Metric values written per side of the logging line (800 = a K=1 run's updates).")
@click.option("--smoke", type=click.BOOL, is_flag=False, flag_value=True, default=False,
              help="The smoke protocol everywhere (1,024 / 256 images, 1 epoch): checks the bench, measures little.")
@click.option("--cuda-graphs", type=click.BOOL, is_flag=False, flag_value=True, default=False,
              help="The end-to-end study's gradacc side replays its updates from CUDA graphs (CUDA only).")
@click.option("--json", "json_path", type=click.Path(dir_okay=False), default=None,
              help="Also write the lines to this JSON file.")
def bench(lines, device, threads, data_dir, batches, updates, tracking_epochs, e2e_epochs, e2e_ks, log_values,
          smoke, cuda_graphs, json_path):
    """Benchmarks: data streams, tracking overhead, logging cost, end to end against the seeds' reference,
    and (on CUDA) the micro-iteration against its CUDA-graph floor."""
    from .bench import bench_graph_floor, bench_logging, bench_streams, bench_tracking, tracking_store
    from .cli import given_params, prepare
    chosen = _lines(lines)
    protocol = smoke_protocol(1, Protocol.seed, "device") if smoke else Protocol()
    ctx = prepare([replace(protocol, cuda_graphs=cuda_graphs)], device, threads, data_dir)
    runtime = ctx.runtime
    click.echo(f"bench on {runtime.device_name} ({runtime.device.type}), {runtime.torch_threads} torch threads, "
               f"DataLoader workers 2, {os.cpu_count()} CPUs", err=True)
    results = []

    def emit(line):
        results.append(line)
        click.echo(line.text())

    if "streams" in chosen:
        for line in bench_streams(ctx, protocol, batches, updates):
            emit(line)
    if "tracking" in chosen:
        with tempfile.TemporaryDirectory(prefix="gradacc-bench-store-") as tmp, \
                tracking_store(f"sqlite:///{Path(tmp) / 'mlflow.db'}"):
            cwd = os.getcwd()
            os.chdir(tmp)  # the store's artifacts (./mlruns) land in the temporary folder too
            try:
                tracked = replace(protocol, epochs=tracking_epochs)
                emit(bench_tracking(ctx, tracked, "converge", given_params(
                    device, "device", threads, data_dir, smoke, False, k=1, epochs=tracking_epochs, seed=42), 1))
            finally:
                os.chdir(cwd)
    if "logging" in chosen:
        emit(bench_logging(log_values))
    if "graph" in chosen:
        if runtime.is_cuda:
            emit(bench_graph_floor(ctx, protocol, protocol.timed_micro_iters))
        else:
            click.echo("micro-iteration vs CUDA-graph floor: skipped (needs CUDA)")
    if "e2e" in chosen:
        from .bench_e2e import bench_end_to_end
        line, table = bench_end_to_end(ctx.data_path, e2e_ks, replace(protocol, epochs=e2e_epochs,
                                                                      cuda_graphs=cuda_graphs),
                                       runtime.torch_threads, runtime.device.type)
        emit(line)
        click.echo(table)
    if json_path:
        Path(json_path).write_text(json.dumps([dict(asdict(r), ratio=r.ratio, met=r.met) for r in results],
                                              indent=1))
