"""Benchmark: the cost of measuring the gradient noise scale, each way (core/snapshots.py), on the smoke subset.

Three models of the same seed train side by side: without snapshots, with the per-parameter hooks and with the
flat copy; their updates are interleaved (none, hook, copy, then copy, hook, none, ...) so that drifts in the
machine's load hit all alike, each update timed whole with timing.Timer. Prints per way the medians of the
update, of its snapshot spans, and of the update minus the spans (what Part 3 reports as the update time: it
should match the update without snapshots), so the cheaper way per device can be read off.

    GRADACC_DATA_DIR=/path/to/cifar python benchmarks/noise_cost.py --k 4 --updates 12"""
from __future__ import annotations

import argparse
import statistics

from gradacc.core.config import smoke_protocol
from gradacc.core.data import resolve_data_dir
from gradacc.core.engine import run_update
from gradacc.core.model import build_model, build_optimizer
from gradacc.core.runtime import resolve_runtime
from gradacc.core.snapshots import CopySnapshots, HookSnapshots
from gradacc.core.timing import Timer
from gradacc.parts.context import Context

WAYS = {"none": None, "hook": HookSnapshots, "copy": CopySnapshots}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--k", type=int, default=4)
    parser.add_argument("--updates", type=int, default=12, help="timed updates per way")
    parser.add_argument("--warmup", type=int, default=1, help="untimed updates per way first")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()
    runtime = resolve_runtime(args.device, args.threads)
    protocol = smoke_protocol(args.k, 42, "device").validate()
    ctx = Context.prepare(runtime, resolve_data_dir(None), protocol.train_size, protocol.test_size)
    setups = {}
    for way, make in WAYS.items():
        model = build_model(protocol.seed, runtime.device)
        model.train()
        setups[way] = (model, build_optimizer(model, protocol), ctx.stream(protocol),
                       make(model, protocol.k) if make else None, Timer(runtime.device))
    try:
        for u in range(args.warmup + args.updates):
            for way in (WAYS if u % 2 == 0 else reversed(WAYS)):
                model, optimizer, stream, snapshots, timer = setups[way]
                if u < args.warmup:
                    run_update(model, optimizer, stream, protocol.k, after_backward=snapshots)
                    continue
                with timer:
                    run_update(model, optimizer, stream, protocol.k, after_backward=snapshots)
    finally:
        for _, _, stream, snapshots, _ in setups.values():
            stream.close()
    print(f"{runtime.device_name}, K={protocol.k}, {args.updates} updates per way, interleaved; medians:")
    for way, (_, _, _, snapshots, timer) in setups.items():
        whole = timer.seconds()
        spans = snapshots.spans.seconds()[args.warmup:] if snapshots else [0.0] * len(whole)
        print(f"  {way:4s}: update {statistics.median(whole) * 1e3:8.1f} ms, snapshot spans "
              f"{statistics.median(spans) * 1e3:6.1f} ms, update minus spans "
              f"{statistics.median(w - s for w, s in zip(whole, spans)) * 1e3:8.1f} ms")


if __name__ == "__main__":
    main()
