"""The sweep's plan with seeds trained together (gradacc.study.sweep.configurations), and how it is split."""
from __future__ import annotations

from gradacc.core.config import Protocol
from gradacc.study.plan import Config, Together, assign, configurations, seed_labels

PROTOCOLS = [Protocol(k=k, seed=seed) for seed in (42, 43, 44, 45) for k in (1, 4)]


def test_together_runs_every_part_for_the_first_seed_then_one_group_per_k():
    units = configurations(PROTOCOLS, ["micro", "converge"], together=True)
    assert [u.label for u in units] == [
        "micro-k1 seed 42", "converge-k1 seed 42", "micro-k4 seed 42", "converge-k4 seed 42",
        "converge-k1 seeds 43, 44, 45 together", "converge-k4 seeds 43, 44, 45 together"]
    groups = [u for u in units if isinstance(u, Together)]
    assert [[p.seed for p in g.protocols] for g in groups] == [[43, 44, 45]] * 2
    assert {p.k for p in groups[1].protocols} == {4}
    assert seed_labels(groups[0]) == ["converge-k1 seed 43", "converge-k1 seed 44", "converge-k1 seed 45"]
    assert groups[0].work == 3 * Config("converge", PROTOCOLS[0]).work


def test_without_together_every_part_runs_for_every_seed():
    units = configurations(PROTOCOLS, ["micro", "converge"])
    assert len(units) == 16 and all(isinstance(u, Config) for u in units)
    assert [(u.part, u.protocol.k, u.protocol.seed) for u in units[:4]] == [
        ("micro", 1, 42), ("converge", 1, 42), ("micro", 4, 42), ("converge", 4, 42)]


def test_together_changes_nothing_without_converge_runs_or_a_second_seed():
    assert configurations(PROTOCOLS, ["micro"], together=True) == configurations(PROTOCOLS, ["micro"])
    one_seed = PROTOCOLS[:2]
    assert configurations(one_seed, ["micro", "converge"], True) == configurations(one_seed, ["micro", "converge"])


def test_a_group_is_one_unit_of_the_split():
    units = configurations(PROTOCOLS, ["micro", "converge"], together=True)
    ranks = assign(units, 2)
    assert len(ranks) == len(units)
    groups = [r for u, r in zip(units, ranks) if isinstance(u, Together)]
    assert sorted(groups) == [0, 1]  # the two heaviest units, one on each rank


def test_seeds_together_is_refused_with_cuda_graphs_and_auto_runs_them_alone():
    import types

    import pytest

    from gradacc.core.errors import ConfigError
    from gradacc.study.plan import trains_together
    gpu = types.SimpleNamespace(runtime=types.SimpleNamespace(is_cuda=True))
    graphs = [Protocol(k=1, cuda_graphs=True)]
    assert trains_together("auto", gpu, PROTOCOLS) and not trains_together("auto", gpu, graphs)
    assert not trains_together("false", gpu, PROTOCOLS)
    with pytest.raises(ConfigError, match="does not work with --cuda-graphs yet"):
        trains_together("true", gpu, graphs)
