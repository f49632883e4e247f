"""CIFAR-10 on disk -> the protocol's uint8 subset: order, shapes, checks and the data-directory rules."""
from __future__ import annotations

import os
import pickle
import shutil
from pathlib import Path

import numpy as np
import pytest

from gradacc.core.config import Protocol
from gradacc.core.data import FOLDER, DataError, ensure_dataset, load_subset, read_batch, resolve_data_dir, write_batch


def copy_root(tiny_cifar: Path, tmp_path: Path) -> Path:
    root = tmp_path / "root"
    shutil.copytree(tiny_cifar, root)
    return root


def test_takes_first_n_training_images_across_files_in_order(tiny_cifar):
    # 500 images span data_batch_1 (0..209), _2 (210..419) and part of _3 (420..499).
    subset = load_subset(tiny_cifar, 500, 37, download=False)
    index = subset.train_images[:, 0, 0, 0].astype(int) + 256 * subset.train_images[:, 0, 0, 1].astype(int)
    np.testing.assert_array_equal(index, np.arange(500))
    np.testing.assert_array_equal(subset.train_labels, np.arange(500) % 10)
    np.testing.assert_array_equal(subset.test_images[:, 0, 0, 0], np.arange(37))
    np.testing.assert_array_equal(subset.test_images[:, 0, 0, 1], np.full(37, 128))
    np.testing.assert_array_equal(subset.test_labels, (np.arange(37) + 3) % 10)


def test_shapes_dtypes_and_pixel_layout(tiny_cifar):
    subset = load_subset(tiny_cifar, 64, 16, download=False)
    assert subset.train_images.shape == (64, 32, 32, 3) and subset.train_images.dtype == np.uint8
    assert subset.test_images.shape == (16, 32, 32, 3) and subset.test_images.dtype == np.uint8
    assert subset.train_labels.dtype == np.int64 and subset.train_labels.shape == (64,)
    assert subset.test_labels.dtype == np.int64 and subset.test_labels.shape == (16,)
    # Channel-last with rows on axis 1: the blue channel is 8 * row in every column.
    np.testing.assert_array_equal(subset.train_images[5, :, 7, 2], 8 * np.arange(32))
    np.testing.assert_array_equal(subset.train_images[5, 3, :, 2], np.full(32, 24))


def test_round_trip_of_write_and_read_batch(tmp_path):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (7, 32, 32, 3), dtype=np.uint8)
    labels = rng.integers(0, 10, 7)
    write_batch(tmp_path / "b", images, labels)
    x, y = read_batch(tmp_path / "b")
    np.testing.assert_array_equal(x, images)
    np.testing.assert_array_equal(y, labels)


def test_reads_only_the_files_it_needs(tiny_cifar, tmp_path):
    root = copy_root(tiny_cifar, tmp_path)
    (root / FOLDER / "data_batch_3").unlink()
    assert len(load_subset(root, 420, 8, download=False).train_labels) == 420
    with pytest.raises(DataError, match="data_batch_3"):
        load_subset(root, 421, 8, download=False)


@pytest.mark.parametrize("train, test, pattern", [(1051, 10, "asked for 1051 .* holds only 1050"),
                                                  (10, 261, "asked for 261 .* holds only 260")])
def test_more_images_than_exist_is_a_data_error(tiny_cifar, train, test, pattern):
    with pytest.raises(DataError, match=pattern):
        load_subset(tiny_cifar, train, test, download=False)


def test_missing_folder_without_download_names_the_path(tmp_path):
    with pytest.raises(DataError) as err:
        load_subset(tmp_path / "nowhere", 10, 10, download=False)
    assert str((tmp_path / "nowhere" / FOLDER).resolve()) in str(err.value)


def test_failed_download_says_where_and_how(tmp_path, monkeypatch):
    import torchvision.datasets.utils as tv_utils

    def offline(url, download_root, **kwargs):
        os.makedirs(download_root, exist_ok=True)  # as torchvision does before it fetches
        raise OSError("Temporary failure in name resolution")

    monkeypatch.setattr(tv_utils, "download_and_extract_archive", offline)
    with pytest.raises(DataError) as err:
        ensure_dataset(tmp_path / "typo" / "empty", download=True)
    message = str(err.value)
    assert str((tmp_path / "typo" / "empty" / FOLDER).resolve()) in message
    assert list(tmp_path.iterdir()) == []  # the folders the attempt made are gone
    assert "GRADACC_DATA_DIR" in message and "--data-dir" in message
    assert "Temporary failure in name resolution" in message and "\n" not in message


def test_download_is_checksummed_and_its_folder_returned(tmp_path, monkeypatch):
    import torchvision.datasets.utils as tv_utils
    calls = []

    def fake_download(url, download_root, md5=None, **kwargs):
        calls.append((url, md5))
        (Path(download_root) / FOLDER).mkdir(parents=True)

    monkeypatch.setattr(tv_utils, "download_and_extract_archive", fake_download)
    assert ensure_dataset(tmp_path, download=True) == tmp_path / FOLDER
    assert calls == [("https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz", "c58f30108f718f92721af3b95e74349a")]


def test_download_without_the_folder_is_a_data_error(tmp_path, monkeypatch):
    import torchvision.datasets.utils as tv_utils
    monkeypatch.setattr(tv_utils, "download_and_extract_archive", lambda *a, **k: None)
    with pytest.raises(DataError, match="did not contain"):
        ensure_dataset(tmp_path, download=True)


def test_truncated_batch_is_a_data_error(tiny_cifar, tmp_path):
    root = copy_root(tiny_cifar, tmp_path)
    path = root / FOLDER / "data_batch_1"
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(DataError, match="truncated or corrupt"):
        load_subset(root, 10, 10, download=False)


def write_entry(path: Path, entry) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(pickle.dumps(entry))
    return path


@pytest.mark.parametrize("entry, pattern", [
    ({b"data": np.zeros((4, 100), np.uint8), b"labels": [0] * 4}, r"shape \(4, 100\)"),
    ({b"data": np.zeros((4, 3072), np.float32), b"labels": [0] * 4}, "dtype float32"),
    ({b"data": np.zeros((4, 3072), np.uint8), b"labels": [0, 1, 10, 2]}, "labels outside 0..9"),
    ({b"data": np.zeros((4, 3072), np.uint8), b"labels": [0, -1, 3, 2]}, "labels outside 0..9"),
    ({b"data": np.zeros((4, 3072), np.uint8), b"labels": [0, 1, 2]}, "3 labels for 4 images"),
    ({b"images": np.zeros((4, 3072), np.uint8)}, "not a CIFAR-10 batch"),
    ([1, 2, 3], "not a CIFAR-10 batch"),
])
def test_malformed_batch_is_a_data_error(tmp_path, entry, pattern):
    path = write_entry(tmp_path / FOLDER / "data_batch_1", entry)
    with pytest.raises(DataError, match=pattern):
        read_batch(path)
    with pytest.raises(DataError, match=pattern):
        load_subset(tmp_path, 2, 1, download=False)


def test_data_dir_precedence(monkeypatch, tmp_path):
    monkeypatch.setenv("GRADACC_DATA_DIR", "/from/env")
    assert resolve_data_dir("/from/option") == Path("/from/option")
    assert resolve_data_dir("") == Path("/from/env")
    assert resolve_data_dir(None) == Path("/from/env")
    assert resolve_data_dir("auto") == Path("/from/env")  # the option's default
    monkeypatch.setenv("GRADACC_DATA_DIR", "")
    assert resolve_data_dir("") == Path("data")
    monkeypatch.delenv("GRADACC_DATA_DIR")
    assert resolve_data_dir(None) == Path("data")
    assert resolve_data_dir("/from/option") == Path("/from/option")
    monkeypatch.setenv("HOME", str(tmp_path))
    assert resolve_data_dir("~/cifar") == tmp_path / "cifar"


_REAL: dict = {}


def real_subset(root: Path):
    """The protocol's subset of the real data, read once per test session."""
    if "subset" not in _REAL:
        _REAL["subset"] = load_subset(root, Protocol.train_size, Protocol.test_size, download=False)
    return _REAL["subset"]


@pytest.mark.realdata
def test_real_subset_sizes_and_first_labels(real_data_root):
    subset = real_subset(real_data_root)
    assert subset.train_images.shape == (10_240, 32, 32, 3) and subset.train_labels.shape == (10_240,)
    assert subset.test_images.shape == (2_048, 32, 32, 3) and subset.test_labels.shape == (2_048,)
    assert subset.train_labels[:10].tolist() == [6, 9, 9, 4, 1, 1, 2, 7, 8, 3]
    assert subset.test_labels[:10].tolist() == [3, 8, 8, 0, 6, 6, 1, 6, 3, 1]
    assert subset.train_images[0, 0, 0].tolist() == [59, 62, 63]


@pytest.mark.realdata
def test_real_subset_crosses_into_the_second_batch_file(real_data_root):
    subset = real_subset(real_data_root)
    x2, y2 = read_batch(real_data_root / FOLDER / "data_batch_2")
    np.testing.assert_array_equal(subset.train_images[10_000:], x2[:240])
    np.testing.assert_array_equal(subset.train_labels[10_000:], y2[:240])


@pytest.mark.realdata
def test_real_subset_class_counts(real_data_root):
    subset = real_subset(real_data_root)
    train = np.bincount(subset.train_labels, minlength=10)
    test = np.bincount(subset.test_labels, minlength=10)
    assert train.sum() == 10_240 and train.min() == 953 and train.max() == 1_066
    assert test.sum() == 2_048 and test.min() == 196 and test.max() == 222
