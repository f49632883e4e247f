"""Benchmark: the cost of measuring the gradient noise scale, on a converge run of the smoke subset.

One model trains through the protocol's updates; the updates alternate with and without the `.grad` snapshots
(A B B A ...: interleaved update by update, so drifts in the machine's load hit both alike), each update timed
whole with timing.Timer (the K fetches, forwards, backwards, snapshots and the step). The snapshots only read
`.grad`, so training is the same either way. Prints the medians and their ratio, and the share of the
snapshot calls themselves (timed alone, synchronised) in the updates that made them: on a loaded machine the
update-to-update spread can exceed the cost, and this share is the steadier figure.

    GRADACC_DATA_DIR=/path/to/cifar python benchmarks/noise_cost.py --k 4 --updates 16"""
from __future__ import annotations

import argparse
import statistics

from gradacc.core.config import smoke_protocol
from gradacc.core.data import resolve_data_dir
from gradacc.core.engine import run_update
from gradacc.core.model import build_model, build_optimizer
from gradacc.core.runtime import resolve_runtime
from gradacc.core.snapshots import GradientSnapshots
from gradacc.core.timing import Timer
from gradacc.parts.context import Context


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--k", type=int, default=4)
    parser.add_argument("--updates", type=int, default=16, help="timed updates, half of them with snapshots")
    parser.add_argument("--warmup", type=int, default=2, help="untimed updates first")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()
    runtime = resolve_runtime(args.device, args.threads)
    protocol = smoke_protocol(args.k, 42, "device").validate()
    ctx = Context.prepare(runtime, resolve_data_dir(None), protocol.train_size, protocol.test_size)
    model = build_model(protocol.seed, runtime.device)
    optimizer = build_optimizer(model, protocol)
    stream = ctx.stream(protocol)
    snapshots = GradientSnapshots(model, protocol.k)
    timers = {"with": Timer(runtime.device), "without": Timer(runtime.device)}
    hook_timer = Timer(runtime.device)

    def timed_snapshots(i: int) -> None:  # on a CPU only: on a GPU the timer's syncs would add to the cost
        with hook_timer:
            snapshots(i)

    hook = timed_snapshots if runtime.device.type == "cpu" else snapshots

    model.train()
    try:
        for _ in range(args.warmup):
            run_update(model, optimizer, stream, protocol.k, after_backward=snapshots)
        for u in range(args.updates):
            mode = "with" if (u % 4) in (0, 3) else "without"  # A B B A
            with timers[mode]:
                run_update(model, optimizer, stream, protocol.k,
                           after_backward=hook if mode == "with" else None)
            print(f"update {u:3d} {mode:7s} {timers[mode].seconds()[-1] * 1e3:9.1f} ms", flush=True)
        snapshots.read()
    finally:
        stream.close()
    median = {mode: statistics.median(timer.seconds()) for mode, timer in timers.items()}
    print(f"{runtime.device_name}, K={protocol.k}, {args.updates} updates interleaved A B B A, medians: "
          f"{median['with'] * 1e3:.1f} ms with vs {median['without'] * 1e3:.1f} ms without snapshots, "
          f"ratio {median['with'] / median['without']:.3f}")
    if len(hook_timer):
        print(f"the snapshot calls took {sum(hook_timer.seconds()) / sum(timers['with'].seconds()) * 100:.1f}% of "
              f"the updates that made them ({statistics.median(hook_timer.seconds()) * 1e3:.1f} ms per micro-step, "
              "median)")


if __name__ == "__main__":
    main()
