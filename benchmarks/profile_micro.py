"""Where a micro-iteration's time goes: torch.profiler over Part 1's forward + loss + backward of one
micro-batch (ResNet-18, 64 images), eager and (on CUDA) as a CUDA-graph replay.

Prints the top operators by self time on the device (CUDA) or the CPU, and on CUDA the share of the wall time
that the GPU spends in kernels: a low share means the micro-iteration waits on Python and kernel launches.

    python benchmarks/profile_micro.py --device cuda --iters 50
"""
from __future__ import annotations

import argparse
import time

import torch
import torch.nn.functional as F
from torch.profiler import ProfilerActivity, profile

from gradacc.core.config import Protocol
from gradacc.core.graphs import capture
from gradacc.core.model import build_model
from gradacc.core.streams import normalize

MICRO = Protocol.micro_batch


def batch(device):
    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (MICRO, 3, 32, 32), generator=g, dtype=torch.uint8).to(device)
    return normalize(images), torch.randint(0, 10, (MICRO,), generator=g).to(device)


def step(model, images, labels):
    F.cross_entropy(model(images), labels).backward()


def measure(run, iters, device, activities, sort_by, label):
    for _ in range(10):
        run()
    if device.type == "cuda":
        torch.cuda.synchronize()
    with profile(activities=activities) as prof:
        start = time.perf_counter()
        for _ in range(iters):
            run()
        if device.type == "cuda":
            torch.cuda.synchronize()
        wall_s = time.perf_counter() - start
    events = prof.key_averages()
    print(f"\n== {label}: {wall_s / iters * 1e3:.2f} ms per micro-iteration (wall, under the profiler)")
    if device.type == "cuda":
        kernel_us = sum(e.self_device_time_total for e in events if e.device_type.name == "CUDA")
        print(f"GPU busy in kernels: {kernel_us / iters / 1e3:.2f} ms per micro-iteration, "
              f"{kernel_us / 1e6 / wall_s * 100:.0f}% of the wall time")
    print(events.table(sort_by=sort_by, row_limit=12, max_name_column_width=48))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--iters", type=int, default=30)
    args = parser.parse_args()
    device = torch.device(args.device)
    torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = True, False
    model = build_model(42, device).train()
    images, labels = batch(device)
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    sort_by = "self_cuda_time_total" if device.type == "cuda" else "self_cpu_time_total"

    def eager():
        model.zero_grad(set_to_none=True)
        step(model, images, labels)

    measure(eager, args.iters, device, activities, sort_by, "eager")
    if device.type == "cuda":
        graph = capture(lambda _warming_up: eager())  # gradients set to None first, as before each eager step
        measure(graph.replay, args.iters, device, activities, sort_by, "CUDA-graph replay")


if __name__ == "__main__":
    main()
