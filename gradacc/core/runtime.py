"""Where and how a configuration runs: device, CPU threads and determinism, resolved in one place."""
from __future__ import annotations

import functools
import hashlib
import os
import platform
import subprocess
from dataclasses import dataclass
from pathlib import Path

import torch

from gradacc.core.config import DEVICES, TF32_MODES
from gradacc.core.cores import check_threads
from gradacc.core.errors import ConfigError


@dataclass(frozen=True)
class Runtime:
    """The resolved execution environment of a run; its fields are logged under their own keys."""

    device: torch.device
    device_name: str
    torch_threads: int
    tf32: str = "on"  # as given: on = PyTorch's default (cuDNN convolutions may use TF32), off = none

    @property
    def is_cuda(self) -> bool:
        return self.device.type == "cuda"

    def as_params(self) -> dict[str, str]:
        return {
            "device_type": self.device.type,
            "device_name": self.device_name,
            "torch_threads": str(self.torch_threads),
            "cpu_model": cpu_model(),
            "torch_version": torch.__version__,
            "cuda_version": str(torch.version.cuda),
            "cudnn_deterministic": str(torch.backends.cudnn.deterministic).lower(),
            # what "float32" meant: TF32 only where the card has it (Ampere and newer) and it was allowed
            "tf32_conv": str(tf32_capable(self.device) and torch.backends.cudnn.allow_tf32).lower(),
            "tf32_matmul": str(tf32_capable(self.device) and torch.backends.cuda.matmul.allow_tf32).lower(),
            "code_version": code_version(),
        }


def tf32_capable(device: torch.device) -> bool:
    return device.type == "cuda" and torch.cuda.get_device_capability(device)[0] >= 8


def wants_cuda(device: str) -> bool:
    """Whether `device` (auto, cuda, cpu) means CUDA on this machine: the one place "auto" is resolved, for a run's
    runtime and for the processes torchrun will start. ConfigError for cuda where torch sees none."""
    if device not in DEVICES:
        raise ConfigError(f"device must be one of {', '.join(DEVICES)}, got {device!r}")
    if device == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device 'cuda' was asked for, but torch sees no CUDA GPU on this machine "
                          "(use --device cpu or auto)")
    return device == "cuda" or (device == "auto" and torch.cuda.is_available())


def resolve_runtime(device: str, threads: int | None, tf32: str = "on") -> Runtime:
    """Pick the device, set torch's CPU thread count, the protocol's determinism settings and TF32."""
    use_cuda = wants_cuda(device)
    if tf32 not in TF32_MODES:
        raise ConfigError(f"tf32 must be one of {', '.join(TF32_MODES)}, got {tf32!r}")
    if threads is not None:
        if threads < 1:
            raise ConfigError(f"threads must be a positive integer, got {threads}")
        check_threads(threads)
        torch.set_num_threads(threads)
    # The protocol: cuDNN deterministic, benchmark off (autotuning would also make timings drift).
    torch.backends.cudnn.deterministic = True
    torch.backends.cudnn.benchmark = False
    # TF32: "on" keeps PyTorch's defaults (cuDNN convolutions may use it, matmuls not: the seeds' A100 figures
    # were made so); "off" makes every convolution and matmul IEEE float32.
    torch.backends.cudnn.allow_tf32 = tf32 == "on"
    torch.backends.cuda.matmul.allow_tf32 = False
    if use_cuda:
        dev = torch.device("cuda", torch.cuda.current_device())
        name = torch.cuda.get_device_name(dev)
    else:
        dev, name = torch.device("cpu"), cpu_model()
    return Runtime(device=dev, device_name=name, torch_threads=torch.get_num_threads(), tf32=tf32)


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


UNTRACKED_CONTENT_BYTES = 1 << 20


@functools.cache
def code_version() -> str:
    """Git commit plus a dirty flag where the package sits in a git checkout, else the package version."""
    root = Path(__file__).resolve().parents[2]  # the checkout that holds gradacc/
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True,
                                check=True, timeout=10).stdout.strip()
        changes = subprocess.run(["git", "diff", "HEAD"], cwd=root, capture_output=True, check=True,
                                 timeout=10).stdout
        untracked = subprocess.run(["git", "ls-files", "--others", "--exclude-standard", "-z"], cwd=root,
                                   capture_output=True, check=True, timeout=10).stdout
        digest = hashlib.sha1(changes)
        for name in filter(None, untracked.split(b"\0")):
            path = root / name.decode()
            digest.update(name)
            if path.is_file():  # large untracked files (data, wheels) by size and time, not by content
                info = path.stat()
                digest.update(path.read_bytes() if info.st_size <= UNTRACKED_CONTENT_BYTES else
                              f"{info.st_size}:{info.st_mtime_ns}".encode())
        # A dirty tree is named by its changes, so that runs of two different edits are never taken for equal.
        dirty = changes.strip() or untracked.strip()
        return commit + (f"-dirty-{digest.hexdigest()[:8]}" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        from gradacc import __version__
        return __version__


def installed_packages() -> str:
    """name==version of every installed distribution, sorted (pip freeze's list, read in-process in
    milliseconds where pip takes a second)."""
    from importlib import metadata
    found = {(d.metadata["Name"] or "?"): d.version for d in metadata.distributions()}
    return "".join(f"{name}=={version}\n" for name, version in sorted(found.items(), key=lambda i: i[0].lower()))


def environment_report(runtime: Runtime) -> str:
    """Host, device and installed packages: the environment.txt artifact of every run."""
    lines = [f"host: {platform.node()}", f"platform: {platform.platform()}",
             f"python: {platform.python_version()}", f"cpu_count: {os.cpu_count()}"]
    lines += [f"{key}: {value}" for key, value in runtime.as_params().items()]
    return "\n".join(lines) + "\n\npackages:\n" + installed_packages()
