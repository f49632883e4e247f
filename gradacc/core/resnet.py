"""torchvision 0.29's `resnet18(num_classes=10)`, written out without importing torchvision.

Why: `import torchvision` runs its package __init__, which imports torchvision.ops, which imports torch._dynamo
(about 1.2 s on a 2-core EPYC), in every process that builds a model: the study, each DDP worker, each test's
subprocess. torch.optim's optimizers import torch._dynamo too, so core/model.py still imports it at start-up:
today this module saves torchvision's own import (about 0.1 s); the 1.1 s goes once the optimizer does without
torch.optim. This module is that model, not a look-alike: the same modules registered under the same names in the
same order, built in the same order (the default initialisers draw from torch's RNG as they are constructed, so
the order of construction is part of the seeded weights), then the same re-initialisation. tests/unit/test_resnet.py
holds its state_dict, forward and gradients equal, bit for bit, to torchvision's under the same seed.
"""
from __future__ import annotations

import torch
from torch import nn


def conv3x3(in_planes: int, out_planes: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_planes, out_planes, kernel_size=3, stride=stride, padding=1, bias=False)


class BasicBlock(nn.Module):
    def __init__(self, inplanes: int, planes: int, stride: int = 1, downsample: nn.Module | None = None):
        super().__init__()
        self.conv1 = conv3x3(inplanes, planes, stride)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = conv3x3(planes, planes)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = downsample  # registered last, though built first (see _make_layer)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.bn2(self.conv2(self.relu(self.bn1(self.conv1(x)))))
        out += x if self.downsample is None else self.downsample(x)
        return self.relu(out)


class ResNet18(nn.Module):
    """The standard ImageNet stem (7x7 stride-2 convolution, 3x3 stride-2 max-pool), four stages of two
    BasicBlocks, global average pool, one Linear; zero_init_residual False."""

    def __init__(self, num_classes: int = 10):
        super().__init__()
        self.inplanes = 64
        self.conv1 = nn.Conv2d(3, 64, kernel_size=7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        self.layer1 = self._make_layer(64, stride=1)
        self.layer2 = self._make_layer(128, stride=2)
        self.layer3 = self._make_layer(256, stride=2)
        self.layer4 = self._make_layer(512, stride=2)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(512, num_classes)  # keeps Linear's default init, as torchvision does
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.constant_(m.weight, 1)
                nn.init.constant_(m.bias, 0)

    def _make_layer(self, planes: int, stride: int) -> nn.Sequential:
        downsample = None
        if stride != 1 or self.inplanes != planes:  # built before the block's own convolutions, as torchvision does
            downsample = nn.Sequential(nn.Conv2d(self.inplanes, planes, kernel_size=1, stride=stride, bias=False),
                                       nn.BatchNorm2d(planes))
        first = BasicBlock(self.inplanes, planes, stride, downsample)
        self.inplanes = planes
        return nn.Sequential(first, BasicBlock(planes, planes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(torch.flatten(self.avgpool(x), 1))


def resnet18(num_classes: int = 10) -> ResNet18:
    return ResNet18(num_classes)


def as_torchvision(model: ResNet18) -> nn.Module:
    """The same weights and buffers in torchvision's own ResNet, on the CPU, in eval mode: what --log-model logs,
    so that a user with torchvision but not gradacc loads it. Imports torchvision (only a run that keeps its model
    pays it); built under a forked RNG, so that the weights it draws leave torch's RNG as it was."""
    import torchvision
    with torch.random.fork_rng(devices=[]):
        twin = torchvision.models.resnet18(num_classes=model.fc.out_features)
    twin.load_state_dict(model.state_dict())  # strict: every key, every shape
    return twin.eval()
