"""Words of the report read from the runs, not written in: which runs exist, how many updates were averaged,
how many epochs, which of several runs of one seed is taken, and how a command is shown in the HTML."""
from __future__ import annotations

import pandas as pd

from gradacc.analysis.compare import build_sections, notes
from gradacc.analysis.plots.compare import window_label
from gradacc.analysis.report.claims import MEANING
from gradacc.analysis.report.html import prose, render_report
from gradacc.analysis.report.noise import noise_sentences, variant_sentences
from gradacc.analysis.text import esc
from tests.support.compare import runs_frame


def test_the_update_plot_says_what_its_mean_averages():
    table = build_sections(runs_frame(update={1: 0.1, 8: 0.8}))[0].table
    assert window_label(table) == "measured update, middle 60%"  # U = 800 and 100
    assert window_label(table.assign(total_updates=4)) == "measured update, all U=4 (too few to trim)"
    assert window_label(table.assign(total_updates=[16, 2])) == "measured update, middle 60% (all updates where U < 5)"


def test_a_command_in_a_sentence_is_code_not_backticks():
    html = prose("No real DDP runs (`gradacc ddp --workers N` adds them) & more.")
    assert html == "No real DDP runs (<code>gradacc ddp --workers N</code> adds them) &amp; more."
    assert "`" not in prose("`a` and `b<c`") and "<code>b&lt;c</code>" in prose("`b<c`")


def noise_series(runs: pd.DataFrame, epochs: int) -> pd.DataFrame:
    rows = [(r.run_id, "converge", r.k, "noise_scale_simple_epoch", e, 100.0 * e)
            for r in runs[runs["part"] == "converge"].itertuples() if r.k >= 2 for e in range(1, epochs + 1)]
    return pd.DataFrame(rows, columns=["run_id", "part", "k", "key", "step", "value"]).astype({"k": "Int64"})


def test_the_noise_scale_names_its_epochs_and_the_runs_lr():
    (section,) = build_sections(runs_frame(accuracy={2: 40.0, 4: 38.0}, epochs=1, lr=0.05, lr_scaling="none"))
    one = " ".join(noise_sentences(section, noise_series(section.runs, 1)))
    assert "in epoch 1: K=2: 100; K=4: 100." in one and "1..1" not in one
    assert "holds the lr at 0.05 for every K" in one and "0.1" not in one
    (five,) = build_sections(runs_frame(accuracy={2: 40.0, 4: 38.0}))
    assert "per epoch 1..5: K=2: 100, 200, 300, 400, 500" in " ".join(noise_sentences(five, noise_series(five.runs, 5)))


def test_several_runs_of_one_seed_say_which_is_taken():
    older = runs_frame(update={4: 2.59})
    newer = runs_frame(update={4: 2.08}).assign(start_time=older["start_time"] + pd.Timedelta(hours=1),
                                                run_id="newer")
    (section,) = build_sections(pd.concat([older, newer], ignore_index=True), expected_ks=(4,),
                                expected_parts=("update",))
    assert section.table.loc[0, "update_time_s_mean"] == 2.08
    assert section.repeats == ["update K=4, seed 42: 2 finished runs (2.08 s, 2.59 s, newest first); the newest, "
                               "started 2026-01-01 01:00 UTC, is taken (the latest code), not their mean: the "
                               "intervals are over seeds, one run each"]
    assert section.repeats[0] in notes(section)
    (single,) = build_sections(older, expected_ks=(4,), expected_parts=("update",))
    assert single.repeats == []


def test_a_setting_without_a_part_says_so_without_listing_other_settings_k():
    # a lone K=3 converge run in a setting of its own (another epoch count) beside a full study
    study = runs_frame(micro={1: 100.0, 2: 100.0}, update={1: 0.1, 2: 0.2}, accuracy={1: 40.0, 2: 39.0})
    lone = runs_frame(accuracy={3: 30.0}, epochs=1).assign(run_id="lone")
    full, three = build_sections(pd.concat([study, lone], ignore_index=True), expected_ks=(1, 2))
    assert full.missing == []
    assert three.missing == ["no micro runs in this setting", "no update runs in this setting",
                             "no converge runs for K=1, 2 in this setting"]
    (partial,) = build_sections(pd.concat([study, runs_frame(accuracy={3: 30.0})], ignore_index=True),
                                expected_ks=(1, 2))
    assert partial.missing == ["no micro runs for K=3", "no update runs for K=3"]  # one setting: no 'in this'


def test_the_meaning_of_the_intervals_is_said_once():
    sections = build_sections(pd.concat([runs_frame(accuracy={1: 40.0}),
                                         runs_frame(accuracy={1: 40.0}, loader="torchvision")]))
    page = render_report(sections, pd.DataFrame(columns=["run_id", "part", "k", "key", "step", "value"]),
                         {}, "t", "src")
    assert len(sections) == 2 and page.count(esc(MEANING)) == 1
    assert "conservative test" in MEANING and "not shown equal" in MEANING


def test_a_variant_narrows_the_gap_only_where_the_intervals_resolve_it():
    def seeds(accuracy, variant):
        frames = [runs_frame(accuracy={k: v[i] for k, v in accuracy.items()}, seeds=(42 + i,)) for i in range(3)]
        return pd.concat(frames, ignore_index=True).assign(variant=variant)

    protocol = seeds({1: [44.0, 44.2, 43.8], 8: [36.0, 36.2, 35.8]}, "protocol")  # an 8-point gap
    tight = seeds({1: [44.0, 44.2, 43.8], 8: [42.0, 42.2, 41.8]}, "lr=linear")  # 2 points
    loose = seeds({1: [44.0, 48.0, 40.0], 8: [42.0, 46.0, 38.0]}, "lr=linear")
    base, variant = build_sections(pd.concat([protocol, tight], ignore_index=True))
    said = " ".join(variant_sentences(variant, base))
    assert "the variant narrows the gap by 6.0 points, resolved (95% interval ± " in said
    base, variant = build_sections(pd.concat([protocol, loose], ignore_index=True))
    said = " ".join(variant_sentences(variant, base))
    assert "the two gaps differ by 6.0 points, within the 95% interval of that difference" in said
    assert "narrows" not in said
