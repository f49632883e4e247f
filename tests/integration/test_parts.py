"""Parts 1-3: Part 1's step placement around the timers, and every part's Result on a tiny Context."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from gradacc.core.config import Protocol
from gradacc.core.errors import Diverged
from gradacc.core.model import build_model
from gradacc.core.runtime import resolve_runtime
from gradacc.core.streams import DeviceStream, TorchvisionStream
from gradacc.core.timing import middle_window
from gradacc.names import SERIES
from gradacc.parts import converge, micro, update
from gradacc.parts.context import Context, Result
from gradacc.parts.converge import run_converge
from gradacc.parts.micro import run_micro, run_phase
from gradacc.parts.update import run_update_part
from tests.support.fakes import LoggedTimer

MEAN, STD = torch.tensor([0.4914, 0.4822, 0.4465]), torch.tensor([0.2023, 0.1994, 0.2010])


class LoggedStream:
    """Random float64 micro-batches of 8 features; logs each fetch and keeps the batches it served."""

    def __init__(self, log):
        self.log, self.served, self.g = log, [], torch.Generator().manual_seed(0)

    def next_batch(self):
        self.log.append("fetch")
        self.served.append((torch.randn(4, 8, generator=self.g, dtype=torch.float64),
                            torch.randint(0, 10, (4,), generator=self.g)))
        return self.served[-1]


def spied_setup():
    """A linear model with a zero-lr SGD (the weights stay put) whose steps log and keep their gradients."""
    log, grads = [], []
    torch.manual_seed(0)
    model = nn.Linear(8, 10).double()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.0)
    stream = LoggedStream(log)

    def on_step(opt, args, kwargs):
        log.append("step")
        grads.append((len(stream.served), [p.grad.clone() for p in model.parameters()]))

    optimizer.register_step_pre_hook(on_step)
    return model, optimizer, stream, log, grads


MICRO = ["fetch", "micro<", ">micro"]
STEP = ["opt<", "step", ">opt"]


def test_phases_step_every_k_micro_iterations_and_never_inside_the_timer():
    model, optimizer, stream, log, grads = spied_setup()
    done = []
    timers = dict(micro_timer=LoggedTimer("micro", log), step_timer=LoggedTimer("opt", log))
    assert run_phase(model, optimizer, stream, 8, 20, progress=done.append, **timers) == 2
    assert log == (MICRO * 8 + STEP) * 2 + MICRO * 4  # warm-up: 2 steps, then 4 micro-iterations unstepped
    assert sum(done) == 20
    del log[:]
    assert run_phase(model, optimizer, stream, 8, 80, **timers) == 10
    assert log == (MICRO * 8 + STEP) * 10
    assert len(grads) == 12


def test_warmup_without_timers_logs_only_fetches_and_steps():
    model, optimizer, stream, log, _ = spied_setup()
    assert run_phase(model, optimizer, stream, 4, 10) == 2
    assert log == (["fetch"] * 4 + ["step"]) * 2 + ["fetch"] * 2
    del log[:]
    assert run_phase(model, optimizer, stream, 8, 3) == 0
    assert log == ["fetch"] * 3


def test_every_step_uses_exactly_the_last_k_micro_batches():
    # The warm-up's 4-micro remainder must not pile into the timed phase's first step.
    model, optimizer, stream, _, grads = spied_setup()
    run_phase(model, optimizer, stream, 8, 20)
    run_phase(model, optimizer, stream, 8, 16)
    assert [served for served, _ in grads] == [8, 16, 28, 36]
    for served, got in grads:
        x = torch.cat([b[0] for b in stream.served[served - 8: served]])
        y = torch.cat([b[1] for b in stream.served[served - 8: served]])
        model.zero_grad()
        F.cross_entropy(model(x), y).backward()
        for g, p in zip(got, model.parameters()):
            torch.testing.assert_close(g, p.grad, rtol=1e-10, atol=1e-12)


@pytest.fixture(scope="module")
def ctx(tiny_cifar):
    return Context.prepare(resolve_runtime("cpu", None), tiny_cifar, 128, 64)


TINY = dict(micro_batch=16, train_size=64, test_size=64, epochs=2, warmup_micro_iters=2, timed_micro_iters=4)


@pytest.fixture
def step_counts(monkeypatch):
    """Counts the optimizer steps of whatever optimizer each part builds."""
    counts = []

    def counting(build):
        def wrapped(model, protocol):
            optimizer = build(model, protocol)
            counts.append(0)
            slot = len(counts) - 1
            optimizer.register_step_post_hook(lambda *a: counts.__setitem__(slot, counts[slot] + 1))
            return optimizer
        return wrapped

    for module in (micro, update, converge):
        monkeypatch.setattr(module, "build_optimizer", counting(module.build_optimizer))
    return counts


def test_context_streams_cover_the_first_train_size_images(ctx):
    protocol = Protocol(k=1, **TINY)
    stream = ctx.stream(protocol)
    assert isinstance(stream, DeviceStream)
    ids = []
    for _ in range(4):  # one epoch of 64 / 16
        x, y = stream.next_batch()
        u8 = torch.round((x[:, :2, 16, 16] * STD[:2] + MEAN[:2]) * 255).long()
        ids += (u8[:, 0] + 256 * u8[:, 1]).tolist()
        assert torch.equal(y, (u8[:, 0] + 256 * u8[:, 1]) % 10)
    assert sorted(ids) == list(range(64))
    tv = ctx.stream(Protocol(k=1, loader="torchvision", **TINY))
    assert isinstance(tv, TorchvisionStream) and len(tv.loader.dataset) == 64
    tv.close()
    images, labels = ctx.test_set(protocol)
    u8 = torch.round((images * STD.view(1, 3, 1, 1) + MEAN.view(1, 3, 1, 1)) * 255).long()
    assert torch.equal(u8[:, 0, 5, 5], torch.arange(64)) and bool((u8[:, 1] == 128).all())
    assert torch.equal(labels, (torch.arange(64) + 3) % 10)


def test_run_micro_fills_its_series(ctx, step_counts):
    protocol, result = Protocol(k=2, **TINY), Result("micro")
    done = []
    run_micro(protocol, ctx, result, progress=done.append)
    steps, values = result.series["micro_iter_ms"]
    assert steps == [0, 1, 2, 3] and len(values) == 4 and min(values) > 0
    assert result.series["opt_step_ms"][0] == [0, 1] and min(result.series["opt_step_ms"][1]) > 0
    assert step_counts == [1 + 2] and sum(done) == 2 + 4
    assert result.summaries["micro_iter_ms_mean"] == pytest.approx(np.mean(values))
    assert result.summaries["micro_iter_ms_std"] == pytest.approx(np.std(values, ddof=1))
    assert result.summaries["opt_step_ms_mean"] == pytest.approx(np.mean(result.series["opt_step_ms"][1]))
    assert set(result.series) == set(SERIES["micro"])  # the public names load_series fetches


def test_run_update_part_fills_its_series(ctx, step_counts):
    protocol, result = Protocol(k=2, **TINY), Result("update")
    run_update_part(protocol, ctx, result)
    assert protocol.total_updates == 4
    steps, values = result.series["update_time_s"]
    assert steps == [0, 1, 2, 3] and min(values) > 0
    assert step_counts == [4]
    mean = float(np.mean(middle_window(values)))
    assert result.summaries["update_time_s_mean"] == pytest.approx(mean)
    assert result.summaries["throughput_img_s"] == pytest.approx(32 / mean)
    assert set(result.series) == set(SERIES["update"])


def test_run_converge_fills_its_series(ctx, step_counts):
    protocol, result = Protocol(k=2, **TINY), Result("converge")
    run_converge(protocol, ctx, result)
    assert step_counts == [4]
    epochs, epoch_loss = result.series["train_loss"]
    updates, update_loss = result.series["train_loss_update"]
    acc_epochs, accuracy = result.series["test_accuracy_epoch"]
    assert epochs == [1, 2] and acc_epochs == [2] and updates == [0, 1, 2, 3]  # the protocol: after training
    # The epoch loss is the mean of its updates' mean micro-batch losses.
    assert epoch_loss == pytest.approx([np.mean(update_loss[:2]), np.mean(update_loss[2:])])
    assert all(0.5 < v < 20 and math.isfinite(v) for v in update_loss)
    assert all(0 <= a <= 100 and (a * 64 / 100) == pytest.approx(round(a * 64 / 100)) for a in accuracy)
    noise = {"noise_scale_simple_final", "noise_snapshot_s_mean"}  # k=2 measures the noise scale (test_noise.py)
    timing = {"update_time_s_mean", "update_time_s_std", "throughput_img_s"}  # its updates timed all the same
    assert {key: v for key, v in result.summaries.items() if key not in noise | timing} == {
        "test_accuracy": accuracy[-1], "final_train_loss": epoch_loss[-1]}
    assert result.series["update_time_s"][0] == [0, 1, 2, 3] and timing <= set(result.summaries)
    assert set(result.series) == set(SERIES["converge"])  # k=2: the noise scale's series too


def test_evaluating_every_epoch_adds_the_accuracies_and_changes_no_training(ctx):
    once, every = Result("converge"), Result("converge")
    run_converge(Protocol(k=2, **TINY), ctx, once)
    run_converge(Protocol(k=2, eval_every_epoch=True, **TINY), ctx, every)
    assert every.series["test_accuracy_epoch"][0] == [1, 2]
    assert every.series["test_accuracy_epoch"][1][-1:] == once.series["test_accuracy_epoch"][1]
    for name in ("train_loss", "train_loss_update", "grad_norm_sq_est"):
        assert every.series[name] == once.series[name]
    assert every.summaries["test_accuracy"] == once.summaries["test_accuracy"]


def test_run_converge_without_the_noise_scale_times_its_updates(ctx):
    protocol, result = Protocol(k=2, noise_scale="off", **TINY), Result("converge")
    run_converge(protocol, ctx, result)
    # Each update is also timed whole, as Part 2 times it: the same summaries from the same window.
    timed_updates, update_s = result.series["update_time_s"]
    assert timed_updates == [0, 1, 2, 3] and min(update_s) > 0
    mean = float(np.mean(middle_window(update_s)))
    assert result.summaries == pytest.approx({
        "test_accuracy": result.series["test_accuracy_epoch"][1][-1],
        "final_train_loss": result.series["train_loss"][1][-1], "update_time_s_mean": mean,
        "throughput_img_s": 32 / mean, "update_time_s_std": float(np.std(middle_window(update_s), ddof=1))})
    assert not any(key.startswith("noise") for key in result.series)


class TinyNet(nn.Module):
    def __init__(self, poison: bool = False):
        super().__init__()
        self.conv, self.fc = nn.Conv2d(3, 4, 3, stride=4), nn.Linear(4, 10)
        if poison:
            nn.init.constant_(self.fc.bias, float("nan"))

    def forward(self, x):
        return self.fc(self.conv(x).mean(dim=(2, 3)))


@pytest.mark.parametrize("k, epochs", [(1, 2), (2, 3), (4, 3)])
def test_converge_and_update_step_exactly_total_updates(ctx, step_counts, monkeypatch, k, epochs):
    for module in (converge, update):
        monkeypatch.setattr(module, "build_model", lambda seed, device: TinyNet())
    protocol = Protocol(k=k, micro_batch=8, train_size=128, test_size=64, epochs=epochs)
    result = Result("converge")
    run_converge(protocol, ctx, result)
    run_update_part(protocol, ctx, Result("update"))
    assert step_counts == [protocol.total_updates] * 2 == [epochs * 16 // k] * 2
    assert len(result.series["train_loss_update"][1]) == protocol.total_updates


def test_converge_stops_on_divergence_and_keeps_what_it_measured(ctx, monkeypatch):
    monkeypatch.setattr(converge, "build_model", lambda seed, device: TinyNet(poison=True))
    result = Result("converge")
    with pytest.raises(Diverged, match="epoch 1"):
        run_converge(Protocol(k=2, micro_batch=8, train_size=128, test_size=64, epochs=3), ctx, result)
    assert result.series["train_loss_update"][0] == list(range(8))
    assert all(math.isnan(v) for v in result.series["train_loss"][1]) and result.series["train_loss"][0] == [1]
    assert result.series["test_accuracy_epoch"] == ([], []) and result.summaries == {}


@pytest.mark.parametrize("noise_scale", ["off", "auto"])
def test_interrupted_converge_keeps_every_loss_it_computed(ctx, monkeypatch, noise_scale):
    """Ctrl-C in epoch 2 after 5 of 8 updates: the 4 losses of epoch 1 and the 1 of epoch 2 are all kept."""
    monkeypatch.setattr(converge, "build_model", lambda seed, device: TinyNet())
    protocol, result = Protocol(k=4, micro_batch=8, train_size=128, test_size=64, epochs=3,
                                noise_scale=noise_scale), Result("converge")
    done = []

    def progress(n):
        done.append(n)
        if len(done) == 5:
            raise KeyboardInterrupt()

    with pytest.raises(KeyboardInterrupt):
        run_converge(protocol, ctx, result, progress)
    steps, losses = result.series["train_loss_update"]
    assert steps == [0, 1, 2, 3, 4] and all(math.isfinite(v) for v in losses)
    assert result.series["train_loss"] == ([1], [pytest.approx(np.mean(losses[:4]))])  # no mean of a partial epoch
    if noise_scale == "off":
        assert result.series["update_time_s"][0] == [0, 1, 2, 3, 4]


def test_build_model_depends_on_the_seed_alone():
    torch.manual_seed(123)
    a = build_model(42, torch.device("cpu"))
    torch.rand(10)
    b, c = build_model(42, torch.device("cpu")), build_model(7, torch.device("cpu"))
    assert all(torch.equal(p, q) for p, q in zip(a.state_dict().values(), b.state_dict().values()))
    assert not torch.equal(a.conv1.weight, c.conv1.weight)
    assert a.fc.out_features == 10 and a.conv1.kernel_size == (7, 7) and a.conv1.stride == (2, 2)


@pytest.mark.cuda
@pytest.mark.parametrize("k", [1, 2])
def test_cuda_graph_updates_equal_eager_updates(ctx, k):
    """--cuda-graphs replays the same kernels: the same losses and weights as the eager updates."""
    cuda = Context(resolve_runtime("cuda", None), ctx.subset, ctx.data_path)
    results = []
    for graphs in (False, True):
        result = Result("converge")
        run_converge(Protocol(k=k, cuda_graphs=graphs, noise_scale="off", **TINY), cuda, result)
        results.append(result.series["train_loss_update"][1])
    assert len(results[0]) == 8 // k
    assert results[1] == pytest.approx(results[0], rel=1e-5, abs=0)
