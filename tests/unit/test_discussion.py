"""The discussion's sentences computed from the numbers: pure, on in-memory frames shaped like load_runs'."""
from __future__ import annotations

import math

import pandas as pd
import pytest
from scipy import stats

from gradacc.analysis.compare import build_sections, display_rows, table_text
from gradacc.analysis.report.discussion import _lowered, discussion, lr_words, part1, part2, part3
from tests.support.compare import runs_frame


def table_of(**kwargs) -> pd.DataFrame:
    """The summary table of in-memory runs_frame runs (one setting)."""
    return build_sections(runs_frame(**kwargs))[0].table


def seeds_frame(accuracy: dict[int, list[float]], **setting) -> pd.DataFrame:
    """Converge runs whose test accuracy per K and seed is given (a K may have fewer seeds than another): a store
    whose truth is known."""
    frames = [runs_frame(accuracy={k: values[i] for k, values in accuracy.items() if i < len(values)},
                         seeds=(42 + i,), **setting) for i in range(max(map(len, accuracy.values())))]
    return pd.concat(frames, ignore_index=True)


def part3_text(accuracy: dict[int, list[float]], lr: str | None = "the lr held at 0.1 for every K") -> str:
    return " ".join(part3(build_sections(seeds_frame(accuracy))[0].table, pd.DataFrame(), 51_200, lr))


def test_part1_one_run_per_k_claims_nothing_across_k():
    text = " ".join(part1(table_of(micro={1: 100.0, 2: 110.0, 4: 125.0, 8: 140.0})))
    assert "spans 100-140 ms over K=1..8, 33.7% of its mean (119 ms)" in text
    assert "(0% at K=1 to 88% at K=8 of micro-iterations)" in text
    assert "One run per K (micro-iteration time: K=1 100 ms, K=2 110 ms, K=4 125 ms, K=8 140 ms): one run orders " \
           "nothing" in text
    assert "grows" not in text and "flat" not in text and "rises" not in text


def test_part1_flat_and_rising_decided_by_the_intervals_not_by_a_threshold():
    # 3 runs per K, 20% apart but overlapping: flat, though the means differ by more than 10%
    flat = " ".join(part1(pd.concat([runs_frame(micro={1: 100.0 + d, 2: 120.0 - d}, seeds=(s,))
                                      for s, d in ((1, -30.0), (2, 0.0), (3, 30.0))]).pipe(
        lambda f: build_sections(f)[0].table)))
    assert "No two K values are resolved apart: the micro-iteration time is flat within these intervals." in flat
    assert "That is what the protocol predicts" in flat and "not resolved K=1-2" in flat
    # 2% apart with tight runs: resolved, a rise
    rising = " ".join(part1(pd.concat([runs_frame(micro={1: 100.0 + d, 2: 102.0 + d, 4: 104.0 + d}, seeds=(s,))
                                        for s, d in ((1, -0.1), (2, 0.0), (3, 0.1))]).pipe(
        lambda f: build_sections(f)[0].table)))
    assert "resolved K=1-2 (higher at K=2), K=2-4 (higher at K=4)" in rising
    assert "Every step is resolved: the micro-iteration time rises with K." in rising
    assert "cannot separate the cost of adding into the gradients" in rising and "flat" not in rising


def test_part2_throughput_and_model_gap():
    micro = {1: 100.0, 8: 100.0}
    tracks = " ".join(part2(table_of(micro=micro, update={1: 0.107, 8: 0.807})))
    assert "Throughput at K=8 is 1.06x that of K=1 (634 vs 598 images/s)." in tracks
    assert "One run per K (throughput: K=1 598 images/s, K=8 634 images/s): one run orders nothing" in tracks
    assert "higher" not in tracks and "rises" not in tracks
    assert "tracks K x micro-iteration + optimizer step within 1.9% at every K (K=1 +1.9%, K=8 +0.2%" in tracks
    assert "agree within 1.1%" in tracks and "slower than its parts" not in tracks
    slow = " ".join(part2(table_of(micro=micro, update={1: 0.2, 8: 0.81})))
    assert "departs from K x micro-iteration + optimizer step by up to 90% (at K=1" in slow
    assert "1.98x" in slow and "slower than its parts" in slow
    # a gap of -27% at K=1 and +4..+8% elsewhere averages -2%, but says nothing systematic (a one-epoch CPU study)
    mixed = " ".join(part2(table_of(micro={1: 136.6, 2: 98.3, 4: 108.5, 8: 113.4},
                                    update={1: 0.1100, 2: 0.2130, 4: 0.4689, 8: 0.9898}), "cpu"))
    assert "The gap changes sign across K: these runs show no systematic difference" in mixed
    assert "faster than its parts" not in mixed and "slower than its parts" not in mixed


def test_part2_faster_than_its_parts_explained_by_the_device_the_runs_used():
    fast = dict(micro={1: 100.0, 8: 100.0}, update={1: 0.09, 8: 0.7})
    cpu = " ".join(part2(table_of(**fast, device_type="cpu"), "cpu"))
    assert "faster than its parts" in cpu and "synchronises the device" not in cpu
    assert "On this cpu device no timer synchronises anything" in cpu
    cuda = " ".join(part2(table_of(**fast, device_type="cuda"), "cuda"))
    assert "the micro-iteration timer synchronises the device at both ends of every micro-batch" in cuda
    # discussion() reads the device from the runs
    no_series = pd.DataFrame(columns=["run_id", "part", "k", "key", "step", "value"])
    said = discussion(build_sections(runs_frame(**fast, device_type="cuda"))[0], no_series)
    assert any("synchronises the device" in s for s in said["Part 2: update time and throughput"])


def test_one_seed_gives_the_values_orders_nothing_and_says_how_many_seeds_would():
    text = part3_text({1: [41.7], 2: [45.8], 4: [39.4], 8: [34.1]})
    assert "One seed per K (test accuracy: K=1 41.7%, K=2 45.8%, K=4 39.4%, K=8 34.1%): one seed orders nothing" \
        in text
    # the largest step, 6.4 points (K=2 -> 4), at sd 2: 4 seeds resolve it 60% of the time, 5 seeds 84%
    assert "If the largest step, K=2 to K=4 (6.4 points), were the true difference and the seed-to-seed std were " \
           "2 points at every K" in text and "5 seeds per K would resolve it in 80% of studies" in text
    for word in ("falls", "rises", "monoton", "expect", "depart", "resolved K"):
        assert word not in text, word


def test_identical_values_are_said_identical_not_resolved():
    text = part3_text({1: [40.23], 2: [40.23], 4: [38.82], 8: [36.18]})
    assert "K=1 and K=2 are identical (40.2%): no difference to resolve." in text
    several = part3_text({1: [40.0, 41.0], 2: [40.0, 41.0], 4: [30.0, 30.5]})
    assert "K=1 and K=2 are identical (40.5%)" in several and "resolved K=2-4 (lower at K=4)" in several
    assert "K=1-2" not in several.split("identical")[0]


def test_a_k_with_one_seed_beside_several_has_no_interval():
    text = part3_text({1: [40.0, 41.0, 42.0], 2: [38.0, 39.0, 40.0], 4: [25.0]})
    assert "seeds per K K=1: 3, K=2: 3, K=4: 1" in text
    assert "K=4 has one seed and so no interval: K=2-4 not judged." in text
    assert "not resolved K=1-2" in text and "K=2-4 (" not in text and "within the spread" not in text


def test_a_zero_width_interval_resolves_nothing():
    # three smoke seeds of K=2 all at 9.375%, K=4 0.0001 above with a spread: never 'resolved'
    text = part3_text({2: [9.375, 9.375, 9.375], 4: [9.3751, 9.3752, 9.3750]})
    assert "At K=2 every seed gave the same value, a zero-width interval that measures no spread: K=2-4 not " \
           "judged." in text
    assert "resolved K=2-4" not in text


def test_resolved_steps_make_the_trend_and_confirm_the_expectation():
    frame = seeds_frame({1: [50.0, 50.2, 49.8], 2: [45.0, 45.2, 44.8], 4: [40.0, 40.3, 39.7]})
    frame["final_train_loss"] = frame["k"] * 0.1 + frame["seed"] * 0.001
    table = build_sections(frame)[0].table.set_index("k")
    assert table.loc[1, "test_accuracy_ci"] == pytest.approx(stats.t.ppf(0.975, 2) * 0.2 / math.sqrt(3))
    text = " ".join(part3(table.reset_index(), pd.DataFrame(), 51_200, "the lr held at 0.1 for every K"))
    assert "Test accuracy, 3 seeds per K: resolved K=1-2 (lower at K=2), K=2-4 (lower at K=4)." in text
    assert "Every step is resolved: the test accuracy falls with K." in text
    assert "Every step is resolved: the final training loss rises with K." in text
    assert "With the lr held at 0.1 for every K, K times larger batches take K times fewer steps of the same size " \
           "over the same 51,200 images" in text and "These runs resolve it" in text
    assert "45.0 ± 0.5" in table_text(build_sections(frame)[0])  # the table shows the interval, not the std


def test_unresolved_steps_claim_no_trend_and_give_seeds_from_the_measured_spread():
    text = part3_text({1: [50.0, 47.0, 53.0], 2: [49.0, 46.0, 52.0]})
    assert "Test accuracy, 3 seeds per K: not resolved K=1-2." in text
    assert "No two K values are resolved apart: the test accuracy is flat within these intervals." in text
    assert "If its largest unresolved step, K=1-2 (1 points), were the true difference and the std were the " \
           "measured 3 points at both K" in text and "more than 50 seeds per K" in text
    assert "neither resolve it nor depart from it" in text and "falls" not in text


def test_a_resolved_step_against_the_expectation_departs():
    text = part3_text({1: [40.0, 40.2, 39.8], 2: [45.0, 45.2, 44.8]})
    assert "These runs depart from it, resolved: the test accuracy higher at K=2 than at K=1." in text
    frame = seeds_frame({1: [40.0, 40.2, 39.8], 2: [40.0, 40.5, 39.6], 4: [39.0, 39.3, 38.8]})
    frame["final_train_loss"] = 2.0 - frame["k"] * 0.1 + frame["seed"] * 0.001  # falls with K: resolved steps
    said = " ".join(part3(build_sections(frame)[0].table, pd.DataFrame(), None, "the lr held at 0.1 for every K"))
    assert "resolved: the final training loss lower at K=2 than at K=1, at K=4 than at K=1, at K=4 than at K=2." \
        in said


def test_the_lr_is_read_from_the_runs():
    runs = seeds_frame({1: [40.0, 41.0], 8: [30.0, 31.0]}, lr=0.05, lr_scaling="none")
    assert lr_words(runs, [1, 8]) == "the lr held at 0.05 for every K"
    linear = runs.assign(lr=0.1, lr_scaling="linear", warmup_epochs=1)
    assert lr_words(linear, [1, 8]) == ("the lr scaled linearly with K (0.1 x K: 0.1 at K=1 to 0.8 at K=8, after a "
                                        "warm-up of 1 epoch(s))")
    no_series = pd.DataFrame(columns=["run_id", "part", "k", "key", "step", "value"])
    said = " ".join(discussion(build_sections(linear)[0], no_series)["Part 3: convergence under a fixed epoch budget"])
    assert "scaled linearly with K" in said and "held at" not in said and "is not theirs to test" in said
    held = " ".join(discussion(build_sections(runs)[0], no_series)["Part 3: convergence under a fixed epoch budget"])
    assert "With the lr held at 0.05 for every K" in held and "0.1" not in held


def test_a_smoke_study_marks_every_sentence_of_parts_1_to_3():
    no_series = pd.DataFrame(columns=["run_id", "part", "k", "key", "step", "value"])
    frame = seeds_frame({1: [41.7], 2: [45.8]}).assign(final_train_loss=[1.6, 1.7])
    (smoke,) = build_sections(frame.assign(smoke=True))
    for part, sentences in discussion(smoke, no_series).items():
        if part.startswith("Part 4"):
            continue  # the interconnect model and DDP's figures are not about this data
        assert sentences[0].startswith("Smoke runs (tiny data): nothing here says anything about K. "), part
        assert all(s.startswith("Smoke runs") for s in sentences), part
        assert not any(s.startswith(("Smoke runs: k=", "Smoke runs: batchNorm")) for s in sentences), part
    assert _lowered("Micro-iteration time, 3 runs") == "micro-iteration time, 3 runs"
    assert _lowered("Throughput, 3 runs") == "throughput, 3 runs" and _lowered("K=1: x") == "K=1: x"
    (real,) = build_sections(frame)
    assert not any("Smoke" in s for s in sum(discussion(real, no_series).values(), []))


def test_discussion_changes_with_the_numbers():
    flat = discussion(build_sections(runs_frame(micro={1: 100.0, 8: 101.0}))[0], pd.DataFrame(
        columns=["run_id", "part", "k", "key", "step", "value"]))
    grown = discussion(build_sections(runs_frame(micro={1: 100.0, 8: 150.0}))[0], pd.DataFrame(
        columns=["run_id", "part", "k", "key", "step", "value"]))
    assert flat["Part 1: micro-iteration time"] != grown["Part 1: micro-iteration time"]
    assert "No update runs" in flat["Part 2: update time and throughput"][0]
    # Part 4 bounds N workers by N x the one worker Part 2 measured; no update runs here, so no bound is claimed
    assert not any("at most" in s for s in flat["Part 4: what real synchronous SGD adds"])


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
    assert untimed.table.loc[0, "update_n"] == 0 and untimed.missing == ["no micro runs in this setting",
                                                                         "no update runs in this setting"]
