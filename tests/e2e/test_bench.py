"""`gradacc bench`: its lines, their ratios and goals, end to end on tiny data (figures, not timed assertions)."""
from __future__ import annotations

import json
import math
import re

import pytest

from gradacc.bench.lines import Line
from tests.support.cifar import write_data_root
from tests.support.e2e import assert_one_error_line, isolated_store, run_cli


def test_line_ratio_goal_and_text():
    slower = Line("x", "a", 1.02, "b", 1.0, "s", goal="<= 1.01")
    assert slower.ratio == pytest.approx(1.02) and slower.met is False and "MISSED" in slower.text()
    faster = Line("y", "a", 10.0, "b", 2.0, "img/s", goal=">= 5")
    assert faster.met is True and "ratio 5.000" in faster.text() and "goal >= 5: met" in faster.text()
    assert Line("z", "a", 1.0, "b", 2.0, "s").met is None


@pytest.fixture(scope="module")
def smoke_bench(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("bench")
    data = write_data_root(tmp_path_factory.mktemp("bench_data"))
    with isolated_store(tmp, data):
        result = run_cli(["bench", "--smoke", "--threads", "1", "--batches", "5", "--updates", "5",
                          "--log-values", "20", "--e2e-ks", "2", "--noise-pairs", "2", "--system-metrics-side-s",
                          "0.5", "--system-metrics-pairs", "2", "--seeds", "2", "--json",
                          str(tmp / "bench.json")])
        assert result.code == 0, result.err
        yield result, json.loads((tmp / "bench.json").read_text()), tmp


def test_bench_prints_every_line_with_its_ratio(smoke_bench):
    result, lines, _tmp = smoke_bench
    names = [line["name"] for line in lines]
    assert names == ["data stream, delivery", "data stream, K=1 update", "tracking overhead", "logging cost",
                     "Part 2 from a noise-scale run", "system metrics cost", "end to end, the study",
                     "the study's overhead", "2 seeds against one"]
    for line in lines:
        assert line["a"] > 0 and line["b"] > 0 and math.isfinite(line["ratio"])
        assert f"ratio {line['ratio']:.3f}" in result.out
    assert "CUDA-graph floor: skipped (needs CUDA)" in result.out
    assert "1 torch threads" in result.err  # the threads it used are printed
    tracking = lines[2]
    assert tracking["goal"] == "<= 1.01" and "2 block(s) of A B B A" in tracking["note"]
    extra = float(re.search(r"fixed cost of tracking is (-?[\d.]+) ± [\d.]+ s per run", tracking["note"]).group(1))
    assert extra == pytest.approx(tracking["a"] - tracking["b"], abs=0.006)  # the blocks' mean difference
    outside = float(re.search(r"Outside its loop a tracked run took ([\d.]+) s", tracking["note"]).group(1))
    assert 0 < outside < tracking["a"]  # a part of the tracked run's wall: what its own loop did not take
    noise = lines[4]
    assert "K=4, 2 pair(s) of trainings of 4 updates, interleaved update by update (A B B A)" in noise["note"]
    assert "8 paired updates" in noise["note"] and "% of the update time (goal < 2%: " in noise["note"]
    assert "within the spread: " in noise["note"]
    monitor = lines[5]
    assert "then 2 pair(s) A B B A; a sample every 2 s" in monitor["note"] and "ms of CPU per sample" in monitor["note"]
    assert lines[6]["goal"] == "<= 0.5" and lines[7]["b"] == lines[6]["a"]  # the overhead is out of that wall
    seeds = lines[8]  # on a CPU the seeds run one after another: a figure, no goal
    assert seeds["goal"] == "" and "--repeats 2" in seeds["note"] and "one seed after another" in seeds["note"]


def test_end_to_end_runs_both_sides_to_results(smoke_bench):
    result, lines, tmp = smoke_bench
    rows = [r.split() for r in result.out.splitlines()
            if r[:2] in ("1 ", "2 ") and r.split()[1] in ("gradacc", "reference")]
    assert [(r[0], r[1]) for r in rows] == [("2", "gradacc"), ("2", "reference")] * 2  # the e2e and seeds lines
    for row in rows:  # micro ms, update s, final loss, test accuracy: all measured on both sides
        micro_ms, update_s, loss, accuracy = map(float, row[2:6])
        assert micro_ms > 0 and update_s > 0 and math.isfinite(loss) and 0 <= accuracy <= 100
    # the bench's own runs go to temporary stores, not to the user's
    assert not (tmp / "mlruns").exists() or not any((tmp / "mlruns").iterdir())


def test_bad_lines_option_is_one_line_error(tmp_path):
    with isolated_store(tmp_path):
        assert_one_error_line(run_cli(["bench", "--lines", "streams,warp"]), "unknown line(s) warp")
