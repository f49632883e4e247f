"""Seeds trained together (gradacc/parts/together.py): each seed's series bitwise those of the same seed alone."""
from __future__ import annotations

import math

import pytest
from torch import nn

from gradacc.core.config import Protocol
from gradacc.core.errors import ConfigError, Diverged
from gradacc.core.runtime import resolve_runtime
from gradacc.parts import converge
from gradacc.parts.context import Context, Result
from gradacc.parts.converge import run_converge
from gradacc.parts.together import run_together

TINY = dict(micro_batch=16, train_size=64, test_size=64, epochs=2)
TIMINGS = ("update_time_s", "noise_snapshot_s", "update_time_s_mean", "update_time_s_std", "throughput_img_s",
           "noise_snapshot_s_mean")


@pytest.fixture(scope="module")
def ctx(tiny_cifar):
    return Context.prepare(resolve_runtime("cpu", None), tiny_cifar, 128, 64)


def solo(protocol: Protocol, ctx: Context) -> Result:
    result = Result("converge")
    run_converge(protocol, ctx, result)
    return result


def without_timings(result: Result) -> tuple[dict, dict]:
    return ({k: v for k, v in result.series.items() if k not in TIMINGS},
            {k: v for k, v in result.summaries.items() if k not in TIMINGS})


def assert_same_as_alone(together: list[Result], protocols: list[Protocol], ctx: Context) -> None:
    for protocol, result in zip(protocols, together):
        alone = solo(protocol, ctx)
        assert without_timings(result) == without_timings(alone)  # bitwise: == on every float
        assert not set(TIMINGS) & (set(result.series) | set(result.summaries))


@pytest.mark.parametrize("k,loader", [(2, "device"), (1, "device"), (2, "torchvision")])
def test_seeds_together_equal_each_seed_alone(ctx, k, loader):
    protocols = [Protocol(k=k, seed=seed, loader=loader, **TINY) for seed in (43, 44, 45)]
    results = [Result("converge") for _ in protocols]
    steps = []
    stopped = run_together(protocols, ctx, results, progress=steps.append)
    assert stopped == [None, None, None]
    assert len(steps) == protocols[0].total_updates  # one progress step per lockstep update of every seed
    assert_same_as_alone(results, protocols, ctx)
    losses = [r.series["train_loss_update"][1] for r in results]
    assert losses[0] != losses[1] != losses[2]  # three seeds, three trainings
    if k == 2:  # the noise scale is measured as alone (its snapshot work is not timed)
        assert "noise_scale_simple_final" in results[0].summaries


class Poisoned(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(3 * 32 * 32, 10)

    def forward(self, x):
        return self.fc(x.flatten(1)) * float("nan")


def test_a_seed_that_diverges_stops_alone(ctx, monkeypatch):
    real = converge.build_model
    monkeypatch.setattr(converge, "build_model",
                        lambda seed, device: Poisoned() if seed == 44 else real(seed, device))
    protocols = [Protocol(k=2, seed=seed, noise_scale="off", **TINY) for seed in (43, 44, 45)]
    results = [Result("converge") for _ in protocols]
    stopped = run_together(protocols, ctx, results)
    assert stopped[0] is None and stopped[2] is None and isinstance(stopped[1], Diverged)
    assert results[1].series["train_loss"][0] == [1] and results[1].summaries == {}
    monkeypatch.setattr(converge, "build_model", real)
    assert_same_as_alone([results[0], results[2]], [protocols[0], protocols[2]], ctx)


def test_an_interrupt_stops_every_seed_and_keeps_their_losses(ctx):
    protocols = [Protocol(k=1, seed=seed, noise_scale="off", **TINY) for seed in (43, 44)]
    results = [Result("converge") for _ in protocols]
    done = []

    def progress(n):
        done.append(n)
        if len(done) == 6:  # epoch 2, after 2 of its 4 updates
            raise KeyboardInterrupt()

    with pytest.raises(KeyboardInterrupt):
        run_together(protocols, ctx, results, progress)
    for result in results:
        steps, losses = result.series["train_loss_update"]
        assert steps == list(range(6)) and all(math.isfinite(v) for v in losses)
        assert result.series["train_loss"][0] == [1] and result.summaries == {}


def test_seeds_together_must_differ_in_the_seed_alone(ctx):
    with pytest.raises(ConfigError, match=r"differ in .*\bk\b"):
        run_together([Protocol(k=1, **TINY), Protocol(k=2, seed=43, **TINY)], ctx, [Result("converge")] * 2)


@pytest.mark.cuda
@pytest.mark.parametrize("graphs", [False, True])
def test_seeds_together_on_cuda_streams_equal_each_seed_alone(ctx, graphs):
    """The GPU half: each seed on its own stream (and graph, with its own pool), bitwise its solo run."""
    cuda = Context(resolve_runtime("cuda", None), ctx.subset, ctx.data_path)
    protocols = [Protocol(k=2, seed=seed, cuda_graphs=graphs, **TINY) for seed in range(43, 48)]
    results = [Result("converge") for _ in protocols]
    assert run_together(protocols, cuda, results) == [None] * 5
    assert_same_as_alone(results, protocols, cuda)
