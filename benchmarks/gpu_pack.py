"""Packs what benchmarks/gpu_check.sh needs on a lent GPU machine into .gpu/ (ignored by git), within the 64 MiB that
may travel with the working tree:

- .gpu/wheels/: the MLflow client wheels for the machine's Python (a folder given with --wheels; the machine has
  torch, numpy, pandas, matplotlib and click but no MLflow and reaches no package registry) and pytest's, downloaded
  here for that Python;
- .gpu/data/cifar-10-batches-py/: the protocol's subset alone (the first 10,240 training and 2,048 test images, in
  the official layout: data_batch_1, data_batch_2's first 240 images and test_batch's first 2,048), 36 MiB instead
  of the data set's 178 MiB. Its subset digest is checked against the full data set's before it is kept.

    python benchmarks/gpu_pack.py --wheels DIR [--data-dir auto] [--python-version 3.12]"""
from __future__ import annotations

import argparse
import pickle
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np

from gradacc.core.config import Protocol
from gradacc.core.data import (
    FOLDER,
    IMAGES_PER_FILE,
    TEST_FILE,
    TRAIN_FILES,
    load_subset,
    resolve_data_dir,
    subset_digest,
)

ROOT = Path(__file__).resolve().parents[1]
PACK = ROOT / ".gpu"
PYTEST = ("pytest", "pluggy", "iniconfig", "packaging", "pygments")  # pytest and what it needs


def write_first(source: Path, target: Path, count: int) -> None:
    """The batch file `source` cut to its first `count` images, in the same pickled layout."""
    with source.open("rb") as fh:
        entry = pickle.load(fh, encoding="bytes")
    entry[b"data"] = np.ascontiguousarray(np.asarray(entry[b"data"])[:count])
    for key in (b"labels", b"filenames"):
        if key in entry:
            entry[key] = list(entry[key])[:count]
    with target.open("wb") as fh:
        pickle.dump(entry, fh, protocol=pickle.HIGHEST_PROTOCOL)


def pack_data(source_root: Path, train_size: int, test_size: int) -> Path:
    source, target = source_root / FOLDER, PACK / "data" / FOLDER
    shutil.rmtree(target.parent, ignore_errors=True)
    target.mkdir(parents=True)
    left = train_size
    for name in TRAIN_FILES:
        if left <= 0:
            break
        write_first(source / name, target / name, min(left, IMAGES_PER_FILE))
        left -= IMAGES_PER_FILE
    write_first(source / TEST_FILE, target / TEST_FILE, test_size)
    shutil.copy(source / "batches.meta", target / "batches.meta")
    full, packed = (load_subset(root, train_size, test_size, download=False) for root in (source_root, target.parent))
    for which in ("train", "test"):
        a, b = (subset_digest(getattr(s, f"{which}_images"), getattr(s, f"{which}_labels")) for s in (full, packed))
        if a != b:
            sys.exit(f"gpu_pack: the packed {which} subset differs from the data set's ({b} against {a})")
    return target.parent


def pack_wheels(wheels: Path, python_version: str) -> Path:
    target = PACK / "wheels"
    shutil.rmtree(target, ignore_errors=True)
    target.mkdir(parents=True)
    found = sorted(wheels.glob("*.whl"))
    if not found:
        sys.exit(f"gpu_pack: no wheels in {wheels}")
    for wheel in found:
        shutil.copy(wheel, target / wheel.name)
    have = {wheel.name.split("-")[0].lower() for wheel in found}
    wanted = [name for name in PYTEST if name not in have]  # one version of each: pip refuses two
    subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--only-binary=:all:",
                    "--python-version", python_version, "--implementation", "cp", "--platform",
                    "manylinux2014_x86_64", "-d", str(target), *wanted], check=True)
    return target


def size_mb(folder: Path) -> float:
    return sum(f.stat().st_size for f in folder.rglob("*") if f.is_file()) / 2**20


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--wheels", type=Path, required=True, help="the MLflow client wheels for the GPU machine")
    parser.add_argument("--data-dir", default="auto", help="the CIFAR-10 root (auto: $GRADACC_DATA_DIR, else ./data)")
    parser.add_argument("--python-version", default="3.12", help="the GPU machine's Python, for pytest's wheels")
    args = parser.parse_args()
    protocol = Protocol()
    data = pack_data(resolve_data_dir(args.data_dir), protocol.train_size, protocol.test_size)
    wheels = pack_wheels(args.wheels, args.python_version)
    print(f"gpu_pack: {data} {size_mb(data):.1f} MiB (subset digests checked), {wheels} {size_mb(wheels):.1f} MiB")


if __name__ == "__main__":
    main()
