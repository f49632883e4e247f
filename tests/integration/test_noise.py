"""The gradient noise scale: estimators on synthetic gradients, per-micro-batch gradients from `.grad`, converge
runs that measure it (and time nothing), and the protocol variants (linear lr scaling with warm-up)."""
from __future__ import annotations

import copy
from types import SimpleNamespace

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from gradacc.core import noise
from gradacc.core import snapshots as snapshots_module
from gradacc.core.config import Protocol
from gradacc.core.engine import run_update
from gradacc.core.errors import ConfigError
from gradacc.core.runtime import resolve_runtime
from gradacc.core.snapshots import CopySnapshots, HookSnapshots
from gradacc.core.timing import NO_TIMER
from gradacc.parts import converge
from gradacc.parts.context import Context, Result
from gradacc.parts.converge import run_converge
from gradacc.study.run import what_is_measured


def synthetic_norms(g: np.ndarray, sigma_diag: np.ndarray, b_small: int, k: int, updates: int, seed: int = 0):
    """|G_small|^2 and |G_big|^2 per update for micro-batch gradients drawn from N(G, Sigma / b_small)."""
    rng = np.random.default_rng(seed)
    micro = g + rng.standard_normal((updates, k, len(g))) * np.sqrt(sigma_diag / b_small)
    small = (micro ** 2).sum(axis=2).mean(axis=1)
    big = (micro.mean(axis=1) ** 2).sum(axis=1)
    return small, big


@pytest.mark.parametrize("k", [2, 8])
def test_estimators_recover_b_simple_of_a_known_covariance(k):
    rng = np.random.default_rng(1)
    dim, b_small = 200, 64
    g = rng.standard_normal(dim) * 0.1
    sigma_diag = rng.uniform(0.5, 1.5, dim)
    sigma_diag *= 300.0 * (g @ g) / sigma_diag.sum()  # true B_simple = tr(Sigma) / |G|^2 = 300 examples
    small, big = synthetic_norms(g, sigma_diag, b_small, k, updates=4000)
    g2, trace = noise.unbiased(small, big, b_small, b_small * k)
    assert abs(g2.mean() / (g @ g) - 1) < 0.05 and abs(trace.mean() / sigma_diag.sum() - 1) < 0.05
    assert abs(noise.b_simple_of(g2, trace) / 300.0 - 1) < 0.05
    smoothed = noise.b_simple_series(g2, trace)  # EMA over ~20 updates: noisier, but centred on the truth
    assert abs(np.nanmedian(smoothed) / 300.0 - 1) < 0.15


def test_ema_is_bias_corrected_and_b_simple_skips_non_positive_denominators():
    np.testing.assert_allclose(noise.ema([5.0, 5.0, 5.0]), [5.0, 5.0, 5.0])
    series = noise.b_simple_series(np.array([-1.0, -1.0]), np.array([3.0, 3.0]))
    assert np.isnan(series).all()
    assert noise.finite_series([1.0, float("nan"), 3.0], first_step=1) == ([1, 3], [1.0, 3.0])
    assert np.isnan(noise.b_simple_of(np.array([-1.0]), np.array([1.0])))


def tiny_net(seed: int = 0) -> nn.Module:  # no BatchNorm: per-micro-batch gradients are separable
    torch.manual_seed(seed)
    return nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(2), nn.Flatten(),
                         nn.Linear(16, 10)).double()


class ListStream:
    def __init__(self, batches):
        self.batches = list(batches)

    def next_batch(self):
        return self.batches.pop(0)


def batches(count: int, size: int = 8, seed: int = 1):
    g = torch.Generator().manual_seed(seed)
    return [(torch.randn(size, 3, 6, 6, generator=g, dtype=torch.float64), torch.randint(0, 10, (size,), generator=g))
            for _ in range(count)]


def flat_grad(model, x, y) -> torch.Tensor:
    model = copy.deepcopy(model)
    model.zero_grad()
    F.cross_entropy(model(x), y).backward()
    return torch.cat([p.grad.reshape(-1) for p in model.parameters()])


@pytest.mark.parametrize("timed", [True, False])
@pytest.mark.parametrize("way", [HookSnapshots, CopySnapshots])
@pytest.mark.parametrize("k", [2, 3])
def test_snapshots_equal_separate_backward_passes(k, way, timed):
    model = tiny_net()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=5e-4)
    data = batches(2 * k)
    snapshots = way(model, k, timed)
    expected_small, expected_big = [], []
    for update in range(2):
        micro = [flat_grad(model, x, y) for x, y in data[update * k: (update + 1) * k]]
        expected_small.append(float(torch.stack([g.dot(g) for g in micro]).mean()))
        mean = torch.stack(micro).mean(dim=0)
        expected_big.append(float(mean.dot(mean)))
        reference, reference_optimizer = copy.deepcopy((model, optimizer))  # one memo: the copy steps its own
        run_update(reference, reference_optimizer, ListStream(data[update * k: (update + 1) * k]), k)
        run_update(model, optimizer, ListStream(data[update * k: (update + 1) * k]), k, after_backward=snapshots)
        # the hook only reads: the same gradients and the same step as without it
        for p, q in zip(model.parameters(), reference.parameters()):
            assert torch.equal(p.grad, q.grad) and torch.equal(p, q)
    small, big = snapshots.read()
    np.testing.assert_allclose(small, expected_small, rtol=1e-10)
    np.testing.assert_allclose(big, expected_big, rtol=1e-10)
    assert snapshots.read()[0].size == 0  # read clears
    # timed: the snapshot work of each update, to take out of its time; untimed (seeds together): nothing recorded
    assert len(snapshots.spans.seconds()) == 2 if timed else snapshots.spans is NO_TIMER


class TinyNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv, self.fc = nn.Conv2d(3, 4, 3, stride=4), nn.Linear(4, 10)

    def forward(self, x):
        return self.fc(self.conv(x).mean(dim=(2, 3)))


@pytest.fixture(scope="module")
def ctx(tiny_cifar):
    return Context.prepare(resolve_runtime("cpu", None), tiny_cifar, 128, 64)


def converge_result(ctx, monkeypatch, **fields) -> Result:
    monkeypatch.setattr(converge, "build_model", lambda seed, device: (torch.manual_seed(seed), TinyNet())[1])
    result = Result("converge")
    run_converge(Protocol(micro_batch=8, train_size=128, test_size=64, epochs=2, **fields), ctx, result)
    return result


class FixedSpans:
    """Stands in for Timer and SpanTotals: every `with` block lasts `seconds`; SpanTotals' end_update closes one
    update's spans, as the real one does."""

    def __init__(self, seconds):
        self.value, self.spans, self.count = seconds, [], 0

    def __call__(self, _device):
        return self

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.count += 1
        return False

    def end_update(self):
        self.spans.append(self.value * self.count)
        self.count = 0

    def seconds(self):
        return self.spans if self.spans else [self.value] * self.count


def test_converge_measures_the_noise_scale_for_k_2_and_times_updates_without_it(ctx, monkeypatch):
    result = converge_result(ctx, monkeypatch, k=2)
    assert set(noise.SERIES_KEYS) <= set(result.series)
    assert result.series["noise_scale_simple_epoch"][0] in ([1, 2], [1], [2])  # NaN epochs are left out
    assert len(result.series["grad_norm_sq_est"][0]) == 2 * 128 // 16
    updates = list(range(2 * 128 // 16))
    assert result.series["update_time_s"][0] == result.series["noise_snapshot_s"][0] == updates
    assert min(result.series["noise_snapshot_s"][1]) > 0 and min(result.series["update_time_s"][1]) > 0
    plain = converge_result(ctx, monkeypatch, k=2, noise_scale="off")
    assert not set(noise.SERIES_KEYS) & set(plain.series) and "noise_snapshot_s" not in plain.series
    assert plain.series["train_loss_update"] == result.series["train_loss_update"]  # measuring changes nothing


def test_the_snapshot_time_is_taken_out_of_each_update(ctx, monkeypatch):
    """Each update timed 0.5 s whole; K=2 micro-steps, each with a span in the hook of each of TinyNet's four
    parameters and one after its backward: ten spans of 0.02 s, so Part 2's figure is 0.3 s."""
    monkeypatch.setattr(converge, "Timer", FixedSpans(0.5))
    monkeypatch.setattr(snapshots_module, "SpanTotals", FixedSpans(0.02))
    result = converge_result(ctx, monkeypatch, k=2)
    assert result.series["update_time_s"][1] == pytest.approx([0.3] * 16)
    assert result.series["noise_snapshot_s"][1] == pytest.approx([0.2] * 16)
    assert result.summaries["update_time_s_mean"] == pytest.approx(0.3)
    assert result.summaries["noise_snapshot_s_mean"] == pytest.approx(0.2)
    assert result.summaries["throughput_img_s"] == pytest.approx(16 / 0.3)


def test_k1_has_no_noise_scale_and_says_why(ctx, monkeypatch):
    result = converge_result(ctx, monkeypatch, k=1)
    assert not set(noise.SERIES_KEYS) & set(result.series) and "noise_scale_simple_final" not in result.summaries
    assert noise.status("auto", 1).startswith("unavailable: K=1 has one gradient per update")
    assert (noise.status("auto", 2), noise.status("off", 4)) == ("measured", "off")
    with pytest.raises(ConfigError, match="k >= 2"):
        Protocol(k=1, noise_scale="on").validate()


def test_linear_scaling_with_warmup_schedule():
    p = Protocol(k=4, lr_scaling="linear", warmup_epochs=1).validate()  # 40 updates per epoch
    assert p.peak_lr == pytest.approx(0.4) and p.warmup_updates == 40
    assert [p.lr_at(u) for u in (0, 20, 39, 40, 199)] == pytest.approx([0.1, 0.25, 0.1 + 0.3 * 39 / 40, 0.4, 0.4])
    assert Protocol(k=8, lr_scaling="linear").lr_at(0) == pytest.approx(0.8)
    assert all(Protocol(k=8).lr_at(u) == 0.1 for u in (0, 99))
    assert p.variant == "lr=linear,warmup=1" and Protocol(k=8).variant == "protocol"
    assert Protocol(k=2, train_size=50_000, epochs=3).variant == "epochs=3,train=50000"
    assert Protocol(k=2, smoke=True, epochs=1, train_size=1024).variant == "protocol"
    # K outside 1, 2, 4, 8 is a variant, and says what an epoch takes: 10,240 = 53 * 192 + 64
    k3 = Protocol(k=3)
    assert (k3.variant, k3.updates_per_epoch, k3.images_per_epoch) == ("k=3", 53, 10_176)
    assert k3.as_params()["images_per_epoch"] == "10176" and Protocol(k=8).images_per_epoch == 10_240
    cpu = SimpleNamespace(runtime=SimpleNamespace(device_name="cpu", device=torch.device("cpu")))
    assert "each epoch takes 10,176 images (53 whole updates), a pass over the subset 10,240" in what_is_measured(
        "converge", k3, cpu) and "each" not in what_is_measured("converge", Protocol(k=8), cpu)
    odd = what_is_measured("converge", Protocol(k=1, train_size=10_000), cpu)  # 156 micro-batches, 16 images left
    assert "each pass drops the subset's last 16 shuffled images" in odd and "drift" not in odd
    assert p.as_params()["peak_lr"] == "0.4" and p.as_params()["lr"] == "0.1"
    for bad, match in (({"warmup_epochs": 1}, "needs --lr-scaling linear"), ({"train_size": 50_001}, "50,000"),
                       ({"lr_scaling": "sqrt"}, "lr_scaling"), ({"lr_scaling": "linear", "warmup_epochs": 6},
                                                                 "warmup_epochs")):
        with pytest.raises(ConfigError, match=match):
            Protocol(k=2, **bad).validate()


def test_converge_applies_the_warmup_schedule(ctx, monkeypatch):
    import gradacc.core.engine as engine
    seen = []
    real = engine.run_update  # converge runs its updates through engine.make_update

    def spy(model, optimizer, *args, **kwargs):
        seen.append(optimizer.param_groups[0]["lr"])
        return real(model, optimizer, *args, **kwargs)

    monkeypatch.setattr(engine, "run_update", spy)
    converge_result(ctx, monkeypatch, k=2, lr_scaling="linear", warmup_epochs=1, noise_scale="off")
    assert seen == pytest.approx([0.1 + 0.1 * u / 8 for u in range(8)] + [0.2] * 8)


def test_cli_tags_the_variant_and_says_why_k1_has_no_noise_scale(tiny_cifar, tracking_store):
    from mlflow.tracking import MlflowClient

    from tests.support.e2e import run_cli
    result = run_cli(["converge", "--k", "1", "--smoke", "--lr-scaling", "linear", "--warmup-epochs", "1",
                      "--data-dir", tiny_cifar, "--threads", "1"])
    assert result.code == 0, result.err
    assert "noise scale unavailable: K=1 has one gradient per update" in result.err
    assert "variant lr=linear,warmup=1" in result.err
    run, = MlflowClient().search_runs([MlflowClient().get_experiment_by_name("Default").experiment_id])
    assert run.data.tags["gradacc.variant"] == "lr=linear,warmup=1"
    assert run.data.tags["gradacc.noise_scale"].startswith("unavailable: K=1")
    params = run.data.params
    assert (params["lr_scaling"], params["peak_lr"], params["lr"]) == ("linear", "0.1", "0.1")
    assert not set(noise.SERIES_KEYS) & set(run.data.metrics)
