"""A sweep spread over processes (`gradacc sweep --gpus 2`: torchrun, two gloo ranks on the CPU, tiny data): which
rank runs what, one parent and its children, compare over all, runs equal to a one-process sweep's, reuse, and a
rank whose configuration fails or that is killed outright."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from gradacc.core.config import build_protocol
from gradacc.names import PARTS, RANK, WORLD_SIZE
from gradacc.study.plan import assign, configurations
from tests.support.e2e import all_runs, history, module_store, run_cli, smoke_store, subprocess_env

# One torch thread per rank: two ranks on a busy 2-core machine.
SWEEP = ["sweep", "--smoke", "--threads", "1", "--device", "cpu"]
SPREAD = SWEEP + ["--parts", "micro,converge", "--ks", "1,2", "--gpus", "2"]


def timed(metric: str) -> bool:
    """A metric of time or memory (micro_iter_ms_p90, update_time_s, noise_snapshot_s_mean, throughput_img_s, ...)."""
    return "_ms" in metric or metric.endswith("_s") or "_s_" in metric or metric.startswith(("throughput", "peak"))


def study_of(result) -> str:
    line = next(text for text in result.err.splitlines() if text.startswith("sweep: study "))
    return line.split()[2].rstrip(",:")


def error_lines(result) -> list[str]:
    assert "Traceback" not in result.err, result.err[-3000:]
    return [line for line in result.err.splitlines() if line.startswith("gradacc: error:")]


def study_runs(client, study: str) -> list:
    return [r for r in all_runs(client) if r.data.tags.get(f"gradacc.study.{study}") == "1"]


def by_config(runs) -> dict[tuple[str, str], object]:
    """The measuring runs by (part, k); each configuration must appear once."""
    found = [r for r in runs if r.data.tags["gradacc.part"] in PARTS]
    keyed = {(r.data.tags["gradacc.part"], r.data.params["k"]): r for r in found}
    assert len(keyed) == len(found), [r.info.run_name for r in found]
    return keyed


def expected_ranks(ks=(1, 2), parts=("micro", "converge"), world=2) -> dict[tuple[str, str], str]:
    configs = configurations([build_protocol(k, 42, True, epochs=5) for k in ks], list(parts))
    return {(c.part, str(c.protocol.k)): str(rank) for c, rank in zip(configs, assign(configs, world))}


def test_assignment_balances_the_work_and_places_each_configuration_once():
    protocols = [build_protocol(k, 42, epochs=5) for k in (1, 2, 4, 8)]
    configs = configurations(protocols, ["micro", "converge"])
    ranks = assign(configs, 2)
    assert ranks == assign(configs, 2)  # deterministic
    mine = {r: [c.label for c, rank in zip(configs, ranks) if rank == r] for r in (0, 1)}
    assert mine[0] == ["micro-k1 seed 42", "converge-k1 seed 42", "micro-k4 seed 42", "converge-k4 seed 42"]
    assert mine[1] == ["micro-k2 seed 42", "converge-k2 seed 42", "micro-k8 seed 42", "converge-k8 seed 42"]
    for world in (3, 4, 5, 16):
        ranks = assign(configs, world)
        assert len(ranks) == len(configs) and set(ranks) <= set(range(world))
        loads = [sum(c.work for c, r in zip(configs, ranks) if r == rank) for rank in range(world)]
        assert max(loads) - min(loads) <= max(c.work for c in configs), (world, loads)


def test_gpus_passes_every_other_option_to_the_ranks_as_parsed():
    from gradacc.cli.measure import forwarded_options, sweep
    argv = ["--ks", "2,8", "--parts", "converge", "--smoke", "--threads", "1", "--lr-scaling", "linear",
            "--experiment", "x", "--gpus", "3"]
    given = sweep.make_context("sweep", list(argv)).params
    forwarded = forwarded_options(sweep.make_context("sweep", list(argv)), leave_out="gpus")
    assert not any(arg.startswith("--gpus") for arg in forwarded)
    again = sweep.make_context("sweep", forwarded).params
    assert again == dict(given, gpus=1)


def test_gpus_that_cannot_run_are_one_error_line(tracking_store, monkeypatch):
    too_many = run_cli(SWEEP + ["--gpus", "1000"])
    assert too_many.code == 1 and error_lines(too_many) == [too_many.err.strip()]
    assert "1000 CPU processes" in too_many.err
    for name, value in {"RANK": "0", "LOCAL_RANK": "0", "WORLD_SIZE": "2", "MASTER_ADDR": "127.0.0.1",
                        "MASTER_PORT": "29500"}.items():
        monkeypatch.setenv(name, value)
    nested = run_cli(SWEEP + ["--gpus", "2"])
    assert nested.code == 2 and "under torchrun, leave --gpus out" in nested.err


def test_the_launcher_chooses_a_new_study_s_id_and_leaves_a_named_one():
    """A new study's id is the launcher's, so it can find the runs of a killed rank; a named study may have other
    writers (their RUNNING runs are not this sweep's to end)."""
    from gradacc.distributed.spread_launch import own_study
    args, study = own_study(["--ks=1,2", "--study=new", "--smoke=true"], None)
    assert args == ["--ks=1,2", "--smoke=true", f"--study={study}"] and len(study) == 8
    assert own_study(["--ks=1", "--study=S"], "S") == (["--ks=1", "--study=S"], None)


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    with module_store(tmp_path_factory, "spread") as found:
        yield found


@pytest.fixture(scope="module")
def spread(store):
    """The first spread sweep of the module's store."""
    result = run_cli(SPREAD)
    assert result.code == 0, result.err[-3000:]
    return result


@pytest.mark.slow
def test_each_configuration_runs_once_on_its_rank_under_one_parent(store, spread):
    client, study = store["client"], study_of(spread)
    runs = study_runs(client, study)
    parent, = [r for r in runs if r.data.tags["gradacc.part"] == "sweep"]
    assert parent.info.status == "FINISHED" and parent.data.tags[WORLD_SIZE] == "2"
    children = by_config(runs)
    ranks = expected_ranks()
    assert set(children) == set(ranks)
    for key, run in children.items():
        assert run.info.status == "FINISHED"
        assert run.data.tags["mlflow.parentRunId"] == parent.info.run_id
        assert run.data.tags[RANK] == ranks[key] and run.data.tags[WORLD_SIZE] == "2"
    assert "sweep: rank 0 runs micro-k1-smoke seed 42, converge-k1-smoke seed 42" in spread.err
    compare, = [r for r in all_runs(client) if r.data.tags["gradacc.part"] == "compare"
                and r.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
    assert compare.info.status == "FINISHED"  # rank 0 compared the whole study, both ranks' runs
    assert "4 runs in 1 setting(s)" in spread.err
    assert not [r for r in all_runs(client) if r.info.status == "RUNNING"]


@pytest.mark.slow
def test_spread_runs_equal_those_of_a_one_process_sweep(store, spread):
    import torch
    client = store["client"]
    threads = torch.get_num_threads()
    try:
        solo = run_cli(SPREAD[:-2] + ["--experiment", "solo"])
    finally:
        torch.set_num_threads(threads)
    assert solo.code == 0, solo.err[-3000:]
    spread_runs = by_config(study_runs(client, study_of(spread)))
    solo_runs = by_config(study_runs(client, study_of(solo)))
    assert set(spread_runs) == set(solo_runs) == set(expected_ranks())
    for key, run in spread_runs.items():
        other = solo_runs[key]
        assert run.data.params == other.data.params, key  # nothing in them names the process or the rank
        measured = {m for m in run.data.metrics if not timed(m)}
        assert measured == {m for m in other.data.metrics if not timed(m)}
        if key[0] == "converge":
            assert {"train_loss", "train_loss_update", "test_accuracy", "final_train_loss"} <= measured
        for name in measured:
            assert history(client, run.info.run_id, name) == history(client, other.info.run_id, name), (key, name)


@pytest.mark.slow
def test_a_second_spread_sweep_reuses_every_finished_run(store, spread):
    client = store["client"]
    before = len(all_runs(client))
    again = run_cli(SPREAD)
    assert again.code == 0, again.err[-3000:]
    assert "4 runs over 2 processes, 4 reused" in again.err and "0 runs measured, 4 reused" in again.err
    assert "sweep: rank 1 runs nothing" in again.err
    first, second = study_of(spread), study_of(again)
    reused = by_config(study_runs(client, second))
    assert set(reused) == set(expected_ranks())
    assert all(first in {k.split(".", 2)[-1] for k in r.data.tags} for r in reused.values())
    assert len(all_runs(client)) == before + 2  # the new parent and its compare run, nothing measured again


def spread_with_failure(tmp_path, monkeypatch, how: str):
    """`gradacc sweep --gpus 2` over micro for K = 1 (rank 0) and 2 (rank 1), rank 1's run made to fail."""
    monkeypatch.setattr("gradacc.distributed.spread_launch.ENTRY", "tests.support.spread_rank")
    monkeypatch.setenv("SPREAD_TEST_FAIL", f"1:micro:2:{how}")
    assert expected_ranks(parts=("micro",)) == {("micro", "1"): "0", ("micro", "2"): "1"}
    with smoke_store(tmp_path) as client:
        result = run_cli(SWEEP + ["--parts", "micro", "--ks", "1,2", "--gpus", "2"])
        return result, {r.info.run_name: r for r in all_runs(client)}


@pytest.mark.slow
def test_a_failed_configuration_is_one_line_and_the_other_rank_keeps_its_runs(tmp_path, monkeypatch):
    result, runs = spread_with_failure(tmp_path, monkeypatch, "diverge")
    assert result.code == 1
    line, = error_lines(result)
    assert "micro-k2-smoke seed 42 failed on rank 1 (training loss is nan at update 1" in line, line
    assert runs["micro-k1-smoke"].info.status == "FINISHED"  # rank 0's run, kept
    failed = runs["micro-k2-smoke"]
    assert failed.info.status == "FAILED" and "nan" in failed.data.tags["gradacc.failure"]
    assert runs["sweep-smoke"].info.status == "FAILED"
    assert runs["sweep-smoke"].data.tags["gradacc.failure"] == line.removeprefix("gradacc: error: ")
    assert runs["compare"].info.status == "FINISHED"  # compare still ran, on what finished
    assert not [r for r in runs.values() if r.info.status == "RUNNING"]


@pytest.mark.slow
def test_a_rank_that_cannot_start_is_named_and_the_others_run_their_share(tmp_path, monkeypatch):
    result, runs = spread_with_failure(tmp_path, monkeypatch, "data")
    assert result.code == 1
    line, = error_lines(result)
    assert "rank 1 could not start (" in line and "so it did not run micro-k2-smoke seed 42" in line, line
    assert runs["micro-k1-smoke"].info.status == "FINISHED" and "micro-k2-smoke" not in runs
    assert runs["sweep-smoke"].info.status == "FAILED" and runs["compare"].info.status == "FINISHED"
    assert not [r for r in runs.values() if r.info.status == "RUNNING"]


@pytest.mark.slow
def test_a_killed_rank_stops_the_sweep_with_one_line(tmp_path, monkeypatch):
    """SIGKILL: rank 0's collective fails at once (the dead rank's sockets close) and torchrun stops it; nothing
    hangs. The killed rank never ends its own run: the launcher, which chose the study id, ends it KILLED once
    torchrun has exited, and says so in one line."""
    result, runs = spread_with_failure(tmp_path, monkeypatch, "kill")
    assert result.code != 0
    line, = error_lines(result)
    assert "signal 9" in line or "lost the other ranks" in line or "not every rank reported" in line, line
    assert runs["micro-k1-smoke"].info.status == "FINISHED"
    killed = runs["micro-k2-smoke"]
    assert killed.info.status == "KILLED", killed.info.status
    assert killed.data.tags["gradacc.failure"].startswith("killed: its process ended before it could end the run")
    ended, = [text for text in result.err.splitlines() if "left RUNNING by a killed process" in text]
    assert ended.startswith("sweep: 1 run(s) of study ") and ended.endswith("ended KILLED: micro-k2-smoke"), result.err
    assert runs["sweep-smoke"].info.status in ("FAILED", "KILLED")
    assert not [r for r in runs.values() if r.info.status == "RUNNING"]


@pytest.mark.slow
def test_ctrl_c_ends_every_rank_s_run_killed(tmp_path):
    """Ctrl-C in a terminal (SIGINT to the launcher, torchrun and the ranks): each rank's run and the parent end
    KILLED, none is left RUNNING, and torchrun's own traceback stays out of the terminal."""
    with smoke_store(tmp_path) as client:
        proc = subprocess.Popen([sys.executable, "-m", "gradacc", *SWEEP, "--parts", "converge", "--ks", "1,2",
                                 "--gpus", "2"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                env=subprocess_env(), start_new_session=True)
        try:
            deadline = time.monotonic() + 300
            while time.monotonic() < deadline and proc.poll() is None:
                running = [r for r in all_runs(client) if r.info.status == "RUNNING"
                           and r.data.tags.get("gradacc.part") == "converge"]
                if len(running) == 2:
                    break
                time.sleep(0.2)
            os.killpg(proc.pid, signal.SIGINT)
            _, err = proc.communicate(timeout=180)
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
        assert proc.returncode == 130, err[-3000:]
        assert "Traceback" not in err, err[-3000:]
        statuses = {r.info.run_name: r.info.status for r in all_runs(client)}
    assert statuses == {"sweep-smoke": "KILLED", "converge-k1-smoke": "KILLED", "converge-k2-smoke": "KILLED"}
