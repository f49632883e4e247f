"""MLflow's system-metrics monitor on gradacc's runs, opt-in (`--system-metrics`): CPU, memory, disk and network
(psutil), and GPU utilisation, memory and power where nvidia-ml-py finds an NVIDIA GPU.

`mlflow.start_run(log_system_metrics=True)` starts `SystemMetricsMonitor` for the run it opens; gradacc opens its
runs with `MlflowClient.create_run`, so it starts the same monitor itself, for the run's id, and stops it before
the run ends. The switch is MLflow's own, MLFLOW_ENABLE_SYSTEM_METRICS_LOGGING (the one `mlflow.start_run` reads):
`--system-metrics` sets it for the process, and the processes it starts (torchrun's DDP workers) inherit it."""
from __future__ import annotations

import logging
import time
from contextlib import contextmanager

from mlflow.environment_variables import (
    MLFLOW_ENABLE_SYSTEM_METRICS_LOGGING,
    MLFLOW_SYSTEM_METRICS_SAMPLES_BEFORE_LOGGING,
    MLFLOW_SYSTEM_METRICS_SAMPLING_INTERVAL,
)

from gradacc.core.errors import ConfigError

# MLflow samples every 10 s by default: a smoke run, or Part 1's, would end before its first point. Every 2 s gives a
# chart from runs of a few seconds, for one sampling thread's work (psutil, one `get_run`, one `log_batch` of ~10
# values) per 2 s: `gradacc bench --lines system-metrics` measures what that costs the updates.
# MLFLOW_SYSTEM_METRICS_SAMPLING_INTERVAL and MLFLOW_SYSTEM_METRICS_SAMPLES_BEFORE_LOGGING override both, as in MLflow.
SAMPLING_INTERVAL_S = 2.0
SAMPLES_PER_POINT = 1  # one sample per logged point: MLflow averages the samples of a point
INSTALL = "pip install psutil (or pip install -e '.[system-metrics]' in gradacc's folder, which adds nvidia-ml-py " \
          "for GPU metrics)"


def missing_package() -> str | None:
    """The package the monitor needs and this environment lacks (psutil), else None."""
    try:
        import psutil  # noqa: F401 - MLflow's CPU, disk and network monitors import it
    except ImportError:
        return "psutil"
    return None


def require_packages() -> None:
    """ConfigError (one line, naming the pip command) where the monitor's package is missing."""
    missing = missing_package()
    if missing:
        raise ConfigError(f"--system-metrics needs {missing}, which is not installed: {INSTALL}")


def switch(enabled: bool) -> None:
    """Turns system metrics on or off for the measuring runs of this process and of the processes it starts; on
    without psutil is a ConfigError, raised here, before any run starts."""
    if enabled:
        require_packages()
    MLFLOW_ENABLE_SYSTEM_METRICS_LOGGING.set("true" if enabled else "false")


def switched_on() -> bool:
    """MLflow's switch as set (by `switch`, or by the user's environment; MLflow's default: off)."""
    try:
        return bool(MLFLOW_ENABLE_SYSTEM_METRICS_LOGGING.get())
    except ValueError as err:  # a value that is not true/false/1/0
        raise ConfigError(str(err)) from None


def sampling() -> tuple[float, int]:
    """(seconds between samples, samples per logged point): gradacc's defaults unless MLflow's variables are set."""
    return (MLFLOW_SYSTEM_METRICS_SAMPLING_INTERVAL.get() or SAMPLING_INTERVAL_S,
            MLFLOW_SYSTEM_METRICS_SAMPLES_BEFORE_LOGGING.get() or SAMPLES_PER_POINT)


def start_monitor(run_id: str):
    """MLflow's monitor for `run_id`, sampling on its own thread from now on."""
    require_packages()  # switched on in the environment, not by `switch`
    from mlflow.system_metrics.system_metrics_monitor import SystemMetricsMonitor

    # MLflow says "Started / Stopping / Successfully terminated ..." at INFO for every run: noise between gradacc's
    # progress lines. Its warnings (a store that stops answering) still show.
    logging.getLogger("mlflow.system_metrics").setLevel(logging.WARNING)
    interval, samples = sampling()
    monitor = SystemMetricsMonitor(run_id, sampling_interval=interval, samples_before_logging=samples)
    monitor.start()
    return monitor


def stop_monitor(monitor, last_point: bool = True) -> None:
    """Stops the sampling thread and, with `last_point`, logs what it had not logged yet with one last sample:
    MLflow's own `finish` drops the samples of an unfinished point, so a run shorter than the interval would
    otherwise have none. Best effort: system metrics are not measurements."""
    monitor.finish()
    if not last_point:
        return
    try:
        monitor.collect_metrics()
        monitor.publish_metrics(monitor.aggregate_metrics())
        monitor.mlflow_logger.flush()
    except Exception as err:  # noqa: BLE001 - never let the monitor decide how a run ends
        logging.getLogger(__name__).warning("system metrics: the last point was not logged (%s)", err)


def sample_cpu_s(run_id: str, samples: int = 5) -> float:
    """CPU seconds of one of the monitor's sampling rounds (psutil's readings, the run's status from the store, one
    point logged), done `samples` times in this thread: what the sampling thread takes from the others per interval
    at most (the sqlite and HTTP calls release the GIL while they wait). The points go to `run_id`, at steps of
    their own after those the monitor logged."""
    from mlflow.system_metrics.system_metrics_monitor import SystemMetricsMonitor
    from mlflow.tracking import MlflowClient

    monitor = SystemMetricsMonitor(run_id, resume_logging=True)
    client = MlflowClient()
    start = time.thread_time()
    for _ in range(samples):
        monitor.collect_metrics()
        client.get_run(run_id)
        monitor.publish_metrics(monitor.aggregate_metrics())
        monitor.mlflow_logger.flush()
    return (time.thread_time() - start) / samples


@contextmanager
def monitoring(run_id: str, enabled: bool, store_answers=lambda: True):
    """MLflow's monitor on `run_id` for the block where `enabled`, stopped however the block ends; its last point is
    left out where `store_answers()` says the run's store stopped answering (another bounded wait for nothing)."""
    if not enabled:
        yield
        return
    monitor = start_monitor(run_id)
    try:
        yield
    finally:
        stop_monitor(monitor, last_point=store_answers())
