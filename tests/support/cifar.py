"""Tiny CIFAR-10 data roots in the official python layout, written through gradacc's own batch writer: the
structured set of the `tiny_cifar` fixture, a random --smoke-sized root, and malformed batches."""
from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np

from gradacc.core.data import FOLDER, TEST_FILE, TRAIN_FILES, write_batch

SMOKE_TRAIN, SMOKE_TEST = 1_024, 256
TINY_PER_TRAIN_FILE = 210  # 5 files: 1,050 training images, enough for the --smoke subset (1,024)
TINY_TEST = 260  # enough for the --smoke test subset (256)


def tiny_images(count: int, first: int, test: bool) -> tuple[np.ndarray, np.ndarray]:
    """Images `first..first+count-1` of the tiny set (see `tiny_cifar` for the encoding)."""
    index = np.arange(first, first + count)
    images = np.empty((count, 32, 32, 3), dtype=np.uint8)
    images[..., 0] = (index % 256)[:, None, None]
    images[..., 1] = (index // 256 + (128 if test else 0))[:, None, None]
    images[..., 2] = (8 * np.arange(32))[None, :, None]
    labels = (index + (3 if test else 0)) % 10
    return images, labels


def write_tiny_cifar(root: Path) -> Path:
    """The structured tiny set (see conftest's `tiny_cifar`): 5 training files of 210 images, 260 test images."""
    for n, name in enumerate(TRAIN_FILES):
        write_batch(root / FOLDER / name, *tiny_images(TINY_PER_TRAIN_FILE, n * TINY_PER_TRAIN_FILE, False))
    write_batch(root / FOLDER / TEST_FILE, *tiny_images(TINY_TEST, 0, True))
    return root


def write_data_root(root: Path, train: int = SMOKE_TRAIN, test: int = SMOKE_TEST, seed: int = 0) -> Path:
    """A CIFAR-format root (root/cifar-10-batches-py/{data_batch_1,test_batch}) of random images, labels 0..9."""
    rng = np.random.default_rng(seed)
    folder = root / FOLDER
    write_batch(folder / "data_batch_1", rng.integers(0, 256, (train, 32, 32, 3), dtype=np.uint8),
                np.arange(train) % 10)
    write_batch(folder / "test_batch", rng.integers(0, 256, (test, 32, 32, 3), dtype=np.uint8),
                np.arange(test) % 10)
    return root


def write_raw_batch(path: Path, data: np.ndarray, labels: list[int]) -> None:
    """A batch file with arbitrary content (for malformed-data tests)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("wb") as fh:
        pickle.dump({b"data": data, b"labels": labels}, fh)
