"""The `mlflow run` Ctrl-C hook (gradacc/tracking/launcher.py) acts only in the launcher's process, and is
registered where MLflow looks for it (a venv installed before the entry point existed lacks it: reinstall)."""
from __future__ import annotations

import importlib.metadata
import signal

import pytest

from gradacc.tracking import launcher


@pytest.fixture()
def sigint_restored():
    before = signal.getsignal(signal.SIGINT)
    yield
    signal.signal(signal.SIGINT, before)


def test_registered_as_an_mlflow_plugin():
    found = [e.value for e in importlib.metadata.entry_points(group="mlflow.run_context_provider")]
    assert "gradacc.tracking.launcher:LauncherHook" in found


@pytest.mark.parametrize("argv", [["/venv/bin/gradacc", "converge"], ["/venv/bin/mlflow", "ui"],
                                  ["-m", "gradacc", "run"][1:], ["pytest"]])
def test_other_processes_keep_their_sigint_handler(argv, monkeypatch, sigint_restored):
    signal.signal(signal.SIGINT, signal.default_int_handler)
    monkeypatch.setattr("sys.argv", argv)
    hook = launcher.LauncherHook()
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    assert not hook.in_context() and hook.tags() == {}


@pytest.mark.parametrize("argv", [["/venv/bin/mlflow", "run", "."], ["-m", "run", "."],
                                  ["/venv/lib/mlflow/__main__.py", "run", "."]])
def test_the_launcher_gets_the_handler(argv, monkeypatch, sigint_restored):
    signal.signal(signal.SIGINT, signal.default_int_handler)
    monkeypatch.setattr("sys.argv", argv)
    monkeypatch.setattr("atexit.register", lambda fn: None)
    launcher.LauncherHook()
    assert signal.getsignal(signal.SIGINT) is launcher._on_sigint


def test_a_sigint_outside_the_launchers_wait_is_a_plain_keyboard_interrupt(monkeypatch):
    monkeypatch.setattr(launcher, "_interrupted", False)
    with pytest.raises(KeyboardInterrupt):
        launcher._on_sigint(signal.SIGINT, None)
    assert launcher._interrupted is False
