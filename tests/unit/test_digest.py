"""The subset digest behind a run's dataset inputs: equal for the same images and labels in the same order, and
different as soon as one pixel, one label, the order or the count differs."""
from __future__ import annotations

import numpy as np
import pytest

from gradacc.core.data import DataError, class_counts, load_subset, subset_digest


@pytest.fixture
def subset(tiny_cifar):
    return load_subset(tiny_cifar, 300, 40, download=False)


def test_same_subset_same_digest(tiny_cifar, subset):
    again = load_subset(tiny_cifar, 300, 40, download=False)  # read from disk again
    assert subset_digest(subset.train_images, subset.train_labels) == subset_digest(again.train_images,
                                                                                    again.train_labels)
    digest = subset_digest(subset.train_images, subset.train_labels)
    assert len(digest) == 16 and int(digest, 16) >= 0  # fits MLflow's digest column (36 characters)
    # the labels' integer dtype does not matter, only their values
    assert subset_digest(subset.train_images, subset.train_labels.astype(np.int32)) == digest


def test_one_pixel_one_label_the_order_or_the_count_changes_it(subset):
    images, labels = subset.train_images, subset.train_labels
    digest = subset_digest(images, labels)
    pixel = images.copy()
    pixel[123, 31, 0, 2] ^= 1
    label = labels.copy()
    label[7] = (label[7] + 1) % 10
    order = np.arange(len(labels))
    order[[0, 1]] = order[[1, 0]]
    changed = [subset_digest(pixel, labels), subset_digest(images, label),
               subset_digest(images[order], labels[order]), subset_digest(images[:-1], labels[:-1]),
               subset_digest(subset.test_images, subset.test_labels)]
    assert digest not in changed and len(set(changed)) == len(changed)


def test_a_view_digests_as_its_copy(subset):
    view = subset.train_images[::2]  # not contiguous: hashed as the images it shows
    assert subset_digest(view, subset.train_labels[::2]) == subset_digest(view.copy(),
                                                                          subset.train_labels[::2].copy())


def test_bad_arrays_are_one_line_errors_and_classes_are_counted(subset):
    with pytest.raises(DataError, match="expected"):
        subset_digest(subset.train_images.astype(np.float32), subset.train_labels)
    with pytest.raises(DataError, match="300 labels"):
        subset_digest(subset.train_images[:10], subset.train_labels)
    assert class_counts(subset.train_labels) == [30] * 10
    assert class_counts(np.array([3, 3], dtype=np.int64)) == [0, 0, 0, 2, 0, 0, 0, 0, 0, 0]
