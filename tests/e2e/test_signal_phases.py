"""A signal at each phase of a run, in process (the CLI's own handlers, the signal sent to this process at a chosen
moment): before any run (start-up), mid-training, during evaluation, while the metrics or the files are written.
Once the measurement is complete it is logged in full and the run ends FINISHED; before, KILLED with what was
measured; with no run yet, the line says so."""
from __future__ import annotations

import os
import signal

import pytest

import gradacc.parts.converge
import gradacc.study.run
import gradacc.tracking.experiments
import gradacc.tracking.runs
from gradacc.names import NOTE
from tests.support.e2e import all_runs, error_lines, history, module_store, run_cli

pytestmark = pytest.mark.reliability
CONVERGE = ["converge", "--k", "2", "--smoke", "--threads", "1"]
MEASURED_IN_FULL = "once its runs were measured in full and logged: they ended FINISHED"


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    with module_store(tmp_path_factory, "signals") as made:
        yield made


def signalled(sig: int, call):
    """`call`, after sending `sig` to this process (its handler runs before `call` does anything)."""
    def wrapped(*args, **kwargs):
        os.kill(os.getpid(), sig)
        return call(*args, **kwargs)
    return wrapped


def run_with(store, experiment: str):
    before = {r.info.run_id for r in all_runs(store["client"])}
    result = run_cli(CONVERGE + ["--experiment", experiment])
    new = [r for r in all_runs(store["client"]) if r.info.run_id not in before]
    ours = [line for line in error_lines(result.err) if line.startswith("gradacc:")]
    assert "Traceback" not in result.err, result.err
    return result, new, ours


def artifacts(store, run_id: str) -> set[str]:
    client = store["client"]
    return {f.path for top in client.list_artifacts(run_id) for f in
            (client.list_artifacts(run_id, top.path) if top.is_dir else [top])}


def test_at_start_up_no_run_is_claimed(store, monkeypatch):
    real = gradacc.tracking.experiments.experiment_id  # resolved once, before the first run opens
    monkeypatch.setattr(gradacc.tracking.experiments, "experiment_id", signalled(signal.SIGINT, real))
    result, new, ours = run_with(store, "sig-startup")
    assert result.code == 130 and new == []
    assert ours == ["gradacc: interrupted before any run began: nothing was measured or logged"]


def test_mid_training_the_run_ends_killed_with_its_updates(store, monkeypatch):
    real = gradacc.study.run.RUNNERS["converge"]

    def part(protocol, ctx, result, advance):
        def step(n=1):
            advance(n)
            if len(result.series) == 0 and step.count == 3:
                os.kill(os.getpid(), signal.SIGINT)
            step.count += 1
        step.count = 0
        real(protocol, ctx, result, step)
    monkeypatch.setitem(gradacc.study.run.RUNNERS, "converge", part)
    result, (run,), ours = run_with(store, "sig-training")
    assert result.code == 130 and run.info.status == "KILLED"
    assert ours == ["gradacc: interrupted; what was measured is logged, the run ends KILLED"]
    steps, _ = history(store["client"], run.info.run_id, "train_loss_update")
    assert 0 < len(steps) < 8  # the updates done before the signal (smoke, K=2: 8 updates)
    assert "test_accuracy" not in run.data.metrics
    assert run.data.tags[NOTE].startswith("Converge") and "Stopped early" in run.data.tags[NOTE]


def test_during_evaluation_the_run_ends_killed_with_its_training(store, monkeypatch):
    monkeypatch.setattr(gradacc.parts.converge, "evaluate", signalled(signal.SIGTERM, gradacc.parts.converge.evaluate))
    result, (run,), ours = run_with(store, "sig-evaluation")
    assert result.code == 143 and run.info.status == "KILLED"
    assert ours == ["gradacc: terminated; what was measured is logged, the run ends KILLED"]
    steps, _ = history(store["client"], run.info.run_id, "train_loss_update")
    assert len(steps) == 8 and "test_accuracy" not in run.data.metrics


@pytest.mark.parametrize("sig, code, word", [(signal.SIGINT, 130, "interrupted"), (signal.SIGTERM, 143, "terminated")])
@pytest.mark.parametrize("phase", ["log_metrics", "log_files", "set_tags"])
def test_once_measured_a_signal_costs_nothing(store, monkeypatch, phase, sig, code, word):
    """The signal waits until metrics, files and the description are written; the run ends FINISHED."""
    real = getattr(gradacc.tracking.runs.TrackedRun, phase)
    calls = []

    def once(self, *args, **kwargs):  # the first call of `phase` after training (set_tags: the description)
        if not calls and (phase != "set_tags" or NOTE in args[0]):
            calls.append(phase)
            os.kill(os.getpid(), sig)
        return real(self, *args, **kwargs)
    monkeypatch.setattr(gradacc.tracking.runs.TrackedRun, phase, once)
    result, (run,), ours = run_with(store, f"sig-{phase}-{word}")
    assert calls == [phase]
    assert result.code == code and run.info.status == "FINISHED", result.err
    assert ours == [f"gradacc: {word} {MEASURED_IN_FULL}"]
    assert run.data.tags[NOTE].startswith("Converge") and "Results: " in run.data.tags[NOTE]
    assert "test_accuracy" in run.data.metrics and "wall_time_s" in run.data.metrics
    assert {"environment.txt", "plots/converge.png", "series/train_loss_update.csv"} <= artifacts(
        store, run.info.run_id)
    assert "runs: " in result.err  # the run's link is printed before the signal takes effect
