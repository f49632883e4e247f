"""MLflow's system-metrics monitor in gradacc's run lifecycle (tracking/system_metrics.py, `tracked_run`): on a
measuring run only while switched on, and stopped, with its last point logged, however the run ends."""
from __future__ import annotations

import contextlib
import threading
import time

import pytest
from mlflow import MlflowClient

from gradacc.core.errors import ConfigError
from gradacc.tracking.experiments import experiment_id
from gradacc.tracking.runs import tracked_run
from gradacc.tracking.system_metrics import SAMPLING_INTERVAL_S, sampling, switch, switched_on

SWITCH = "MLFLOW_ENABLE_SYSTEM_METRICS_LOGGING"
CPU = "system/cpu_utilization_percentage"
MONITORS = ("system/system_memory_usage_megabytes", "system/disk_usage_percentage",
            "system/network_receive_megabytes")  # MLflow's memory, disk and network monitors


def monitor_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "SystemMetricsMonitor" and t.is_alive()]


@pytest.fixture
def switched(tracking_store, monkeypatch):
    """A store of its own, and MLflow's switch on for the test (monkeypatch puts the environment back after)."""
    monkeypatch.setenv(SWITCH, "false")
    switch(True)
    assert switched_on()
    return MlflowClient()


@pytest.mark.parametrize("ending, status", [(None, "FINISHED"), (RuntimeError, "FAILED"),
                                            (KeyboardInterrupt, "KILLED")])
def test_the_monitor_stops_however_the_run_ends(switched, ending, status):
    with pytest.raises(ending) if ending else contextlib.nullcontext():
        name = f"micro-{status.lower()}"
        with tracked_run(name, {"gradacc.part": "micro"}, experiment_id(None), measures=True) as run:
            assert monitor_threads(), "the monitor samples while the run is open"
            time.sleep(0.2)  # far shorter than the sampling interval: only the first and the last sample
            if ending:
                raise ending("stop")
    assert not monitor_threads()
    got = switched.get_run(run.run_id)
    assert got.info.status == status
    assert set(MONITORS) <= set(got.data.metrics)
    steps = [m.step for m in switched.get_metric_history(run.run_id, CPU)]
    assert steps == [0], "a run shorter than the interval still gets its point, the last one at stop"


def test_only_measuring_runs_while_switched_on(switched):
    # a sweep's parent, compare, commmodel
    with tracked_run("sweep", {"gradacc.part": "sweep"}, experiment_id(None)) as parent:
        assert not monitor_threads()
    switch(False)
    with tracked_run("micro-off", {"gradacc.part": "micro"}, experiment_id(None), measures=True) as off:
        assert not monitor_threads()
    for run_id in (parent.run_id, off.run_id):
        assert not [k for k in switched.get_run(run_id).data.metrics if k.startswith("system/")]


def test_sampling_defaults_and_mlflow_variables(monkeypatch):
    monkeypatch.delenv("MLFLOW_SYSTEM_METRICS_SAMPLING_INTERVAL", raising=False)
    monkeypatch.delenv("MLFLOW_SYSTEM_METRICS_SAMPLES_BEFORE_LOGGING", raising=False)
    assert sampling() == (SAMPLING_INTERVAL_S, 1) and SAMPLING_INTERVAL_S < 10  # MLflow's own default: 10 s
    monkeypatch.setenv("MLFLOW_SYSTEM_METRICS_SAMPLING_INTERVAL", "0.5")
    monkeypatch.setenv("MLFLOW_SYSTEM_METRICS_SAMPLES_BEFORE_LOGGING", "3")
    assert sampling() == (0.5, 3)


def test_a_switch_value_mlflow_cannot_read_is_one_line(monkeypatch):
    monkeypatch.setenv(SWITCH, "yes please")
    with pytest.raises(ConfigError, match=SWITCH):
        switched_on()
