"""The micro-batch streams: endless, reshuffled every epoch, augmented (crop 32 pad 4, flip p=0.5), normalised.

`DeviceStream` (default) keeps the uint8 subset on the device and augments whole micro-batches there;
`TorchvisionStream` is the seeds' pipeline (PIL transforms in a 2-worker DataLoader). Same distribution.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset

from gradacc.core.config import MEAN, STD

PAD = 4
SIZE = 32
OFFSETS = 2 * PAD + 1  # crop offsets 0..8 along each axis, as torchvision's RandomCrop draws them


_STATS: dict[torch.device, tuple[torch.Tensor, torch.Tensor]] = {}


def normalize_stats(device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """MEAN and STD as (1, 3, 1, 1) tensors on `device`, made once: a host-to-device copy per micro-batch would wait
    for the stream's earlier work each time (and keep seeds trained together from overlapping)."""
    if device not in _STATS:
        _STATS[device] = (torch.tensor(MEAN, device=device).view(1, 3, 1, 1),
                          torch.tensor(STD, device=device).view(1, 3, 1, 1))
    return _STATS[device]


def normalize(images_u8_nchw: torch.Tensor) -> torch.Tensor:
    """uint8 NCHW -> float32 NCHW, (x/255 - mean) / std."""
    mean, std = normalize_stats(images_u8_nchw.device)
    return (images_u8_nchw.float().div_(255.0) - mean).div_(std)


def to_nchw(images_u8_nhwc: np.ndarray, device: torch.device) -> torch.Tensor:
    return torch.from_numpy(images_u8_nhwc).to(device).permute(0, 3, 1, 2).contiguous()


def pad_on_device(images_u8_nhwc: np.ndarray, device: torch.device) -> torch.Tensor:
    """The subset moved to the device once, zero-padded for the crops: (N, 3, 40, 40) uint8."""
    return F.pad(to_nchw(images_u8_nhwc, device), (PAD, PAD, PAD, PAD))


def crop_flip(padded: torch.Tensor, index: torch.Tensor, top: torch.Tensor, left: torch.Tensor,
              flip: torch.Tensor) -> torch.Tensor:
    """Batched crop and flip by one gather: image index[b], rows top[b]+0..31, columns left[b]+0..31
    (reversed where flip[b]), from zero-padded uint8 images (N, C, 40, 40). Returns (B, C, 32, 32)."""
    span = torch.arange(SIZE, device=padded.device)
    rows = top[:, None] + span  # (B, 32)
    cols = torch.where(flip[:, None], left[:, None] + (SIZE - 1) - span, left[:, None] + span)
    channels = torch.arange(padded.shape[1], device=padded.device)
    return padded[index[:, None, None, None], channels[None, :, None, None],
                  rows[:, None, :, None], cols[:, None, None, :]]


class DeviceStream:
    """Endless augmented micro-batches from a subset held on the device.

    The permutation, crop offsets and flips are drawn per epoch from a CPU generator seeded per
    configuration, so CPU and GPU runs of one seed see the same images."""

    def __init__(self, padded: torch.Tensor, labels: torch.Tensor, micro_batch: int, seed: int):
        self.padded, self.labels = padded, labels  # from pad_on_device: shared by every configuration
        self.micro_batch = micro_batch
        self.device = padded.device
        self.generator = torch.Generator().manual_seed(seed)
        normalize_stats(self.device)  # made now, on the stream that builds the run, not inside a seed's stream
        self.per_epoch = len(labels) // micro_batch  # a partial last micro-batch is dropped, as drop_last=True
        self.position = self.per_epoch  # forces a fresh epoch on the first call

    def _new_epoch(self) -> None:
        n = len(self.labels)
        draws = (torch.randperm(n, generator=self.generator),
                 torch.randint(0, OFFSETS, (n,), generator=self.generator),
                 torch.randint(0, OFFSETS, (n,), generator=self.generator),
                 torch.randint(0, 2, (n,), generator=self.generator).bool())
        self.index, self.top, self.left, self.flip = (t.to(self.device, non_blocking=True) for t in draws)
        self.position = 0

    def next_batch(self) -> tuple[torch.Tensor, torch.Tensor]:
        if self.position == self.per_epoch:
            self._new_epoch()
        part = slice(self.position * self.micro_batch, (self.position + 1) * self.micro_batch)
        self.position += 1
        index = self.index[part]
        images = crop_flip(self.padded, index, self.top[part], self.left[part], self.flip[part])
        return normalize(images), self.labels[index]

    def close(self) -> None:
        pass


class ArrayDataset(Dataset):
    """The seeds' Dataset: uint8 HWC arrays through torchvision's PIL transforms."""

    def __init__(self, images_u8_nhwc: np.ndarray, labels: np.ndarray, transform):
        self.images, self.labels, self.transform = images_u8_nhwc, labels, transform

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int):
        from PIL import Image
        return self.transform(Image.fromarray(self.images[i])), int(self.labels[i])


def train_transform():
    from torchvision import transforms as T
    return T.Compose([T.RandomCrop(SIZE, padding=PAD), T.RandomHorizontalFlip(),
                      T.ToTensor(), T.Normalize(MEAN, STD)])


class TorchvisionStream:
    """The seeds' stream: DataLoader(shuffle=True, 2 workers, pinned memory); seeded through its generator
    (torch seeds each worker from it, and torchvision's random transforms draw from torch's RNG)."""

    def __init__(self, images_u8_nhwc: np.ndarray, labels: np.ndarray, micro_batch: int, seed: int,
                 device: torch.device, workers: int = 2):
        dataset = ArrayDataset(images_u8_nhwc, labels, train_transform())
        self.loader = DataLoader(dataset, batch_size=micro_batch, shuffle=True, drop_last=True,
                                 num_workers=workers, pin_memory=device.type == "cuda",
                                 persistent_workers=workers > 0,
                                 generator=torch.Generator().manual_seed(seed))
        self.device = device
        self.iterator = None
        # Without workers the transforms draw from this process's global RNG, which the generator does not
        # seed: they get a private RNG state, seeded as the DataLoader seeds worker 0 (the generator's first
        # draw), swapped in around each fetch.
        self.rng_state = None
        if workers == 0:
            first = torch.empty((), dtype=torch.int64).random_(generator=torch.Generator().manual_seed(seed))
            self.rng_state = torch.Generator().manual_seed(first.item()).get_state()

    def _fetch(self):
        if self.rng_state is None:
            return next(self.iterator)
        with torch.random.fork_rng(devices=[]):
            torch.set_rng_state(self.rng_state)
            try:
                return next(self.iterator)
            finally:
                self.rng_state = torch.get_rng_state()

    def next_batch(self) -> tuple[torch.Tensor, torch.Tensor]:
        if self.iterator is None:
            self.iterator = iter(self.loader)
        try:
            images, labels = self._fetch()
        except StopIteration:  # the stream runs on across epoch ends, reshuffled
            self.iterator = iter(self.loader)
            images, labels = self._fetch()
        return (images.to(self.device, non_blocking=True), labels.to(self.device, non_blocking=True))

    def close(self) -> None:
        # Ends the persistent workers now rather than at interpreter exit.
        self.iterator = None
        self.loader = None
