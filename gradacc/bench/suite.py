"""`gradacc bench`: the chosen performance lines run one after another in this process, printed as they come."""
from __future__ import annotations

import json
import os
import sys
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from gradacc.bench.e2e import bench_end_to_end
from gradacc.bench.lines import Line, temporary_store
from gradacc.bench.measure import bench_graph_floor, bench_logging, bench_streams, bench_tracking
from gradacc.bench.noise import bench_noise_timing
from gradacc.bench.system_metrics import bench_system_metrics
from gradacc.core.config import Protocol, smoke_protocol
from gradacc.core.request import Request, Settings
from gradacc.parts.context import prepare


@dataclass(frozen=True)
class BenchOptions:
    """`gradacc bench`'s options: which lines, where, and each line's sizes."""

    lines: tuple[str, ...]
    device: str = "auto"
    threads: int | str = "auto"
    data_dir: str = "auto"
    batches: int = 200
    updates: int = 40
    tracking_epochs: int = 1
    tracking_blocks: int = 2
    e2e_epochs: int = 1
    e2e_ks: tuple[int, ...] = (1, 2, 4, 8)
    log_values: int = 800
    smoke: bool = False
    cuda_graphs: bool = False
    json_path: str | None = None
    noise_k: int = 4
    noise_updates: int = 20
    noise_pairs: int = 3
    system_metrics_side_s: float = 10.0
    system_metrics_pairs: int = 3
    bench_seeds: int = 5


def run_bench(options: BenchOptions) -> None:
    """The lines in `options.lines` (names from gradacc.bench.lines.LINES), each printed as it is measured; also
    written to `options.json_path` if given."""
    o, chosen = options, options.lines
    protocol = smoke_protocol(1, Protocol.seed, "device") if o.smoke else Protocol()
    settings = Settings.of(o.device, o.threads, data_dir=o.data_dir)
    ctx = prepare([replace(protocol, cuda_graphs=o.cuda_graphs)], settings)
    runtime = ctx.runtime
    print(f"bench on {runtime.device_name} ({runtime.device.type}), {runtime.torch_threads} torch threads, "
          f"DataLoader workers 2, {os.cpu_count()} CPUs", file=sys.stderr)
    results = []

    def emit(line):
        results.append(line)
        print(line.text())

    if "streams" in chosen:
        for line in bench_streams(ctx, protocol, o.batches, o.updates):
            emit(line)
    if "tracking" in chosen:
        with temporary_store():
            tracked = replace(protocol, epochs=o.tracking_epochs)
            given = dict(device=o.device, loader="device", threads=str(o.threads), data_dir=settings.data_dir,
                         smoke=str(o.smoke).lower(), cuda_graphs="false", k="1", epochs=str(o.tracking_epochs),
                         seed=str(tracked.seed))  # what `gradacc converge` logs as given
            emit(bench_tracking(ctx, Request((tracked,), settings, tuple(given.items())), "converge",
                                o.tracking_blocks))
    if "logging" in chosen:
        emit(bench_logging(o.log_values))
    if "noise" in chosen:
        emit(bench_noise_timing(ctx, protocol, o.noise_k, o.noise_updates, o.noise_pairs))
    if "system-metrics" in chosen:
        with temporary_store():
            line = bench_system_metrics(ctx, protocol, o.system_metrics_side_s, o.system_metrics_pairs)
        if isinstance(line, Line):
            emit(line)
        else:  # skipped, and why
            print(line)
    if "graph" in chosen:
        if runtime.is_cuda:
            emit(bench_graph_floor(ctx, protocol, protocol.timed_micro_iters))
        else:
            print("micro-iteration vs CUDA-graph floor: skipped (needs CUDA)")
    for name, seeds in (("e2e", 1), ("seeds", o.bench_seeds)):  # one seed; several against the reference's one
        if name not in chosen:
            continue
        lines, table = bench_end_to_end(ctx.data_path, o.e2e_ks, replace(protocol, epochs=o.e2e_epochs,
                                                                         cuda_graphs=o.cuda_graphs),
                                        runtime.torch_threads, runtime.device.type, seeds=seeds)
        for line in lines:
            emit(line)
        print(table)
    if o.json_path:
        Path(o.json_path).write_text(json.dumps([dict(asdict(r), ratio=r.ratio, met=r.met) for r in results],
                                                indent=1))
