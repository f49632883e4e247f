"""What the parts share: the Context (runtime and data of one process, loaded once) and the Result a part fills
(per-step series and summaries; only the entry point logs them)."""
from __future__ import annotations

import resource
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from gradacc.core.config import Protocol
from gradacc.core.data import Subset, load_subset, resolve_data_dir, subset_digest
from gradacc.core.errors import ConfigError
from gradacc.core.request import Settings
from gradacc.core.runtime import Runtime, resolve_runtime
from gradacc.core.streams import DeviceStream, TorchvisionStream, normalize, pad_on_device, to_nchw


@dataclass
class Context:
    """What every configuration of a process shares: the runtime and the subset, loaded once."""

    runtime: Runtime
    subset: Subset
    data_path: Path
    _device_cache: dict = field(default_factory=dict, repr=False)

    @classmethod
    def prepare(cls, runtime: Runtime, data_root: Path, train_size: int, test_size: int) -> "Context":
        return cls(runtime, load_subset(data_root, train_size, test_size), data_root.resolve())

    def params(self) -> dict[str, str]:
        """Resolved runtime values, each under its own key."""
        return {**self.runtime.as_params(), "data_path": str(self.data_path)}

    def _cached(self, key: str, make):
        if key not in self._device_cache:
            self._device_cache[key] = make()
        return self._device_cache[key]

    def stream(self, protocol: Protocol):
        """A fresh micro-batch stream of the protocol's loader and seed over its first train_size images."""
        n, device = protocol.train_size, self.runtime.device
        images, labels = self.subset.train_images[:n], self.subset.train_labels[:n]
        if protocol.loader == "torchvision":
            return TorchvisionStream(images, labels, protocol.micro_batch, protocol.seed, device)
        padded = self._cached(f"train{n}", lambda: pad_on_device(images, device))
        labels_dev = self._cached(f"labels{n}", lambda: torch.from_numpy(labels).to(device))
        return DeviceStream(padded, labels_dev, protocol.micro_batch, protocol.seed)

    def test_set(self, protocol: Protocol) -> tuple[torch.Tensor, torch.Tensor]:
        """The first test_size test images, normalised only, on the device."""
        n, device = protocol.test_size, self.runtime.device
        return self._cached(f"test{n}", lambda: (
            normalize(to_nchw(self.subset.test_images[:n], device)),
            torch.from_numpy(self.subset.test_labels[:n]).to(device)))

    def subset_digest(self, split: str, n: int) -> str:
        """core.data.subset_digest of the first n images of `split` ('train' or 'test'): once per process, not
        once per run (a SHA-256 over 30 MB of training images)."""
        images, labels = ((self.subset.train_images, self.subset.train_labels) if split == "train"
                          else (self.subset.test_images, self.subset.test_labels))
        return self._cached(f"digest-{split}{n}", lambda: subset_digest(images[:n], labels[:n]))

    def reset_peak_memory(self) -> None:
        if self.runtime.is_cuda:
            torch.cuda.reset_peak_memory_stats(self.runtime.device)

    def peak_memory_mb(self) -> float:
        """Peak device memory allocated on a GPU; the process's peak RSS on a CPU (never reset)."""
        if self.runtime.is_cuda:
            return torch.cuda.max_memory_allocated(self.runtime.device) / 2**20
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


@dataclass
class Result:
    """A part's measurements: per-step series {name: (steps, values)} and summary scalars.

    The entry point creates it and a part fills it as it goes, so that whatever was measured before an
    interrupt or a failure can still be logged."""

    part: str
    series: dict[str, tuple[list[int], list[float]]] = field(default_factory=dict)
    summaries: dict[str, float] = field(default_factory=dict)
    # where a part hands points as they are measured, [(key, value, wall-clock ms, step)]: the entry point's
    # writer (gradacc/tracking/live.py); a part must not wait on it
    live: Callable[[list], None] = field(default=lambda _points: None, repr=False)
    keep_model: bool = False  # set by the entry point (--log-model): a part that trains one leaves it in `model`
    model: object = field(default=None, repr=False)  # ... once it trained every epoch


def series_from(values, first_step: int = 0) -> tuple[list[int], list[float]]:
    values = [float(v) for v in np.asarray(values, dtype=float).ravel()]
    return list(range(first_step, first_step + len(values))), values


def noop(_n: int = 1) -> None:
    """Default progress callback."""


def prepare(protocols, settings: Settings) -> Context:
    """Resolve the runtime and load the data once, for every configuration (protocol) of this process."""
    runtime = resolve_runtime(settings.device, settings.threads, settings.tf32)
    if any(p.cuda_graphs for p in protocols) and not runtime.is_cuda:
        raise ConfigError(f"--cuda-graphs needs a CUDA device; this run is on {runtime.device.type}")
    root = resolve_data_dir(settings.data_dir)
    return Context.prepare(runtime, root, max(p.train_size for p in protocols),
                           max(p.test_size for p in protocols))
