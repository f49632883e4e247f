"""The protocol's model (torchvision ResNet-18, standard stem, 10 classes) and its SGD optimizer."""
from __future__ import annotations

import torch
import torchvision

from gradacc.core.config import Protocol


def build_model(seed: int, device: torch.device) -> torch.nn.Module:
    """A fresh ResNet-18 whose initial weights depend on the seed alone (seeded right before it is built)."""
    torch.manual_seed(seed)
    return torchvision.models.resnet18(num_classes=10).to(device)


def build_optimizer(model: torch.nn.Module, protocol: Protocol) -> torch.optim.Optimizer:
    """SGD, momentum, SGD's own weight decay (applied to every parameter, as the seeds do); the lr of the first
    update (the protocol's constant 0.1; a variant's schedule is applied by `set_lr`)."""
    return torch.optim.SGD(model.parameters(), lr=protocol.lr_at(0), momentum=protocol.momentum,
                           weight_decay=protocol.weight_decay)


def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    for group in optimizer.param_groups:
        group["lr"] = lr
