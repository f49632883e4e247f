"""Seeds trained together: the converge runs of several seeds of one protocol (one K), advanced in lockstep, each
seed's work on its own CUDA stream so that the GPU runs the seeds' kernels side by side (a micro-batch of 64
leaves most of a large GPU idle).

Each seed keeps its own model, optimizer and micro-batch stream (its own generator); the seeds share only the
read-only data on the device. So each seed's losses and accuracy are the ones the same seed gives alone
(tests/integration/test_together.py: bitwise on the CPU; its CUDA test has not run on a GPU yet). The sweep does not
combine it with --cuda-graphs yet (gradacc.study.sweep.trains_together says why). Nothing is
timed and nothing synchronises the whole device: the seeds share the GPU, so no time would be one seed's own.

On a CPU there are no streams: the lockstep runs one seed's update after another's, no faster than running the
seeds one after another (the sweep does that on a CPU unless asked otherwise)."""
from __future__ import annotations

import contextlib

import torch

from gradacc.core.config import Protocol
from gradacc.core.errors import ConfigError, Diverged
from gradacc.parts.context import Context, Result, noop
from gradacc.parts.converge import Training


def seed_streams(device: torch.device, n: int) -> list:
    """One CUDA stream per seed, each starting after the work already queued (the models' initial weights);
    None per seed on a CPU."""
    if device.type != "cuda":
        return [None] * n
    streams = [torch.cuda.Stream(device) for _ in range(n)]
    for stream in streams:
        stream.wait_stream(torch.cuda.current_stream(device))
    return streams


def on(stream) -> contextlib.AbstractContextManager:
    """Work queued inside goes to the seed's stream (nothing on a CPU)."""
    return contextlib.nullcontext() if stream is None else torch.cuda.stream(stream)


def check_together(protocols: list[Protocol]) -> None:
    """The lockstep needs one update count per epoch: the protocols may differ in their seed alone."""
    first = protocols[0].as_params()
    for protocol in protocols[1:]:
        other = protocol.as_params()
        differ = sorted(key for key in first if key != "seed" and first[key] != other.get(key))
        if differ:
            raise ConfigError(f"seeds trained together must share their protocol but the seed; these differ in "
                              f"{', '.join(differ)}")


def run_together(protocols: list[Protocol], ctx: Context, results: list[Result],
                 progress=noop) -> list[BaseException | None]:
    """Trains the protocols' converge runs together, filling `results[i]` as `run_converge` fills its result, but
    with no timings. A seed that diverges stops alone: its error is returned at its index (None where the seed
    ran every epoch). An interrupt or any other error stops every seed; each result keeps what was measured."""
    check_together(protocols)
    trainings: list[Training] = []
    streams: list = []
    stopped: list[BaseException | None] = [None] * len(protocols)
    first = protocols[0]
    try:
        for protocol, result in zip(protocols, results):  # one after another: the models' seeding is global
            trainings.append(Training(protocol, ctx, timed=False, live=result.live))
        streams = seed_streams(ctx.runtime.device, len(trainings))
        live = list(range(len(trainings)))
        for epoch in range(1, first.epochs + 1):
            for _ in range(first.updates_per_epoch):
                for i in live:
                    with on(streams[i]):
                        trainings[i].step()
                progress(1)
            for i in list(live):
                try:
                    with on(streams[i]):
                        trainings[i].end_epoch(epoch)
                except Diverged as err:
                    stopped[i] = err
                    live.remove(i)
            if not live:
                break
    finally:
        try:
            for i, training in enumerate(trainings):
                with on(streams[i] if streams else None):  # the seed's last reads queue behind its own work
                    training.close(results[i])
        finally:  # even when a close failed: later work on the current stream waits for every seed's
            for stream in streams:
                if stream is not None:
                    torch.cuda.current_stream(ctx.runtime.device).wait_stream(stream)
    for training, result, error in zip(trainings, results, stopped):
        if error is None:
            training.summarize(result)
    return stopped
