"""The discussion's sentences computed from the numbers: pure, on in-memory frames shaped like load_runs'."""
from __future__ import annotations

import math

import pandas as pd
import pytest

from gradacc.analysis.compare import build_sections, display_rows, table_text
from gradacc.analysis.report.discussion import discussion, part1, part2, part3
from tests.support.compare import runs_frame


def table_of(**kwargs) -> pd.DataFrame:
    return build_sections(runs_frame(**kwargs))[0].table


def test_part1_flat_vs_growing_vs_mixed():
    flat = " ".join(part1(table_of(micro={1: 100.0, 2: 103.0, 4: 101.0, 8: 104.0})))
    assert "flat across K within 3.9%" in flat
    growing = " ".join(part1(table_of(micro={1: 100.0, 2: 110.0, 4: 125.0, 8: 140.0})))
    assert "grows by 40% from K=1 to K=8" in growing and "flat" not in growing.split(".")[0]
    assert "(0% at K=1 to 88% at K=8 of micro-iterations)" in growing
    mixed = " ".join(part1(table_of(micro={1: 100.0, 2: 130.0, 4: 95.0, 8: 110.0})))
    assert "without a monotonic trend" in mixed and "lowest at K=4, highest at K=2" in mixed


def test_part2_throughput_and_model_gap():
    micro = {1: 100.0, 8: 100.0}
    tracks = " ".join(part2(table_of(micro=micro, update={1: 0.107, 8: 0.807})))
    assert "Throughput at K=8 is 1.06x that of K=1" in tracks
    assert "tracks K x micro-iteration + optimizer step within 1.9% at every K (K=1 +1.9%, K=8 +0.2%" in tracks
    assert "agree within 1.1%" in tracks and "slower than its parts" not in tracks
    slow = " ".join(part2(table_of(micro=micro, update={1: 0.2, 8: 0.81})))
    assert "departs from K x micro-iteration + optimizer step by up to 90% (at K=1" in slow
    assert "1.98x" in slow and "slower than its parts" in slow


def test_part3_orderings():
    mono = " ".join(part3(table_of(accuracy={1: 43.0, 2: 40.0, 4: 38.0, 8: 35.0},
                                   loss={1: 1.6, 2: 1.7, 4: 1.8, 8: 1.9}), pd.DataFrame(), 51_200))
    assert "final training loss rises monotonically with K, from 1.6 (K=1) to 1.9 (K=8)" in mono
    assert "Test accuracy falls monotonically with K, from 43.0% (K=1) to 35.0% (K=8)" in mono
    assert "what the protocol expects" in mono and "51,200 images" in mono
    mixed = " ".join(part3(table_of(accuracy={1: 40.0, 2: 42.0, 4: 38.0, 8: 35.0},
                                    loss={1: 1.7, 2: 1.6, 4: 1.8, 8: 1.9}), pd.DataFrame(), 51_200))
    assert "Test accuracy is not monotonic in K: K=2 (42%) > K=1 (40%) > K=4 (38%) > K=8 (35%)" in mixed
    assert "final training loss is not monotonic in K: K=2 (1.6) < K=1 (1.7)" in mixed
    assert "departs from the plain expectation" in mixed


def seeds_frame(accuracy: dict[int, list[float]]) -> pd.DataFrame:
    """Converge runs whose test accuracy per K and seed is given: a store whose truth is known."""
    frames = [runs_frame(accuracy={k: values[i] for k, values in accuracy.items()}, seeds=(42 + i,))
              for i in range(len(next(iter(accuracy.values()))))]
    return pd.concat(frames, ignore_index=True)


def test_part3_differences_within_seed_noise():
    frame = seeds_frame({1: [40.0, 41.0], 2: [40.0, 41.4]})
    text = " ".join(part3(build_sections(frame)[0].table, pd.DataFrame(), None))
    assert "Test accuracy, 2 seeds per K (a step is resolved where the two 95% t intervals do not overlap): " \
           "resolved none; within the spread K=1-2." in text


def test_resolved_and_unresolved_steps_with_several_seeds():
    # K=1 -> 2: 5 points apart, seeds within 0.2 of each other: resolved. K=2 -> 4: 1 point apart, seeds 3 points
    # apart: not. Intervals: t(2)=4.303 * sd / sqrt(3).
    frame = seeds_frame({1: [50.0, 50.2, 49.8], 2: [45.0, 45.2, 44.8], 4: [44.0, 47.0, 41.0]})
    table = build_sections(frame)[0].table.set_index("k")
    assert table.loc[1, "test_accuracy_ci"] == pytest.approx(4.303 * 0.2 / math.sqrt(3), rel=1e-3)
    text = " ".join(part3(table.reset_index(), pd.DataFrame(), None))
    assert "Test accuracy, 3 seeds per K" in text and "resolved K=1-2; within the spread K=2-4." in text
    assert "45.0 ± 0.5" in table_text(build_sections(frame)[0])  # the table shows the interval, not the std


def test_one_seed_claims_no_ordering_and_says_how_many_seeds_would():
    table = build_sections(seeds_frame({1: [41.7], 2: [45.8], 4: [39.4], 8: [34.1]}))[0].table
    text = " ".join(part3(table, pd.DataFrame(), None))
    # the largest step, 6.4 points (K=2 -> 4); with sd 2: n=3 gives 2 * 4.303 * 2 / 1.732 = 9.94 > 6.4, n=4 gives
    # 2 * 3.182 * 2 / 2 = 6.36 < 6.4, so 4 seeds
    assert "One seed per K: no ordering of the test accuracy within the seed-to-seed spread can be claimed" in text
    assert "its largest step, K=2 to K=4, is 6.4 points" in text and "4 seeds per K would resolve it" in text


def test_a_smoke_study_marks_every_sentence_of_parts_1_to_3():
    no_series = pd.DataFrame(columns=["run_id", "part", "k", "key", "step", "value"])
    frame = seeds_frame({1: [41.7], 2: [45.8]}).assign(final_train_loss=[1.6, 1.7])
    (smoke,) = build_sections(frame.assign(smoke=True))
    for part, sentences in discussion(smoke, no_series).items():
        if part.startswith("Part 4"):
            continue  # the interconnect model and DDP's figures are not about this data
        assert sentences[0].startswith("Smoke runs (tiny data): nothing here says anything about K. "), part
        assert all(s.startswith("Smoke runs") for s in sentences), part
    (real,) = build_sections(frame)
    assert not any("Smoke" in s for s in sum(discussion(real, no_series).values(), []))


def test_discussion_changes_with_the_numbers():
    flat = discussion(build_sections(runs_frame(micro={1: 100.0, 8: 101.0}))[0], pd.DataFrame(
        columns=["run_id", "part", "k", "key", "step", "value"]))
    grown = discussion(build_sections(runs_frame(micro={1: 100.0, 8: 150.0}))[0], pd.DataFrame(
        columns=["run_id", "part", "k", "key", "step", "value"]))
    assert flat["Part 1: micro-iteration time"] != grown["Part 1: micro-iteration time"]
    assert "No update runs" in flat["Part 2: update time and throughput"][0]
    assert any("N=8: 4,830 images/s" in s for s in flat["Part 4: what real synchronous SGD adds"])


def test_part2_figures_from_converge_runs_unless_update_runs_exist():
    frame = runs_frame(micro={1: 100.0, 8: 100.0}, accuracy={1: 40.0, 8: 35.0})
    timed = frame["part"] == "converge"
    frame.loc[timed, "update_time_s_mean"] = [0.107, 0.807]
    frame.loc[timed, "throughput_img_s"] = 64 * frame.loc[timed, "k"] / frame.loc[timed, "update_time_s_mean"]
    section = build_sections(frame, expected_ks=(1, 8))[0]
    table = section.table.set_index("k")
    assert list(table["update_source"]) == ["converge", "converge"]
    assert table.loc[8, "update_n"] == 1 and table.loc[8, "update_runs"] == 0
    assert table.loc[8, "update_time_s_mean"] == pytest.approx(0.807)
    assert section.missing == []  # converge runs that timed their updates stand in for update runs
    assert display_rows(section.table)[1][0][-1] == "1/0/1"  # the runs column counts real runs per part
    assert "come from the converge runs" in " ".join(part2(section.table))
    # Where an update run exists it gives the figures; a mixed table says so.
    with_update = pd.concat([frame, runs_frame(update={8: 0.9})], ignore_index=True)
    table = build_sections(with_update)[0].table.set_index("k")
    assert table.loc[8, "update_source"] == "update" and table.loc[8, "update_time_s_mean"] == pytest.approx(0.9)
    assert table.loc[1, "update_source"] == "converge"
    assert "Update runs give these figures where they exist" in " ".join(part2(table.reset_index()))
    # Old converge runs (no timings) give no Part 2 figures.
    untimed = build_sections(runs_frame(accuracy={1: 40.0}), expected_ks=(1,))[0]
    assert untimed.table.loc[0, "update_n"] == 0 and untimed.missing == ["no micro runs for K=1",
                                                                         "no update runs for K=1"]
