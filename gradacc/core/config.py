"""The protocol as frozen dataclasses: defaults follow docs/protocol.md exactly; derived values are properties."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from gradacc.core.errors import ConfigError
from gradacc.names import DEFAULT_VARIANT

MEAN = (0.4914, 0.4822, 0.4465)
STD = (0.2023, 0.1994, 0.2010)
LOADERS = ("device", "torchvision")
DEVICES = ("auto", "cuda", "cpu")
TF32_MODES = ("on", "off")  # on: PyTorch's default (cuDNN convolutions may use TF32 on Ampere and newer)
DEFAULT_KS = (1, 2, 4, 8)
RESNET18_PARAMS = 11_181_642  # torchvision's resnet18(num_classes=10); tests count it from the model
GRADIENT_BYTES = 4 * RESNET18_PARAMS  # the float32 gradient that an all-reduce carries per update
LR_SCALINGS = ("none", "linear")
NOISE_MODES = ("auto", "on", "off")
MAX_TRAIN_SIZE = 50_000  # data_batch_1..5


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
    # Variants (never the default): lr = lr * K under 'linear' (Goyal et al. 2017), reached by a linear ramp
    # from lr over warmup_epochs; train_size up to the full 50,000 images.
    lr_scaling: str = "none"
    warmup_epochs: int = 0
    noise_scale: str = "auto"  # converge: measure the gradient noise scale (auto: for K >= 2)
    cuda_graphs: bool = False  # updates replayed from a CUDA graph (Parts 2 and 3; Part 1 times micro-batches)
    # Part 3: the test accuracy after every epoch too, not only after training (the protocol); training is the
    # same either way, each evaluation costs about a tenth of an epoch's updates on a CPU.
    eval_every_epoch: bool = False

    @property
    def peak_lr(self) -> float:
        return self.lr * self.k if self.lr_scaling == "linear" else self.lr

    @property
    def warmup_updates(self) -> int:
        return self.warmup_epochs * self.updates_per_epoch

    def lr_at(self, update: int) -> float:
        """The lr of update 0..U-1: Goyal et al.'s gradual warm-up from lr to peak_lr, then constant."""
        if update >= self.warmup_updates:
            return self.peak_lr
        return self.lr + (self.peak_lr - self.lr) * update / self.warmup_updates

    @property
    def variant(self) -> str:
        """'protocol', or what departs from it, e.g. 'lr=linear,warmup=1,train=50000' (the gradacc.variant tag)."""
        default = Protocol()
        parts = [f"k={self.k}" if self.k not in DEFAULT_KS else "",
                 f"lr={self.lr_scaling}" if self.lr_scaling != default.lr_scaling else "",
                 f"warmup={self.warmup_epochs}" if self.warmup_epochs != default.warmup_epochs else "",
                 f"epochs={self.epochs}" if self.epochs != default.epochs and not self.smoke else "",
                 f"train={self.train_size}" if self.train_size != default.train_size and not self.smoke else ""]
        return ",".join(p for p in parts if p) or DEFAULT_VARIANT

    @property
    def effective_batch(self) -> int:
        return self.micro_batch * self.k

    @property
    def updates_per_epoch(self) -> int:
        return self.train_size // self.effective_batch

    @property
    def images_per_epoch(self) -> int:
        """The images one epoch's updates take: the training subset for K = 1, 2, 4, 8; for other K less than a
        pass over it (K = 3: 53 updates of 192 = 10,176 of 10,240). The stream runs on across epoch ends, so
        its passes then drift against the epochs (streams.py: a pass drops only a partial last micro-batch)."""
        return self.updates_per_epoch * self.effective_batch

    @property
    def images_per_pass(self) -> int:
        """The images of one pass of the stream over the shuffled subset: whole micro-batches (drop_last)."""
        return self.train_size // self.micro_batch * self.micro_batch

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
        if not self.micro_batch <= self.train_size <= MAX_TRAIN_SIZE:
            raise ConfigError(f"train_size must be {self.micro_batch}..{MAX_TRAIN_SIZE:,}, got {self.train_size}")
        if self.lr_scaling not in LR_SCALINGS:
            raise ConfigError(f"lr_scaling must be one of {', '.join(LR_SCALINGS)}, got {self.lr_scaling!r}")
        if not 0 <= self.warmup_epochs <= self.epochs:
            raise ConfigError(f"warmup_epochs must be 0..epochs ({self.epochs}), got {self.warmup_epochs}")
        if self.warmup_epochs and self.lr_scaling == "none":
            raise ConfigError("warmup_epochs ramps the lr from 0.1 to 0.1*K: it needs --lr-scaling linear")
        if self.noise_scale not in NOISE_MODES:
            raise ConfigError(f"noise_scale must be one of {', '.join(NOISE_MODES)}, got {self.noise_scale!r}")
        if self.noise_scale == "on" and self.k < 2:
            raise ConfigError("noise_scale=on needs k >= 2: with k=1 an update has one gradient, and the "
                              "estimator needs at least two (use auto)")
        if self.cuda_graphs and (self.noise_scale == "on" or self.warmup_epochs):
            raise ConfigError("--cuda-graphs replays whole updates with a fixed lr: it cannot measure the noise "
                              "scale (per micro-step) nor follow an lr warm-up")
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
        params["eval_every_epoch"] = str(self.eval_every_epoch).lower()
        params.update(effective_batch=str(self.effective_batch),
                      updates_per_epoch=str(self.updates_per_epoch),
                      total_updates=str(self.total_updates), peak_lr=str(self.peak_lr),
                      images_per_epoch=str(self.images_per_epoch))
        return params


def smoke_protocol(k: int, seed: int, loader: str = "device", **variant) -> Protocol:
    """A tiny subset and one epoch through the same code: enough for two updates at k=8, seconds on a CPU."""
    return Protocol(k=k, epochs=1, seed=seed, loader=loader, train_size=1_024, test_size=256,
                    warmup_micro_iters=2, timed_micro_iters=8, smoke=True, **variant)


def build_protocol(k: int, seed: int, smoke: bool = False, **fields) -> Protocol:
    """The validated protocol of a command's options (`fields`: Protocol's own, e.g. epochs, loader, the variants);
    the smoke protocol where `smoke`, whose subset and single epoch replace epochs and train_size."""
    if fields.get("cuda_graphs") and fields.get("noise_scale", "auto") == "auto":
        fields["noise_scale"] = "off"  # a graph replays whole updates: no micro-step to snapshot the gradients at
    if smoke:
        kept = {key: value for key, value in fields.items() if key not in ("epochs", "train_size")}
        return smoke_protocol(k, seed, **kept).validate()
    return Protocol(k=k, seed=seed, **fields).validate()
