"""The reference for `gradacc bench`'s end-to-end line: the study the way the project's seeds ran it.

A torchvision-style Dataset over the uint8 arrays with torchvision's transforms, a DataLoader per run
(shuffle, 2 workers, pinned memory), `.item()` on every micro-batch's loss, and Parts 1, 2 and 3 as separate
runs, each over its own fresh model and loader. Nothing is slowed down on purpose: the update is the
protocol's nested loop, timers synchronise only at their ends, and results go to a JSON file, not to MLflow
(so the comparison is, if anything, kind to this side). Self-contained on purpose: it shares no code with
gradacc, only the data files.

    python -m gradacc.bench.seeds_reference --data-dir ./data --ks 1,2,4,8 --epochs 5 --out ref.json
"""
from __future__ import annotations

import argparse
import json
import pickle
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
import torchvision
from PIL import Image
from torch.utils.data import DataLoader, Dataset
from torchvision import transforms as T

MEAN, STD = (0.4914, 0.4822, 0.4465), (0.2023, 0.1994, 0.2010)
MICRO = 64


def read_cifar(root: Path, names: list[str], count: int) -> tuple[np.ndarray, np.ndarray]:
    images, labels = [], []
    for name in names:
        with open(root / "cifar-10-batches-py" / name, "rb") as f:
            batch = {k.decode() if isinstance(k, bytes) else k: v for k, v in pickle.load(f, encoding="latin1").items()}
        images.append(np.asarray(batch["data"], dtype=np.uint8).reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1))
        labels.append(np.asarray(batch["labels"], dtype=np.int64))
        if sum(len(x) for x in labels) >= count:
            break
    return np.concatenate(images)[:count], np.concatenate(labels)[:count]


class CifarSubset(Dataset):
    def __init__(self, images, labels, transform):
        self.images, self.labels, self.transform = images, labels, transform

    def __len__(self):
        return len(self.labels)

    def __getitem__(self, i):
        return self.transform(Image.fromarray(self.images[i])), int(self.labels[i])


def make_loader(images, labels, train: bool, seed: int) -> DataLoader:
    if train:
        transform = T.Compose([T.RandomCrop(32, padding=4), T.RandomHorizontalFlip(), T.ToTensor(),
                               T.Normalize(MEAN, STD)])
        return DataLoader(CifarSubset(images, labels, transform), batch_size=MICRO, shuffle=True, drop_last=True,
                          num_workers=2, pin_memory=torch.cuda.is_available(),
                          generator=torch.Generator().manual_seed(seed))
    transform = T.Compose([T.ToTensor(), T.Normalize(MEAN, STD)])
    return DataLoader(CifarSubset(images, labels, transform), batch_size=256, num_workers=2,
                      pin_memory=torch.cuda.is_available())


def endless(loader):
    while True:
        yield from loader


def fresh(device, seed):
    torch.manual_seed(seed)
    model = torchvision.models.resnet18(num_classes=10).to(device)
    return model, torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=5e-4)


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def micro_part(k, data, device, seed, warmup, timed):
    model, opt = fresh(device, seed)
    batches = endless(make_loader(*data, True, seed))
    times = []
    for phase, count in (("warmup", warmup), ("timed", timed)):
        opt.zero_grad()
        for i in range(count):
            x, y = next(batches)
            x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
            sync(device)
            start = time.perf_counter()
            loss = F.cross_entropy(model(x), y)
            (loss / k).backward()
            sync(device)
            if phase == "timed":
                times.append(time.perf_counter() - start)
            loss.item()
            if (i + 1) % k == 0:
                opt.step()
                opt.zero_grad()
    return float(np.mean(times) * 1e3)


def train(k, epochs, data, device, seed, timed: bool):
    model, opt = fresh(device, seed)
    batches = endless(make_loader(*data, True, seed))
    per_epoch = len(data[1]) // (MICRO * k)
    update_s, epoch_loss = [], []
    for _ in range(epochs):
        losses = []
        for _ in range(per_epoch):
            sync(device)
            start = time.perf_counter()
            opt.zero_grad()
            for _ in range(k):
                x, y = next(batches)
                x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
                loss = F.cross_entropy(model(x), y)
                (loss / k).backward()
                losses.append(loss.item())
            opt.step()
            sync(device)
            update_s.append(time.perf_counter() - start)
        epoch_loss.append(float(np.mean(losses)))
    if timed:
        n = len(update_s)
        return float(np.mean(update_s[n // 5: n - n // 5]))
    return model, epoch_loss


@torch.no_grad()
def accuracy(model, test, device):
    model.eval()
    correct = 0
    for x, y in make_loader(*test, False, 0):
        correct += (model(x.to(device)).argmax(1) == y.to(device)).sum().item()
    return 100.0 * correct / len(test[1])


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", required=True)
    parser.add_argument("--ks", default="1,2,4,8")
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--train-size", type=int, default=10_240)
    parser.add_argument("--test-size", type=int, default=2_048)
    parser.add_argument("--micro-iters", default="20,80", help="Part 1's warm-up and timed micro-iterations")
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    start = time.perf_counter()
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = True, False
    device = torch.device(args.device)
    root = Path(args.data_dir)
    data = read_cifar(root, [f"data_batch_{i}" for i in range(1, 6)], args.train_size)
    test = read_cifar(root, ["test_batch"], args.test_size)
    warmup, timed = (int(v) for v in args.micro_iters.split(","))
    results = {}
    for k in (int(v) for v in args.ks.split(",")):
        micro_ms = micro_part(k, data, device, args.seed, warmup, timed)
        update_s = train(k, args.epochs, data, device, args.seed, timed=True)
        model, losses = train(k, args.epochs, data, device, args.seed, timed=False)
        results[k] = {"micro_iter_ms": micro_ms, "update_time_s": update_s, "train_loss": losses,
                      "test_accuracy": accuracy(model, test, device)}
        print(f"k={k}: {results[k]}", flush=True)
    Path(args.out).write_text(json.dumps({"wall_s": time.perf_counter() - start, "threads":
                                          torch.get_num_threads(), "results": results}, indent=1))


if __name__ == "__main__":
    main()
