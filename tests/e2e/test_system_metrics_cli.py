"""`--system-metrics` from the command line: a smoke run with it carries MLflow's system metrics and the param
`system_metrics=true`; without it, none; without psutil, one line and no run; the MLproject's parameter."""
from __future__ import annotations

import sys
import threading

import pytest
import torch
import yaml

from tests.support.e2e import REPO_ROOT, all_runs, assert_one_error_line, history, run_cli, smoke_store

SWITCH = "MLFLOW_ENABLE_SYSTEM_METRICS_LOGGING"
CPU = "system/cpu_utilization_percentage"


@pytest.fixture
def store(tmp_path, monkeypatch):
    monkeypatch.setenv(SWITCH, "false")  # whatever the CLI sets, the environment is put back after the test
    with smoke_store(tmp_path) as client:
        yield client


def smoke_micro(client, *options: str):
    """`gradacc micro --smoke --threads 1 OPTIONS` in this process; its one run."""
    threads = torch.get_num_threads()
    try:
        result = run_cli(["micro", "--smoke", "--threads", "1", *options])
    finally:
        torch.set_num_threads(threads)
    assert result.code == 0, result.err
    runs = all_runs(client)
    assert len(runs) == 1
    return runs[0]


def test_the_option_puts_system_metrics_on_the_run(store):
    run = smoke_micro(store, "--system-metrics")  # a flag with no value is true, as --smoke
    assert run.info.status == "FINISHED" and run.data.params["system_metrics"] == "true"
    system = {k for k in run.data.metrics if k.startswith("system/")}
    assert {CPU, "system/system_memory_usage_megabytes", "system/system_memory_usage_percentage",
            "system/disk_usage_percentage", "system/network_receive_megabytes"} <= system
    steps, values = history(store, run.info.run_id, CPU)
    assert steps == list(range(len(steps))) and len(steps) >= 1 and all(0 <= v <= 100 for v in values)
    assert not [t for t in threading.enumerate() if t.name == "SystemMetricsMonitor" and t.is_alive()]


def test_off_by_default(store):
    run = smoke_micro(store)
    assert run.data.params["system_metrics"] == "false"
    assert not [k for k in run.data.metrics if k.startswith("system/")]


def test_without_psutil_one_line_and_no_run(store, monkeypatch):
    monkeypatch.setitem(sys.modules, "psutil", None)  # `import psutil` raises ImportError
    result = run_cli(["micro", "--smoke", "--system-metrics", "true"])
    assert result.code != 0
    assert_one_error_line(result, "--system-metrics needs psutil, which is not installed: pip install psutil")
    assert all_runs(store) == []


def test_the_mlproject_parameter_on_every_measuring_entry_point():
    points = yaml.safe_load((REPO_ROOT / "MLproject").read_text())["entry_points"]
    for name in ("main", "micro", "update", "converge", "ddp"):
        assert points[name]["parameters"]["system_metrics"] == {"type": "string", "default": "false"}, name
        assert "--system-metrics={system_metrics}" in points[name]["command"], name
    for name in ("compare", "verify", "commmodel"):  # their runs measure no time
        assert "system_metrics" not in points[name]["parameters"], name
