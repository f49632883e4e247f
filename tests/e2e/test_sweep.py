"""The sweep end to end on tiny data: study ids, reuse of finished runs, --force, --repeats, resuming."""
from __future__ import annotations

import os
import sys

import pytest

from gradacc.core.errors import Terminated
from gradacc.study import run as runner
from tests.support.e2e import all_runs, run_cli, smoke_store

# One torch thread: on a busy 2-core machine, oversubscribed threads make smoke runs several times slower.
SWEEP = ["sweep", "--smoke", "--parts", "micro", "--ks", "1,2", "--threads", "1"]


@pytest.fixture()
def store(tmp_path):
    with smoke_store(tmp_path) as client:
        yield client


def runs_by_part(client, part: str, status: str | None = None) -> list:
    return [r for r in all_runs(client) if r.data.tags.get("gradacc.part") == part
            and (status is None or r.info.status == status)]


def studies(run) -> set[str]:
    return {key.split(".", 2)[2] for key in run.data.tags if key.startswith("gradacc.study.")}


def parent_study(result) -> str:
    line = next(text for text in result.err.splitlines() if text.startswith("sweep: study "))
    return line.split()[2].rstrip(",:")


def test_second_sweep_reuses_every_finished_run(store):
    first = run_cli(SWEEP)
    assert first.code == 0, first.err
    measured = runs_by_part(store, "micro", "FINISHED")
    assert len(measured) == 2
    second = run_cli(SWEEP)
    assert second.code == 0, second.err
    assert "0 runs measured, 2 reused" in second.err
    assert len(runs_by_part(store, "micro")) == 2  # nothing ran again
    ids = parent_study(first), parent_study(second)
    assert ids[0] != ids[1]
    for run in runs_by_part(store, "micro"):
        assert studies(store.get_run(run.info.run_id)) == set(ids)  # found by either study
    # the parent shows the study's data too: micro runs only train, so the training subset alone
    parents = runs_by_part(store, "sweep")
    assert len(parents) == 2
    for parent in parents:
        inputs = store.get_run(parent.info.run_id).inputs.dataset_inputs
        assert [i.dataset.name for i in inputs] == ["cifar10-train-1024"]


def test_force_measures_again_and_repeats_add_seeds(store):
    assert run_cli(SWEEP).code == 0
    assert run_cli(SWEEP + ["--force"]).code == 0
    assert len(runs_by_part(store, "micro", "FINISHED")) == 4
    result = run_cli(SWEEP + ["--repeats", "2"])
    assert result.code == 0, result.err
    assert "2 runs measured, 2 reused" in result.err  # seed 42 reused, seed 43 new
    seeds = sorted((r.data.params["k"], r.data.params["seed"]) for r in runs_by_part(store, "micro"))
    assert seeds.count(("1", "43")) == 1 and seeds.count(("2", "43")) == 1


@pytest.mark.parametrize("interrupt, code", [(KeyboardInterrupt, 130), (Terminated, 143)])  # SIGINT, SIGTERM
def test_interrupted_sweep_resumes_where_it_stopped(store, monkeypatch, interrupt, code):
    real = runner.RUNNERS["micro"]

    def interrupt_at_k2(protocol, ctx, result, progress):
        if protocol.k == 2:
            raise interrupt
        return real(protocol, ctx, result, progress)

    monkeypatch.setitem(runner.RUNNERS, "micro", interrupt_at_k2)
    stopped = run_cli(SWEEP)
    assert stopped.code == code
    assert {r.info.status for r in runs_by_part(store, "sweep")} == {"KILLED"}
    assert sorted(r.info.status for r in runs_by_part(store, "micro")) == ["FINISHED", "KILLED"]

    monkeypatch.setitem(runner.RUNNERS, "micro", real)
    resumed = run_cli(SWEEP)
    assert resumed.code == 0, resumed.err
    assert "1 runs measured, 1 reused" in resumed.err
    finished = runs_by_part(store, "micro", "FINISHED")
    assert sorted(r.data.params["k"] for r in finished) == ["1", "2"]
    study = parent_study(resumed)
    assert all(study in studies(store.get_run(r.info.run_id)) for r in finished)
    assert not [r for r in all_runs(store) if r.info.status == "RUNNING"]


def test_the_runs_plots_are_drawn_after_the_last_configuration(store, monkeypatch, tmp_path):
    events = tmp_path / "events"  # a file: on Linux a child process draws the plots (study/figures.py)
    real_micro, real_plot = runner.RUNNERS["micro"], runner.plot_run

    def note(what):
        with events.open("a") as out:
            out.write(f"{what} {'here' if os.getpid() == parent else 'child'}\n")

    def measure(protocol, ctx, result, progress):
        note(f"measure k={protocol.k}")
        return real_micro(protocol, ctx, result, progress)

    def plot(title, series, path, window=None):
        note(f"plot {title.split()[0]}")
        return real_plot(title, series, path, window=window)

    parent = os.getpid()
    monkeypatch.setitem(runner.RUNNERS, "micro", measure)
    monkeypatch.setattr(runner, "plot_run", plot)
    result = run_cli(SWEEP)
    assert result.code == 0, result.err
    drawn_by = "child" if sys.platform == "linux" else "here"
    assert events.read_text().splitlines() == ["measure k=1 here", "measure k=2 here",
                                               f"plot micro-k1-smoke {drawn_by}", f"plot micro-k2-smoke {drawn_by}"]
    for run in runs_by_part(store, "micro"):  # each logged to its own run, after the run ended
        assert [a.path for a in store.list_artifacts(run.info.run_id, "plots")] == ["plots/micro.png"]
