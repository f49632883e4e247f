"""core/resnet.py is torchvision's resnet18(num_classes=10), bit for bit: the same state_dict (keys in order,
shapes, seeded values, BN buffers), the same outputs in train and eval mode, the same gradients."""
from __future__ import annotations

import pytest
import torch
import torchvision

from gradacc.core.resnet import resnet18

SEEDS = (0, 42)


def both(seed: int) -> tuple[torch.nn.Module, torch.nn.Module]:
    torch.manual_seed(seed)
    ours = resnet18(num_classes=10)
    torch.manual_seed(seed)
    theirs = torchvision.models.resnet18(num_classes=10)
    return ours, theirs


def batch(seed: int, side: int = 32) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed + 1)
    return torch.randn(4, 3, side, side, generator=g), torch.randint(0, 10, (4,), generator=g)


@pytest.mark.parametrize("seed", SEEDS)
def test_state_dict_equals_torchvisions(seed):
    ours, theirs = both(seed)
    a, b = ours.state_dict(), theirs.state_dict()
    assert list(a) == list(b)  # names and registration order, buffers included
    for name in a:
        assert a[name].dtype == b[name].dtype and torch.equal(a[name], b[name]), name


@pytest.mark.parametrize("seed", SEEDS)
def test_forward_and_gradients_equal_torchvisions(seed):
    ours, theirs = both(seed)
    x, y = batch(seed)
    for model in (ours, theirs):
        model.eval()
    with torch.no_grad():
        assert torch.equal(ours(x), theirs(x))
        # CIFAR's 32x32 leaves layer4 a 1x1 map, where any pooling is the identity; 64x64 leaves it 2x2
        wide, _ = batch(seed, side=64)
        assert torch.equal(ours(wide), theirs(wide))
    grads, outs = [], []
    for model in (ours, theirs):
        model.train()
        torch.manual_seed(seed)
        out = model(x)
        torch.nn.functional.cross_entropy(out, y).backward()
        outs.append(out.detach())
        grads.append([(n, p.grad) for n, p in model.named_parameters()])
    assert torch.equal(outs[0], outs[1])
    assert [n for n, _ in grads[0]] == [n for n, _ in grads[1]]
    for (name, g0), (_, g1) in zip(*grads):
        assert torch.equal(g0, g1), name
    # train mode updated the BN running statistics the same way
    for (name, a), (_, b) in zip(ours.state_dict().items(), theirs.state_dict().items()):
        assert torch.equal(a, b), name
