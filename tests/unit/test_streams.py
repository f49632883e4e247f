"""The micro-batch streams: torchvision-exact crop/flip, per-epoch permutations, seeding, normalisation."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torchvision.transforms.functional as TF

from gradacc.core.data import load_subset
from gradacc.core.streams import DeviceStream, TorchvisionStream, crop_flip, normalize, pad_on_device, to_nchw

CPU = torch.device("cpu")
MEAN = torch.tensor([0.4914, 0.4822, 0.4465]).view(1, 3, 1, 1)  # the protocol's, typed out independently
STD = torch.tensor([0.2023, 0.1994, 0.2010]).view(1, 3, 1, 1)


def pattern_images(n: int) -> tuple[np.ndarray, np.ndarray]:
    """Image i: R = i everywhere, G = 100 + row, B = 100 + column; label (7 i) % 10."""
    images = np.empty((n, 32, 32, 3), dtype=np.uint8)
    images[..., 0] = np.arange(n)[:, None, None]
    images[..., 1] = 100 + np.arange(32)[None, :, None]
    images[..., 2] = 100 + np.arange(32)[None, None, :]
    return images, (7 * np.arange(n)) % 10


def to_u8(batch: torch.Tensor) -> torch.Tensor:
    return torch.round((batch * STD + MEAN) * 255).to(torch.int64)


def decode(batch: torch.Tensor):
    """(image id, crop top, crop left, flipped) of each augmented pattern image, read off its centre
    (output pixel 16 always lies inside the original image, whatever the offset)."""
    u8 = to_u8(batch)
    ids = u8[:, 0, 16, 16]
    top = u8[:, 1, 16, 16] - 100 - 12  # output row 16 = original row top - 4 + 16
    c16, c17 = u8[:, 2, 16, 16] - 100, u8[:, 2, 16, 17] - 100
    flipped = c17 < c16
    left = torch.where(flipped, c16 - 11, c16 - 12)  # flipped: output column 16 = original left + 27 - 16
    return ids, top, left, flipped


def expected_batch(images: np.ndarray, ids, top, left, flipped) -> torch.Tensor:
    """The same crops and flips by torchvision's functional ops, normalised by hand."""
    out = []
    for i, t, left_px, f in zip(ids.tolist(), top.tolist(), left.tolist(), flipped.tolist()):
        img = TF.crop(TF.pad(torch.from_numpy(images[i]).permute(2, 0, 1), 4, fill=0), t, left_px, 32, 32)
        out.append(TF.hflip(img) if f else img)
    return (torch.stack(out).float() / 255 - MEAN) / STD


def device_stream(images, labels, micro_batch, seed):
    return DeviceStream(pad_on_device(images, CPU), torch.from_numpy(labels), micro_batch, seed)


def draw(stream, count: int):
    return [stream.next_batch() for _ in range(count)]


def test_crop_flip_equals_torchvision_functional_ops():
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (16, 32, 32, 3), dtype=np.uint8)
    padded = pad_on_device(images, CPU)
    nchw = torch.from_numpy(images).permute(0, 3, 1, 2)
    assert torch.equal(padded, torch.stack([TF.pad(img, 4, fill=0) for img in nchw]))
    g = torch.Generator().manual_seed(1)
    index = torch.randint(0, 16, (400,), generator=g)
    top, left = torch.randint(0, 9, (400,), generator=g), torch.randint(0, 9, (400,), generator=g)
    top[:4], left[:4] = torch.tensor([0, 8, 0, 8]), torch.tensor([0, 8, 8, 0])  # the extreme offsets
    flip = torch.randint(0, 2, (400,), generator=g).bool()
    got = crop_flip(padded, index, top, left, flip)
    for b in range(400):
        want = TF.crop(TF.pad(nchw[index[b]], 4, fill=0), int(top[b]), int(left[b]), 32, 32)
        assert torch.equal(got[b], TF.hflip(want) if flip[b] else want), b


def test_normalize_is_x_over_255_minus_mean_over_std():
    x = torch.randint(0, 256, (5, 3, 32, 32), dtype=torch.uint8)
    got = normalize(x)
    assert got.dtype == torch.float32
    torch.testing.assert_close(got, (x.float() / 255 - MEAN) / STD)
    assert normalize(torch.zeros(1, 3, 1, 1, dtype=torch.uint8)).flatten().tolist() == pytest.approx(
        [-0.4914 / 0.2023, -0.4822 / 0.1994, -0.4465 / 0.2010])


def test_device_stream_output_is_the_augmented_normalised_image():
    images, labels = pattern_images(64)
    x, y = device_stream(images, labels, 32, seed=5).next_batch()
    assert x.shape == (32, 3, 32, 32) and x.dtype == torch.float32 and y.dtype == torch.int64
    ids, top, left, flipped = decode(x)
    torch.testing.assert_close(x, expected_batch(images, ids, top, left, flipped), rtol=0, atol=1e-5)
    assert torch.equal(y, torch.from_numpy(labels)[ids])


def test_device_stream_epochs_are_permutations_that_differ_and_run_on():
    images, labels = pattern_images(100)  # 100 // 32 = 3 micro-batches per epoch; 4 images dropped
    batches = draw(device_stream(images, labels, 32, seed=0), 3 * 4)
    orders = []
    for epoch in range(4):
        ids = torch.cat([decode(x)[0] for x, _ in batches[3 * epoch: 3 * epoch + 3]])
        got_labels = torch.cat([y for _, y in batches[3 * epoch: 3 * epoch + 3]])
        assert len(set(ids.tolist())) == 96 and ids.min() >= 0 and ids.max() < 100
        assert torch.equal(got_labels, torch.from_numpy(labels)[ids])
        orders.append(ids.tolist())
    assert len({tuple(o) for o in orders}) == 4
    assert len({frozenset(o) for o in orders}) > 1  # which 4 images are dropped changes too


def test_device_stream_full_epochs_hold_every_image_once():
    images, labels = pattern_images(96)
    batches = draw(device_stream(images, labels, 32, seed=1), 6)
    for epoch in range(2):
        ids = torch.cat([decode(x)[0] for x, _ in batches[3 * epoch: 3 * epoch + 3]])
        assert sorted(ids.tolist()) == list(range(96))


def test_device_stream_seeding():
    images, labels = pattern_images(64)
    a, b = (draw(device_stream(images, labels, 16, seed=42), 6) for _ in range(2))
    c = draw(device_stream(images, labels, 16, seed=43), 6)
    assert all(torch.equal(xa, xb) and torch.equal(ya, yb) for (xa, ya), (xb, yb) in zip(a, b))
    assert not torch.equal(torch.cat([x for x, _ in a]), torch.cat([x for x, _ in c]))


def augmentation_stats(batches):
    _, top, left, flipped = (torch.cat(t) for t in zip(*(decode(x) for x, _ in batches)))
    offsets = torch.cat([top, left])
    assert offsets.min() == 0 and offsets.max() == 8
    return flipped.float().mean().item(), torch.bincount(offsets, minlength=9).float() / len(offsets)


def test_device_and_torchvision_streams_draw_the_same_augmentations():
    images, labels = pattern_images(128)
    device = draw(device_stream(images, labels, 64, seed=0), 32)  # 2,048 images each
    tv = TorchvisionStream(images, labels, 64, seed=0, device=CPU, workers=0)
    vision = draw(tv, 32)
    tv.close()
    x, _ = vision[0]  # torchvision's pipeline decodes to exactly the same crop/flip/normalise family
    torch.testing.assert_close(x, expected_batch(images, *decode(x)), rtol=0, atol=1e-5)
    (flip_d, hist_d), (flip_v, hist_v) = augmentation_stats(device), augmentation_stats(vision)
    for flip, hist in ((flip_d, hist_d), (flip_v, hist_v)):
        assert flip == pytest.approx(0.5, abs=0.05)
        torch.testing.assert_close(hist, torch.full((9,), 1 / 9), rtol=0, atol=0.03)
    assert abs(flip_d - flip_v) < 0.05
    mean_d = torch.cat([x for x, _ in device]).mean(0)
    mean_v = torch.cat([x for x, _ in vision]).mean(0)
    torch.testing.assert_close(mean_d, mean_v, rtol=0, atol=0.15)


def torchvision_draws(seed: int, workers: int, count: int, n: int = 64):
    images, labels = pattern_images(n)
    stream = TorchvisionStream(images, labels, 16, seed=seed, device=CPU, workers=workers)
    try:
        return draw(stream, count)
    finally:
        stream.close()


def same(a, b) -> bool:
    return all(torch.equal(xa, xb) and torch.equal(ya, yb) for (xa, ya), (xb, yb) in zip(a, b))


def test_torchvision_stream_without_workers_is_seeded_and_repeatable():
    torch.manual_seed(1)  # the global RNG differs between the two streams: the seed alone decides
    a = torchvision_draws(7, workers=0, count=10)  # 4 micro-batches per epoch: crosses two epoch ends
    torch.manual_seed(2)
    b = torchvision_draws(7, workers=0, count=10)
    assert same(a, b)
    assert not same(a, torchvision_draws(8, workers=0, count=10))
    for epoch in range(2):
        ids = torch.cat([decode(x)[0] for x, _ in a[4 * epoch: 4 * epoch + 4]])
        assert sorted(ids.tolist()) == list(range(64))
        assert torch.equal(torch.cat([y for _, y in a[4 * epoch: 4 * epoch + 4]]), (7 * ids) % 10)
    assert decode(a[0][0])[0].tolist() != decode(a[4][0])[0].tolist()


def test_torchvision_stream_with_two_workers_is_repeatable():
    a = torchvision_draws(3, workers=2, count=6)
    b = torchvision_draws(3, workers=2, count=6)
    assert same(a, b)
    ids = torch.cat([decode(x)[0] for x, _ in a[:4]])
    assert sorted(ids.tolist()) == list(range(64))


@pytest.mark.cuda
def test_device_stream_sees_the_same_images_on_cpu_and_gpu():
    images, labels = pattern_images(64)
    cuda = torch.device("cuda")
    gpu = DeviceStream(pad_on_device(images, cuda), torch.from_numpy(labels).to(cuda), 16, seed=42)
    for (xc, yc), (xg, yg) in zip(draw(device_stream(images, labels, 16, seed=42), 6), draw(gpu, 6)):
        assert torch.equal(yc, yg.cpu())
        torch.testing.assert_close(xc, xg.cpu(), rtol=0, atol=1e-6)


@pytest.mark.realdata
def test_real_subset_normalised_has_mean_near_zero_and_std_near_1_2(real_data_root):
    subset = load_subset(real_data_root, 10_240, 2_048, download=False)
    x = normalize(to_nchw(subset.train_images, CPU))
    mean, std = x.mean(dim=(0, 2, 3)), x.std(dim=(0, 2, 3))
    torch.testing.assert_close(mean, torch.zeros(3), rtol=0, atol=0.03)
    assert ((std > 1.15) & (std < 1.35)).all(), std  # data std (0.247, 0.243, 0.262) over the protocol std
