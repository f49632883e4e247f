"""`sweep --repeats N --seeds-together`: the first seed's parts alone and timed, the other seeds' converge runs of
each K trained together, one run each with no timings; the same series as the same seeds run alone; reuse; a seed
that diverges; an interrupt."""
from __future__ import annotations

from pathlib import Path

import pytest

from gradacc.names import TOGETHER
from gradacc.parts import converge
from tests.support.e2e import all_runs, run_cli, smoke_store

SWEEP = ["sweep", "--smoke", "--parts", "micro,converge", "--ks", "1,2", "--repeats", "3", "--threads", "1",
         "--noise-scale", "off"]
TIMINGS = {"update_time_s", "update_time_s_mean", "update_time_s_std", "throughput_img_s", "wall_time_s",
           "peak_memory_mb", "noise_snapshot_s", "noise_snapshot_s_mean"}
SERIES = ("train_loss", "train_loss_update", "test_accuracy_epoch")


@pytest.fixture()
def store(tmp_path):
    with smoke_store(tmp_path) as client:
        yield client


def children(client, status: str | None = None) -> list:
    return [r for r in all_runs(client) if r.data.tags.get("gradacc.part") in ("micro", "converge")
            and (status is None or r.info.status == status)]


def history(client, run) -> dict[str, list[tuple[int, float]]]:
    return {key: [(m.step, m.value) for m in client.get_metric_history(run.info.run_id, key)] for key in SERIES}


def test_other_seeds_train_together_with_the_same_series_as_alone(store):
    together = run_cli(SWEEP + ["--seeds-together", "true"])
    assert together.code == 0, together.err
    assert "8 runs measured, 0 reused" in together.err
    report = next(line.split()[2].rstrip(";") for line in together.err.splitlines()
                  if line.startswith("compare: report "))
    assert ("converge runs trained together with other seeds log no timings (2 per K); these figures come from "
            "the runs trained alone (1 per K)") in Path(report).read_text()
    runs = children(store, "FINISHED")
    solo = sorted((r.data.tags["gradacc.part"], r.data.params["k"], r.data.params["seed"]) for r in runs
                  if TOGETHER not in r.data.tags)
    assert solo == [("converge", "1", "42"), ("converge", "2", "42"), ("micro", "1", "42"), ("micro", "2", "42")]
    grouped = [r for r in runs if TOGETHER in r.data.tags]
    assert sorted((r.data.params["k"], r.data.params["seed"]) for r in grouped) == [
        ("1", "43"), ("1", "44"), ("2", "43"), ("2", "44")]
    for run in grouped:
        assert run.data.tags[TOGETHER] == "43, 44"
        assert not TIMINGS & set(run.data.metrics) and "test_accuracy" in run.data.metrics
        assert "trained together with seeds 43, 44" in run.data.tags["mlflow.note.content"]
    from gradacc.results import load_runs
    table = load_runs(parts=["converge"]).sort_values(["k", "seed"])
    assert table["seeds_together"].fillna("alone").tolist() == ["alone", "43, 44", "43, 44"] * 2
    assert table["update_time_s_mean"].notna().tolist() == [True, False, False] * 2
    parent = next(r for r in all_runs(store) if r.data.tags.get("gradacc.part") == "sweep")
    assert parent.data.params["seeds_together"] == "true" and parent.data.params["repeats"] == "3"
    # The same seeds alone: every part for every seed, seed 42's runs reused.
    alone = run_cli(SWEEP + ["--seeds-together", "false"])
    assert alone.code == 0, alone.err
    assert "8 runs measured, 4 reused" in alone.err
    by_config = {}
    for run in children(store, "FINISHED"):
        if run.data.tags["gradacc.part"] == "converge" and run.data.params["seed"] != "42":
            key = (run.data.params["k"], run.data.params["seed"])
            by_config.setdefault(key, {})[TOGETHER in run.data.tags] = run
    assert len(by_config) == 4
    for pair in by_config.values():
        assert TIMINGS <= set(pair[False].data.metrics) | {"noise_snapshot_s", "noise_snapshot_s_mean"}
        assert history(store, pair[True]) == history(store, pair[False])  # bitwise: float equality
    # Together again: every run of both kinds is found and reused, nothing measured.
    again = run_cli(SWEEP + ["--seeds-together", "true"])
    assert again.code == 0, again.err
    assert "0 runs measured, 8 reused" in again.err


def test_a_seed_that_diverges_fails_alone_and_the_sweep_says_which(store, monkeypatch):
    real = converge.build_model
    monkeypatch.setattr(converge, "build_model", lambda seed, device: (
        _poisoned(real(seed, device)) if seed == 43 else real(seed, device)))
    result = run_cli(SWEEP + ["--ks", "2", "--seeds-together", "true"])
    assert result.code == 1
    errors = [line for line in result.err.splitlines() if line.startswith("gradacc: error:")]
    assert len(errors) == 1 and "seed 43" in errors[0] and "the other 1 runs finished" in errors[0], result.err
    grouped = {r.data.params["seed"]: r for r in children(store) if TOGETHER in r.data.tags}
    assert grouped["43"].info.status == "FAILED" and "training loss is nan" in grouped["43"].data.tags[
        "gradacc.failure"]
    assert grouped["44"].info.status == "FINISHED" and "gradacc.failure" not in grouped["44"].data.tags
    assert not [r for r in all_runs(store) if r.info.status == "RUNNING"]


def test_an_interrupt_ends_every_seed_of_the_group_killed_with_its_losses(store, monkeypatch):
    real_end_epoch = converge.Training.end_epoch

    def end_epoch(self, epoch):
        if self.protocol.seed == 44:
            raise KeyboardInterrupt()
        real_end_epoch(self, epoch)

    monkeypatch.setattr(converge.Training, "end_epoch", end_epoch)
    result = run_cli(SWEEP + ["--ks", "2", "--parts", "converge", "--seeds-together", "true"])
    assert result.code == 130, result.err
    grouped = [r for r in children(store) if TOGETHER in r.data.tags]
    assert len(grouped) == 2 and {r.info.status for r in grouped} == {"KILLED"}
    for run in grouped:
        steps = [m.step for m in store.get_metric_history(run.info.run_id, "train_loss_update")]
        assert steps == list(range(8))  # the epoch's 8 losses, read when the group stopped
    assert not [r for r in all_runs(store) if r.info.status == "RUNNING"]


def test_a_spread_sweep_runs_each_group_on_one_rank(store):
    """`--gpus 2` (two gloo CPU processes): the groups are units of the split, each on one rank, under one parent."""
    result = run_cli(["sweep", "--smoke", "--parts", "micro,converge", "--ks", "1,2", "--repeats", "2", "--threads",
                      "1", "--device", "cpu", "--noise-scale", "off", "--seeds-together", "true", "--gpus", "2"])
    assert result.code == 0, result.err[-3000:]
    assert "6 runs measured, 0 reused" in result.err
    grouped = [r for r in children(store, "FINISHED") if TOGETHER in r.data.tags]
    assert sorted((r.data.params["k"], r.data.params["seed"], r.data.tags[TOGETHER]) for r in grouped) == [
        ("1", "43", "43"), ("2", "43", "43")]
    assert {r.data.tags["gradacc.rank"] for r in grouped} == {"0", "1"}  # the two groups on different ranks
    assert len(children(store, "FINISHED")) == 6 and not [r for r in all_runs(store) if r.info.status == "RUNNING"]


def _poisoned(model):
    """The model's output made NaN: its training loss is NaN from the first epoch."""
    model.fc.register_forward_hook(lambda module, inputs, output: output * float("nan"))
    return model
