"""CIFAR-10 batches are read without running code: a pickle that names anything but numpy's array rebuilders is
refused in one line, and nothing in it runs; batches as numpy 1 and 2 write them, at every protocol, still load."""
from __future__ import annotations

import os
import pickle
import re
import warnings

import numpy as np
import pytest

from gradacc.core.data import FOLDER, DataError, load_subset, read_batch, write_batch

pytestmark = pytest.mark.reliability


class Payload:
    """What a hostile batch holds: unpickling it would call os.system and create `marker`."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


class Hidden:
    """The call hidden inside the array's dict: found only when the unpickler reaches it."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return eval, (f"open({str(self.marker)!r}, 'w').close()",)


@pytest.mark.parametrize("protocol", [2, 3, 4, 5])
@pytest.mark.parametrize("build", [
    lambda marker: Payload(marker),  # the whole file
    lambda marker: {b"data": np.zeros((2, 3072), np.uint8), b"labels": [0, 1], b"x": Hidden(marker)},
])
def test_code_in_a_batch_is_refused_and_never_run(tmp_path, protocol, build):
    marker = tmp_path / "ran"
    path = tmp_path / FOLDER / "data_batch_1"
    path.parent.mkdir()
    path.write_bytes(pickle.dumps(build(marker), protocol=protocol))
    with pytest.raises(DataError) as caught:
        read_batch(path)
    message = str(caught.value)
    assert "\n" not in message and "is refused: its pickle calls" in message and "restricted unpickler" in message
    assert re.search(r"calls (posix|os)\.system|calls (__builtin__|builtins)\.eval", message), message
    assert not marker.exists()  # nothing in the pickle ran
    with pytest.raises(DataError, match="is refused"):
        load_subset(tmp_path, 2, 1, download=False)
    assert not marker.exists()


def test_only_latin1_through_codecs(tmp_path):
    path = tmp_path / "data_batch_1"
    path.write_bytes(b"\x80\x02c_codecs\nencode\nq\x00X\x03\x00\x00\x00abcq\x01X\x06\x00\x00\x00rot_13q\x02\x86q"
                     b"\x03Rq\x04.")
    with pytest.raises(DataError, match="_codecs.encode with the codec 'rot_13'"):
        read_batch(path)


@pytest.mark.parametrize("protocol", [2, 3, 4, 5])
def test_batches_numpy_writes_still_load(tmp_path, protocol):
    images = np.arange(3 * 32 * 32 * 3, dtype=np.uint8).reshape(3, 32, 32, 3)
    data = images.transpose(0, 3, 1, 2).reshape(3, -1)
    path = tmp_path / "data_batch_1"
    path.write_bytes(pickle.dumps({b"data": data, b"labels": [4, 5, 6], b"filenames": [b"a", "b"]},
                                  protocol=protocol))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no DeprecationWarning for numpy.core either
        x, y = read_batch(path)
    np.testing.assert_array_equal(x, images)
    assert y.tolist() == [4, 5, 6]


def test_the_official_format_names_numpy_core(tmp_path):
    """The official files (numpy 1, protocol 2) name numpy.core.multiarray._reconstruct: read under numpy 2 too."""
    write_batch(tmp_path / "b", np.zeros((2, 32, 32, 3), np.uint8), [1, 2])
    text = pickle.dumps({b"data": np.zeros((2, 3072), np.uint8), b"labels": [1, 2]}, protocol=2)
    official = text.replace(b"numpy._core.multiarray", b"numpy.core.multiarray")
    assert official != text or b"numpy.core.multiarray" in text
    (tmp_path / "official").write_bytes(official)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        x, y = read_batch(tmp_path / "official")
    assert x.shape == (2, 32, 32, 3) and y.tolist() == [1, 2]
