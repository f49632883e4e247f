"""CIFAR-10 on disk (official python layout) -> the protocol's uint8 subset, checked as it is read."""
from __future__ import annotations

import codecs
import contextlib
import hashlib
import os
import pickle
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from gradacc.core.errors import DataError

FOLDER = "cifar-10-batches-py"
TRAIN_FILES = tuple(f"data_batch_{i}" for i in range(1, 6))
TEST_FILE = "test_batch"
IMAGES_PER_FILE = 10_000
NUM_CLASSES = 10
URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
TARBALL_MD5 = "c58f30108f718f92721af3b95e74349a"  # of the official tarball, as torchvision checks it
ENV_VAR = "GRADACC_DATA_DIR"
AUTO = "auto"  # --data-dir auto: GRADACC_DATA_DIR, else ./data (an empty default would reach MLflow as '')
DEFAULT_DIR = "data"


@dataclass(frozen=True)
class Subset:
    """The first train_size / test_size images in the official order: uint8 NHWC arrays and int64 labels."""

    train_images: np.ndarray
    train_labels: np.ndarray
    test_images: np.ndarray
    test_labels: np.ndarray


def resolve_data_dir(data_dir: str | None) -> Path:
    """--data-dir if given (not empty, not 'auto'), else GRADACC_DATA_DIR, else ./data."""
    chosen = (data_dir if data_dir not in (None, "", AUTO) else None) or os.environ.get(ENV_VAR) or DEFAULT_DIR
    return Path(chosen).expanduser()


def ensure_dataset(root: Path, download: bool = True) -> Path:
    """The batches folder under root; downloads and verifies the official tarball when it is absent."""
    folder = root / FOLDER
    if folder.is_dir():
        return folder
    hint = (f"put the official CIFAR-10 python layout ({FOLDER}/) under {root.resolve()}, "
            f"or point --data-dir / {ENV_VAR} at the folder that holds it")
    if not download:
        raise DataError(f"CIFAR-10 not found at {folder.resolve()}: {hint}")
    from torchvision.datasets.utils import download_and_extract_archive
    made = [p for p in (root, *root.parents) if not p.exists()]  # what the download creates, deepest first
    try:
        download_and_extract_archive(URL, download_root=str(root), md5=TARBALL_MD5)
    except Exception as err:  # offline, refused, bad checksum: all end the same way for the user
        for path in made:  # a mistyped --data-dir leaves no empty folders behind
            with contextlib.suppress(OSError):
                path.rmdir()
        raise DataError(f"CIFAR-10 not found at {folder.resolve()} and the download failed "
                        f"({type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}); {hint}") from None
    if not folder.is_dir():
        raise DataError(f"the downloaded archive did not contain {FOLDER}/; {hint}")
    return folder


def _latin1(text: str, encoding: str = "latin1", *_) -> bytes:
    """What a protocol-2 pickle of bytes calls (`_codecs.encode(text, 'latin1')`), with no other codec."""
    if encoding not in ("latin1", "latin-1"):
        raise Refused(f"_codecs.encode with the codec {encoding!r}")
    return codecs.encode(text, "latin1")


def _numpy_internal(name: str):
    """numpy's unpickling helper `name`: numpy 2 keeps it in numpy._core, numpy 1 in numpy.core."""
    try:
        from numpy._core import multiarray, numeric
    except ImportError:  # numpy 1.x
        from numpy.core import multiarray, numeric
    return getattr(multiarray if name == "_reconstruct" else numeric, name)


# Every global a CIFAR-10 batch's pickle may name: the official files (numpy 1, protocol 2) name the first three;
# batches numpy 2 writes name numpy._core (protocol 5: _frombuffer); protocol 2 from Python 3 adds _codecs.encode.
# Nothing else is looked up, so a pickle that names os.system or any other callable is refused, never run.
ALLOWED_GLOBALS = {
    ("numpy.core.multiarray", "_reconstruct"): lambda: _numpy_internal("_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"): lambda: _numpy_internal("_reconstruct"),
    ("numpy.core.numeric", "_frombuffer"): lambda: _numpy_internal("_frombuffer"),
    ("numpy._core.numeric", "_frombuffer"): lambda: _numpy_internal("_frombuffer"),
    ("numpy", "ndarray"): lambda: np.ndarray,
    ("numpy", "dtype"): lambda: np.dtype,
    ("_codecs", "encode"): lambda: _latin1,
}


class Refused(pickle.UnpicklingError):
    """A batch's pickle names a global that a CIFAR-10 batch does not hold."""


class BatchUnpickler(pickle.Unpickler):
    """pickle.Unpickler restricted to what a CIFAR-10 batch holds: dicts, lists, bytes, strings, numbers and numpy
    arrays (ALLOWED_GLOBALS). A pickle runs code only through the globals it names; these are the only ones found."""

    def find_class(self, module: str, name: str):
        found = ALLOWED_GLOBALS.get((module, name))
        if found is None:
            raise Refused(f"{module}.{name}")
        return found()


def load_batch(path: Path):
    """The object pickled in `path`, read by BatchUnpickler (bytes keys, as the official files were written)."""
    with path.open("rb") as fh:
        return BatchUnpickler(fh, encoding="bytes").load()


def read_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """One pickled batch -> (N, 32, 32, 3) uint8 images and (N,) int64 labels, structure checked. Read without
    running code: a pickle that names anything but numpy's array and dtype rebuilders is refused."""
    if not path.is_file():
        raise DataError(f"data batch missing: {path}")
    try:
        entry = load_batch(path)
    except Refused as err:
        raise DataError(f"data batch {path} is refused: its pickle calls {err}, which a CIFAR-10 batch never "
                        "holds (batches are read by a restricted unpickler; nothing in it was run)") from None
    except Exception as err:
        raise DataError(f"data batch {path} is truncated or corrupt ({type(err).__name__})") from None
    if not isinstance(entry, dict) or b"data" not in entry or b"labels" not in entry:
        raise DataError(f"data batch {path} is not a CIFAR-10 batch (no 'data'/'labels' entries)")
    data = np.asarray(entry[b"data"])
    labels = np.asarray(entry[b"labels"])
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3 * 32 * 32:
        raise DataError(f"data batch {path} has images of shape {data.shape} and dtype {data.dtype}; "
                        "expected (N, 3072) uint8")
    if labels.shape != (data.shape[0],):
        raise DataError(f"data batch {path} has {labels.size} labels for {data.shape[0]} images")
    if labels.size and (labels.min() < 0 or labels.max() >= NUM_CLASSES):
        raise DataError(f"data batch {path} has labels outside 0..{NUM_CLASSES - 1}")
    images = data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
    return np.ascontiguousarray(images), labels.astype(np.int64)


def _take(folder: Path, files: tuple[str, ...], count: int) -> tuple[np.ndarray, np.ndarray]:
    """The first `count` images over `files` in order, reading only the files needed."""
    images, labels, have = [], [], 0
    for name in files:
        if have >= count:
            break
        x, y = read_batch(folder / name)
        images.append(x[: count - have])
        labels.append(y[: count - have])
        have += len(images[-1])
    if have < count:
        raise DataError(f"asked for {count} images but {folder} holds only {have} in {', '.join(files)}")
    return np.concatenate(images), np.concatenate(labels)


def load_subset(root: Path, train_size: int, test_size: int, download: bool = True) -> Subset:
    """The protocol's subset: first train_size training and first test_size test images, official order."""
    folder = ensure_dataset(root, download=download)
    train_x, train_y = _take(folder, TRAIN_FILES, train_size)
    test_x, test_y = _take(folder, (TEST_FILE,), test_size)
    return Subset(train_x, train_y, test_x, test_y)


def subset_digest(images: np.ndarray, labels: np.ndarray) -> str:
    """16 hex digits of a SHA-256 over exactly these images (uint8, NHWC) and labels, in this order: two runs
    whose digests are equal trained (or evaluated) on the same pixels with the same labels in the same order.
    The count and shape go in first, so that no other split of the same bytes gives the same digest; labels
    are hashed as little-endian int64 whatever their integer dtype (about 20 ms for 10,240 + 2,048 images)."""
    if images.dtype != np.uint8 or images.ndim != 4 or labels.shape != (len(images),):
        raise DataError(f"cannot digest images of shape {images.shape} and dtype {images.dtype} with "
                        f"{labels.size} labels; expected (N, H, W, C) uint8 and N labels")
    digest = hashlib.sha256(f"gradacc-subset-v1 {images.shape} uint8 int64\n".encode())
    digest.update(memoryview(np.ascontiguousarray(images)).cast("B"))
    digest.update(np.ascontiguousarray(labels, dtype="<i8").tobytes())
    return digest.hexdigest()[:16]


def class_counts(labels: np.ndarray) -> list[int]:
    """Images per class 0..9: the subset is not balanced (953-1,066 per class in the first 10,240)."""
    return [int(n) for n in np.bincount(labels, minlength=NUM_CLASSES)]


def write_batch(path: Path, images: np.ndarray, labels: np.ndarray) -> None:
    """Write (N, 32, 32, 3) uint8 images as an official-format batch: how tests build tiny fixtures."""
    data = images.transpose(0, 3, 1, 2).reshape(len(images), -1)
    entry = {b"batch_label": path.name.encode(), b"labels": [int(v) for v in labels], b"data": data,
             b"filenames": [f"{path.name}_{i}.png".encode() for i in range(len(images))]}
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("wb") as fh:
        pickle.dump(entry, fh)
