"""THE update: K accumulated micro-batches give the gradient and the SGD step of one batch of 64*K."""
from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
import torchvision
from torch import nn

from gradacc.core.config import Protocol
from gradacc.core.engine import evaluate, run_update
from gradacc.core.model import build_optimizer
from tests.support.fakes import LoggedTimer

MICRO = Protocol.micro_batch  # 64


class ListStream:
    """A stream over fixed micro-batches that counts its fetches (and logs them, when given a log)."""

    def __init__(self, batches, log=None):
        self.batches, self.fetched, self.log = list(batches), 0, log

    def next_batch(self):
        if self.log is not None:
            self.log.append("fetch")
        self.fetched += 1
        return self.batches.pop(0)


def tiny_net(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(2), nn.Flatten(),
                         nn.Linear(16, 10)).double()


def make_batches(count: int, size: int = MICRO, seed: int = 1, hw: int = 8, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    return [(torch.randn(size, 3, hw, hw, generator=g, dtype=dtype), torch.randint(0, 10, (size,), generator=g))
            for _ in range(count)]


def concat(batches):
    return torch.cat([x for x, _ in batches]), torch.cat([y for _, y in batches])


def big_batch_grads(model, batches):
    """Gradients of the mean cross-entropy over all the batches at once (one batch of 64*K)."""
    model = copy.deepcopy(model)
    model.zero_grad()
    x, y = concat(batches)
    F.cross_entropy(model(x), y).backward()
    return [p.grad.clone() for p in model.parameters()]


def count_steps(optimizer) -> list:
    steps = []
    optimizer.register_step_pre_hook(lambda opt, args, kwargs: steps.append(1))
    return steps


@pytest.mark.parametrize("k", [1, 2, 4, 8])
def test_accumulated_gradient_equals_big_batch_gradient(k):
    model, batches = tiny_net(), make_batches(k)
    expected = big_batch_grads(model, batches)
    optimizer = build_optimizer(model, Protocol(k=k))
    run_update(model, optimizer, ListStream(batches), k, step=False)
    for got, want in zip((p.grad for p in model.parameters()), expected):
        torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-12)


def test_resnet18_eval_mode_accumulation_matches_big_batch():
    # Eval mode: BatchNorm uses running statistics, so the big-batch gradient is well defined per image.
    torch.manual_seed(0)
    model = torchvision.models.resnet18(num_classes=10).double().eval()
    batches = make_batches(2, size=4, hw=32)
    expected = big_batch_grads(model, batches)
    run_update(model, torch.optim.SGD(model.parameters(), lr=0.1), ListStream(batches), 2, step=False)
    for got, want in zip((p.grad for p in model.parameters()), expected):
        torch.testing.assert_close(got, want, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("k", [2, 4])
def test_weights_after_updates_equal_sgd_on_the_big_batch(k):
    protocol = Protocol(k=k)
    model, updates = tiny_net(), [make_batches(k, seed=10 + u) for u in range(3)]
    reference = copy.deepcopy(model)
    ref_opt = torch.optim.SGD(reference.parameters(), lr=0.1, momentum=0.9, weight_decay=5e-4)
    optimizer = build_optimizer(model, protocol)
    stream = ListStream([b for update in updates for b in update])
    for batches in updates:  # three updates: the momentum buffer carries over between them
        run_update(model, optimizer, stream, k)
        ref_opt.zero_grad()
        x, y = concat(batches)
        F.cross_entropy(reference(x), y).backward()
        ref_opt.step()
        for got, want in zip(model.parameters(), reference.parameters()):
            torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-12)
    assert any(not torch.equal(p, q) for p, q in zip(model.parameters(), tiny_net().parameters()))


def test_each_call_fetches_k_batches_and_steps_once():
    k, calls = 4, 3
    model = tiny_net()
    optimizer = build_optimizer(model, Protocol(k=k))
    steps = count_steps(optimizer)
    stream = ListStream(make_batches(k * calls))
    for n in range(1, calls + 1):
        run_update(model, optimizer, stream, k)
        assert len(steps) == n and stream.fetched == k * n


def test_partial_update_does_not_step_and_holds_the_partial_sum():
    k, rest = 8, 3
    model, batches = tiny_net(), make_batches(rest)
    before = [p.detach().clone() for p in model.parameters()]
    optimizer = build_optimizer(model, Protocol(k=k))
    steps = count_steps(optimizer)
    stream = ListStream(batches)
    run_update(model, optimizer, stream, k, micro_steps=rest, step=False)
    assert steps == [] and stream.fetched == rest
    assert all(torch.equal(p, q) for p, q in zip(model.parameters(), before))
    # The loss is still divided by k: the gradient is rest/k of the mean over the rest micro-batches.
    expected = big_batch_grads(model, batches)
    for got, want in zip((p.grad for p in model.parameters()), expected):
        torch.testing.assert_close(got, want * rest / k, rtol=1e-10, atol=1e-12)


def test_stale_gradients_are_zeroed_first():
    model, batches = tiny_net(), make_batches(2)
    expected = big_batch_grads(model, batches)
    for p in model.parameters():
        p.grad = torch.full_like(p, 7.0)
    run_update(model, build_optimizer(model, Protocol(k=2)), ListStream(batches), 2, step=False)
    for got, want in zip((p.grad for p in model.parameters()), expected):
        torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-12)


def test_returned_loss_is_the_sum_of_unscaled_micro_batch_losses():
    k = 4
    model, batches = tiny_net(), make_batches(k)
    with torch.no_grad():
        losses = [F.cross_entropy(model(x), y).item() for x, y in batches]
    loss_sum = run_update(model, build_optimizer(model, Protocol(k=k)), ListStream(batches), k)
    assert loss_sum.shape == () and not loss_sum.requires_grad
    assert loss_sum.item() == pytest.approx(sum(losses), rel=1e-6)
    assert loss_sum.item() > 1.0  # four losses near ln(10) each, not their mean


def test_fetch_and_step_stay_outside_the_micro_timer():
    log = []
    model = tiny_net()
    optimizer = build_optimizer(model, Protocol(k=3))
    optimizer.register_step_pre_hook(lambda opt, args, kwargs: log.append("step"))
    run_update(model, optimizer, ListStream(make_batches(3), log), 3,
               micro_timer=LoggedTimer("micro", log), step_timer=LoggedTimer("opt", log))
    assert log == ["fetch", "micro<", ">micro"] * 3 + ["opt<", "step", ">opt"]


class KnownOutputs(nn.Module):
    """Predicts the class written in the first feature of each input; records its mode and grad state."""

    def __init__(self):
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(1))
        self.seen = []

    def forward(self, x):
        self.seen.append((self.training, torch.is_grad_enabled(), len(x)))
        return F.one_hot(x[:, 0].long(), 10).float() + self.weight


@pytest.mark.parametrize("was_training", [True, False])
def test_evaluate_accuracy_batches_and_mode(was_training):
    predicted = torch.tensor([3, 1, 4, 1, 5, 9, 2, 6, 5, 3])
    labels = torch.tensor([3, 1, 4, 0, 5, 9, 0, 6, 0, 0])  # 6 of 10 right
    model = KnownOutputs().train(was_training)
    accuracy = evaluate(model, predicted[:, None].float(), labels, batch=4)
    assert accuracy == pytest.approx(60.0)
    assert model.seen == [(False, False, 4), (False, False, 4), (False, False, 2)]
    assert model.training is was_training
