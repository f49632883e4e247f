"""How many torch CPU threads a run may ask for: no torch import, so that the CLI checks --threads when it reads the
command line (before a sweep measures anything) and --help stays quick."""
from __future__ import annotations

import os

from gradacc.core.errors import ConfigError

THREADS_ENV = "GRADACC_THREADS_OVER_CORES"  # set (not 0): allow up to THREADS_PER_CORE_FORCED threads per core
THREADS_PER_CORE_FORCED = 8


def usable_cores() -> int:
    """The CPU cores this process may run on (its affinity mask, else the machine's count)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def check_threads(threads: int) -> None:
    """More torch threads than cores only makes them wait for each other: 300 on 2 cores took 19 s per update
    against 0.13 s, 2,000 drove the load average past 1,500 and left signals unanswered for 40 s, 100,000 crashed
    torch's thread pool. At most the cores, or THREADS_PER_CORE_FORCED per core with THREADS_ENV set."""
    cores = usable_cores()
    forced = os.environ.get(THREADS_ENV, "") not in ("", "0")
    if threads > cores and not forced:
        raise ConfigError(f"{threads} threads is more than the {cores} CPU cores this process may use: threads "
                          "beyond the cores only wait for each other (every update far slower, signals answered "
                          f"late); set {THREADS_ENV}=1 to allow up to {THREADS_PER_CORE_FORCED * cores}")
    if threads > THREADS_PER_CORE_FORCED * cores:
        raise ConfigError(f"{threads} threads is more than {THREADS_PER_CORE_FORCED} per CPU core "
                          f"({THREADS_PER_CORE_FORCED * cores} for this process's {cores}), even with {THREADS_ENV} "
                          "set: torch's thread pool fails or crashes far beyond the cores")
