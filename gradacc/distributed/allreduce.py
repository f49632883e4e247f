"""`gradacc allreduce`: an all-reduce benchmark in the manner of nccl-tests, between N local processes started by
torchrun (gloo on a CPU, NCCL on GPUs). Per message size (4 KiB .. 64 MiB, doubling): warm-up all-reduces, then
timed ones, each started from a barrier; algbw = S / t and busbw = algbw * 2(N-1)/N; then the ring model's alpha
and B fitted to the sizes, with 95% intervals. Logged as an `allreduce-wN` run, the link Part 4's model takes."""
from __future__ import annotations

import json
import time

import numpy as np
import torch
import torch.distributed as dist

from gradacc.analysis.commmodel.fit import fit_ring
from gradacc.core.errors import ConfigError
from gradacc.core.request import Settings
from gradacc.core.runtime import resolve_runtime
from gradacc.distributed.launch import check_workers, launch
from gradacc.names import ALLREDUCE, NOTE, part_tags, workers_run_name
from gradacc.study.console import say
from gradacc.tracking.experiments import experiment_id
from gradacc.tracking.runs import print_link, tracked_run


def message_sizes(min_bytes: int, max_bytes: int) -> list[int]:
    """min_bytes, doubling, up to max_bytes (float32 elements: multiples of 4 bytes)."""
    if min_bytes < 4 or min_bytes % 4 or max_bytes < min_bytes:
        raise ConfigError(f"message sizes must be a multiple of 4 bytes and min <= max, got {min_bytes}..{max_bytes}")
    out, size = [], min_bytes
    while size <= max_bytes:
        out.append(size)
        size *= 2
    return out


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def time_all_reduces(sizes: list[int], warmup: int, iters: int, device: torch.device) -> np.ndarray:
    """This rank's seconds per timed all-reduce, (sizes, iters); each timed one starts from a barrier, so that it
    measures the collective, not a wait for a rank still in the previous one."""
    out = np.zeros((len(sizes), iters))
    for i, size in enumerate(sizes):
        buffer = torch.zeros(size // 4, dtype=torch.float32, device=device)  # zeros: the sums never overflow
        for _ in range(warmup):
            dist.all_reduce(buffer)
        for j in range(iters):
            dist.barrier()
            _synchronize(device)
            start = time.perf_counter()
            dist.all_reduce(buffer)
            _synchronize(device)
            out[i, j] = time.perf_counter() - start
    return out


def bench_rank(job: dict, local_rank: int, rank: int, world: int) -> None:
    """One rank of the benchmark; rank 0 writes every rank's times to the job's result file."""
    if job["device"] == "cuda":
        torch.cuda.set_device(local_rank)
    dist.init_process_group("nccl" if job["device"] == "cuda" else "gloo")
    runtime = resolve_runtime(job["device"], job["threads"])
    sizes = job["sizes"]
    mine = torch.tensor(time_all_reduces(sizes, job["warmup"], job["iters"], runtime.device), dtype=torch.float64,
                        device=runtime.device)
    every = [torch.empty_like(mine) for _ in range(world)]
    dist.all_gather(every, mine)  # after the timing
    if rank == 0:
        seconds = np.stack([t.cpu().numpy() for t in every])  # (world, sizes, iters)
        figures = {"sizes": sizes, "seconds": seconds.tolist(), "backend": dist.get_backend(),
                   "params": runtime.as_params()}
        with open(job["result_path"], "w") as handle:
            json.dump(figures, handle)


def size_table(sizes, seconds: np.ndarray, world: int) -> dict[str, np.ndarray]:
    """Per size, from (world, sizes, iters): each iteration's time is the fastest rank's (the last to arrive
    waits for nobody: the collective alone); mean, standard error of the mean, algbw and busbw (GB/s)."""
    per_iter = seconds.min(axis=0)
    mean = per_iter.mean(axis=1)
    sem = per_iter.std(axis=1, ddof=1) / np.sqrt(per_iter.shape[1]) if per_iter.shape[1] > 1 else np.zeros(len(mean))
    algbw = np.asarray(sizes, dtype=float) / mean / 1e9
    return {"mean_s": mean, "sem_s": sem, "algbw_gb_s": algbw, "busbw_gb_s": algbw * 2 * (world - 1) / world}


def table_lines(sizes, table: dict, fit) -> list[str]:
    lines = [f"{'bytes':>10} {'time us':>11} {'+-95% us':>9} {'algbw GB/s':>11} {'busbw GB/s':>11} {'fit us':>11}"]
    for i, size in enumerate(sizes):
        lines.append(f"{size:>10} {table['mean_s'][i] * 1e6:>11.1f} {1.96 * table['sem_s'][i] * 1e6:>9.1f} "
                     f"{table['algbw_gb_s'][i]:>11.4g} {table['busbw_gb_s'][i]:>11.4g} "
                     f"{(fit.a + fit.b * size) * 1e6:>11.1f}")
    lo_a, hi_a = fit.alpha_interval_s()
    lo_b, hi_b = fit.bandwidth_interval_gb_s()
    lines.append(f"ring model t = 2(N-1) alpha + 2(N-1)/N S / B at N={fit.workers}: alpha {fit.alpha_s * 1e6:.3g} us "
                 f"(95%: {lo_a * 1e6:.3g} .. {hi_a * 1e6:.3g}), B {fit.bandwidth_gb_s:.3g} GB/s "
                 f"(95%: {lo_b:.3g} .. {hi_b:.3g})")
    return lines


def run_allreduce_job(workers: int, device: str, threads, min_kib: int, max_mib: int, warmup: int, iters: int,
                      experiment: str | None) -> dict:
    """`gradacc allreduce`: the benchmark between `workers` local processes; prints the table and logs the run."""
    if workers < 2:
        raise ConfigError("an all-reduce benchmark needs 2 or more workers (one rank moves nothing)")
    if iters < 2:
        raise ConfigError(f"iters must be 2 or more (an interval needs two timings), got {iters}")
    resolved_device = check_workers(workers, device)
    sizes = message_sizes(min_kib * 1024, max_mib * 2**20)
    if len(sizes) < 3:
        raise ConfigError("the fit needs 3 or more message sizes: widen --min-kib .. --max-mib")
    job = {"mode": ALLREDUCE, "device": resolved_device, "threads": Settings.of(device, threads).worker_threads,
           "sizes": sizes, "warmup": warmup, "iters": iters}
    folder = launch(job, workers)
    figures = json.loads((folder / "result.json").read_text())
    seconds = np.asarray(figures["seconds"])
    table = size_table(sizes, seconds, workers)
    fit = fit_ring(sizes, table["mean_s"], table["sem_s"], workers)
    text = "\n".join(table_lines(sizes, table, fit))
    print(text)
    given = {"workers": str(workers), "device": device, "threads": str(threads), "min_kib": str(min_kib),
             "max_mib": str(max_mib), "warmup": str(warmup), "iters": str(iters)}
    resolved = {**figures["params"], "backend": figures["backend"], "sizes": str(len(sizes))}
    steps = [int(s) for s in sizes]
    with tracked_run(workers_run_name(ALLREDUCE, workers, False), part_tags(ALLREDUCE, False),
                     experiment_id(experiment)) as run:
        run.log_params(given, resolved)
        run.log_metrics({"allreduce_size_us": (steps, list(table["mean_s"] * 1e6)),
                         "algbw_size_gb_s": (steps, list(table["algbw_gb_s"])),
                         "busbw_size_gb_s": (steps, list(table["busbw_gb_s"]))}, fit.metrics())
        run.log_files({"allreduce.txt": text + "\n"})
        run.set_tags({NOTE: f"All-reduce benchmark, {workers} ranks ({figures['backend']}) on "
                            f"{figures['params'].get('device_name')}: {len(sizes)} sizes {sizes[0]:,}..{sizes[-1]:,} "
                            f"bytes, {warmup} warm-up and {iters} timed each; ring fit alpha "
                            f"{fit.alpha_s * 1e6:.3g} us, B {fit.bandwidth_gb_s:.3g} GB/s (95% intervals in "
                            "the metrics)."})
    say(f"{workers_run_name(ALLREDUCE, workers, False)}: alpha {fit.alpha_s * 1e6:.3g} us, "
        f"B {fit.bandwidth_gb_s:.3g} GB/s")
    print_link(run.experiment_id, run.run_id)
    return {"fit": fit, "table": table, "sizes": sizes}
