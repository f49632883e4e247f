"""Benchmark: the cost of measuring the gradient noise scale on a converge run, with vs without, interleaved.

Times each update from the progress callback (the gap between consecutive updates of an epoch: the K fetches,
forwards, backwards, snapshots and the step; the first update of each epoch and the evaluation are left out),
and the whole run_converge call. Prints the medians and the with/without ratios.

    GRADACC_DATA_DIR=../shared/data python benchmarks/noise_cost.py --k 4 --pairs 3"""
from __future__ import annotations

import argparse
import dataclasses
import statistics
import time

from gradacc.config import smoke_protocol
from gradacc.data import resolve_data_dir
from gradacc.parts import Context, Result
from gradacc.parts.converge import run_converge
from gradacc.runtime import resolve_runtime


def one_run(protocol, ctx) -> tuple[float, float]:
    """(median seconds per update within epochs, seconds of the whole run_converge call)."""
    stamps = []
    start = time.perf_counter()
    run_converge(protocol, ctx, Result("converge"), progress=lambda n=1: stamps.append(time.perf_counter()))
    whole = time.perf_counter() - start
    per_epoch = protocol.updates_per_epoch
    gaps = [b - a for i, (a, b) in enumerate(zip(stamps, stamps[1:])) if (i + 1) % per_epoch]
    return statistics.median(gaps), whole


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--k", type=int, default=4)
    parser.add_argument("--pairs", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=2, help="epochs of the smoke subset (1,024 images)")
    parser.add_argument("--device", default="auto")
    args = parser.parse_args()
    runtime = resolve_runtime(args.device, None)
    ctx = Context.prepare(runtime, resolve_data_dir(None), 1_024, 256)
    base = dataclasses.replace(smoke_protocol(args.k, 42, "device"), epochs=args.epochs)
    modes = {"with": dataclasses.replace(base, noise_scale="on"),
             "without": dataclasses.replace(base, noise_scale="off")}
    one_run(modes["without"], ctx)  # warm-up: allocator, caches, first-call overheads
    times = {mode: [] for mode in modes}
    for pair in range(args.pairs):
        for mode in (("with", "without") if pair % 2 == 0 else ("without", "with")):  # alternate who goes first
            times[mode].append(one_run(modes[mode], ctx))
            print(f"pair {pair} {mode:7s}: {times[mode][-1][0] * 1e3:8.1f} ms/update, "
                  f"{times[mode][-1][1]:6.2f} s whole", flush=True)
    update = {m: statistics.median(t[0] for t in v) for m, v in times.items()}
    whole = {m: statistics.median(t[1] for t in v) for m, v in times.items()}
    print(f"{runtime.device_name}, K={args.k}, {base.updates_per_epoch} updates/epoch x {args.epochs} epochs, "
          f"{args.pairs} interleaved pairs (medians):")
    print(f"  per update: {update['with'] * 1e3:.1f} ms with vs {update['without'] * 1e3:.1f} ms without, "
          f"ratio {update['with'] / update['without']:.3f}")
    print(f"  whole run:  {whole['with']:.2f} s with vs {whole['without']:.2f} s without, "
          f"ratio {whole['with'] / whole['without']:.3f}")


if __name__ == "__main__":
    main()
