"""The protocol as frozen dataclasses: defaults follow DESIGN.md section 2 exactly; derived values are properties."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from .errors import ConfigError

MEAN = (0.4914, 0.4822, 0.4465)
STD = (0.2023, 0.1994, 0.2010)
LOADERS = ("device", "torchvision")
DEVICES = ("auto", "cuda", "cpu")
DEFAULT_KS = (1, 2, 4, 8)


@dataclass(frozen=True)
class Protocol:
    """What one configuration trains and measures."""

    k: int = 1
    epochs: int = 5
    seed: int = 42
    loader: str = "device"
    micro_batch: int = 64
    train_size: int = 10_240
    test_size: int = 2_048
    lr: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 5e-4
    eval_batch: int = 256
    warmup_micro_iters: int = 20  # Part 1, not timed
    timed_micro_iters: int = 80  # Part 1
    smoke: bool = False
    cuda_graphs: bool = False  # updates replayed from a CUDA graph (Parts 2 and 3; Part 1 times micro-batches)

    @property
    def effective_batch(self) -> int:
        return self.micro_batch * self.k

    @property
    def updates_per_epoch(self) -> int:
        return self.train_size // self.effective_batch

    @property
    def total_updates(self) -> int:
        return self.epochs * self.updates_per_epoch

    def validate(self) -> "Protocol":
        if self.k < 1:
            raise ConfigError(f"k must be a positive integer, got {self.k}")
        if self.epochs < 1:
            raise ConfigError(f"epochs must be a positive integer, got {self.epochs}")
        if self.loader not in LOADERS:
            raise ConfigError(f"loader must be one of {', '.join(LOADERS)}, got {self.loader!r}")
        if self.updates_per_epoch < 1:
            raise ConfigError(
                f"k={self.k} needs {self.effective_batch} images per update, but the training subset has "
                f"{self.train_size}: an epoch would have no update (largest k: "
                f"{self.train_size // self.micro_batch})")
        return self

    def as_params(self) -> dict[str, str]:
        """The whole resolved protocol, derived values included, as MLflow params."""
        params = {f.name: str(getattr(self, f.name)) for f in dataclasses.fields(self)}
        params["smoke"] = str(self.smoke).lower()
        params["cuda_graphs"] = str(self.cuda_graphs).lower()
        params.update(effective_batch=str(self.effective_batch),
                      updates_per_epoch=str(self.updates_per_epoch),
                      total_updates=str(self.total_updates))
        return params


def smoke_protocol(k: int, seed: int, loader: str, cuda_graphs: bool = False) -> Protocol:
    """A tiny subset and one epoch through the same code: enough for two updates at k=8, seconds on a CPU."""
    return Protocol(k=k, epochs=1, seed=seed, loader=loader, train_size=1_024, test_size=256,
                    warmup_micro_iters=2, timed_micro_iters=8, smoke=True, cuda_graphs=cuda_graphs)
