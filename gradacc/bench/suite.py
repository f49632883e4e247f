"""`gradacc bench`: the chosen performance lines run one after another in this process, printed as they come."""
from __future__ import annotations

import json
import os
import sys
from dataclasses import asdict, replace
from pathlib import Path

from gradacc.bench.e2e import bench_end_to_end
from gradacc.bench.lines import Line, temporary_store
from gradacc.bench.measure import bench_graph_floor, bench_logging, bench_streams, bench_tracking
from gradacc.bench.noise import bench_noise_timing
from gradacc.bench.system_metrics import bench_system_metrics
from gradacc.core.config import Protocol, smoke_protocol
from gradacc.core.request import Request, Settings
from gradacc.parts.context import prepare


def run_bench(chosen, device, threads, data_dir, batches, updates, tracking_epochs, e2e_epochs, e2e_ks, log_values,
              smoke, cuda_graphs, json_path, noise_k=4, noise_updates=20, noise_pairs=3, monitor_side_s=10.0,
              monitor_pairs=3, bench_seeds=5) -> None:
    """The lines in `chosen` (names from gradacc.bench.lines.LINES), each printed as it is measured; also written
    to `json_path` if given."""
    protocol = smoke_protocol(1, Protocol.seed, "device") if smoke else Protocol()
    settings = Settings.of(device, threads, data_dir=data_dir)
    ctx = prepare([replace(protocol, cuda_graphs=cuda_graphs)], settings)
    runtime = ctx.runtime
    print(f"bench on {runtime.device_name} ({runtime.device.type}), {runtime.torch_threads} torch threads, "
          f"DataLoader workers 2, {os.cpu_count()} CPUs", file=sys.stderr)
    results = []

    def emit(line):
        results.append(line)
        print(line.text())

    if "streams" in chosen:
        for line in bench_streams(ctx, protocol, batches, updates):
            emit(line)
    if "tracking" in chosen:
        with temporary_store():
            tracked = replace(protocol, epochs=tracking_epochs)
            given = dict(device=device, loader="device", threads=str(threads), data_dir=settings.data_dir,
                         smoke=str(smoke).lower(), cuda_graphs="false", k="1", epochs=str(tracking_epochs),
                         seed=str(tracked.seed))  # what `gradacc converge` logs as given
            emit(bench_tracking(ctx, Request((tracked,), settings, tuple(given.items())), "converge", 1))
    if "logging" in chosen:
        emit(bench_logging(log_values))
    if "noise" in chosen:
        emit(bench_noise_timing(ctx, protocol, noise_k, noise_updates, noise_pairs))
    if "system-metrics" in chosen:
        with temporary_store():
            line = bench_system_metrics(ctx, protocol, monitor_side_s, monitor_pairs)
        if isinstance(line, Line):
            emit(line)
        else:  # skipped, and why
            print(line)
    if "graph" in chosen:
        if runtime.is_cuda:
            emit(bench_graph_floor(ctx, protocol, protocol.timed_micro_iters))
        else:
            print("micro-iteration vs CUDA-graph floor: skipped (needs CUDA)")
    for name, seeds in (("e2e", 1), ("seeds", bench_seeds)):  # one seed; several against the reference's one
        if name not in chosen:
            continue
        lines, table = bench_end_to_end(ctx.data_path, e2e_ks, replace(protocol, epochs=e2e_epochs,
                                                                       cuda_graphs=cuda_graphs),
                                        runtime.torch_threads, runtime.device.type, seeds=seeds)
        for line in lines:
            emit(line)
        print(table)
    if json_path:
        Path(json_path).write_text(json.dumps([dict(asdict(r), ratio=r.ratio, met=r.met) for r in results],
                                              indent=1))
