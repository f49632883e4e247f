"""compare on synthetic runs: groups, newest per seed, mean ± std, K order, missing K, plots, report, CLI."""
from __future__ import annotations

import io
import math
import re

import click
import matplotlib.image
import pandas as pd
import pytest
from click.testing import CliRunner
from mlflow.tracking import MlflowClient

from gradacc.analysis.compare import (
    CompareError,
    build_sections,
    table_markdown,
    table_text,
    tables_csv,
    tables_markdown,
)
from gradacc.analysis.plots.compare import write_plots
from gradacc.analysis.report.html import render_report
from gradacc.cli.compare import compare
from gradacc.core.config import RESNET18_PARAMS
from gradacc.core.errors import GradaccError
from gradacc.study.compare import expected_from_sweeps, run_compare
from gradacc.tracking.results import EmptyResultWarning, load_runs, load_series
from tests.support.compare import SyntheticStore, fresh_store, runs_frame

KS = (1, 2, 4, 8, 16)


def micro_ms(k, seed):
    return 100.0 + 10.0 * (seed - 42)


def accuracy(k, seed):
    return 45.0 - 2.0 * math.log2(k) + (seed - 42)


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    """Study S (sweep asked for K 1..16): every part for K 1, 2, 4, 16 with seed 42, and K 1, 2 with seed 43
    too; K=8 has micro and converge but no update run; micro K=4 seed 42 repeated later (the newer wins).
    Also in S, kept apart or left out: torchvision-loader update runs, a smoke run, a FAILED run. Outside S:
    a micro run of K=1 seed 45."""
    with pytest.MonkeyPatch.context() as mp:
        fresh_store(tmp_path_factory.mktemp("compare"), mp)
        s = SyntheticStore()
        ids = {"sweep": s.sweep_run("S", KS)}
        ids.update(s.sweep(ks=(1, 2, 4, 16), seeds=(42,), study="S", micro_ms=micro_ms, accuracy=accuracy,
                           log_sweep_run=False))
        ids.update(s.sweep(ks=(1, 2), seeds=(43,), study="S", micro_ms=micro_ms, accuracy=accuracy,
                           log_sweep_run=False))
        for part in ("micro", "converge"):
            ids[part, 8, 42] = s.log(part, 8, micro_ms=100.0, accuracy=accuracy(8, 42), studies=("S",))
        ids["repeat"] = s.log("micro", 4, micro_ms=130.0, studies=("S",))
        ids["tv1"] = s.log("update", 1, loader="torchvision", micro_ms=100.0, update_extra_ms=50.0, studies=("S",))
        ids["tv8"] = s.log("update", 8, loader="torchvision", micro_ms=100.0, update_extra_ms=50.0, studies=("S",))
        ids["smoke"] = s.log("converge", 4, smoke=True, accuracy=99.0, studies=("S",))
        ids["failed"] = s.log("micro", 1, seed=44, micro_ms=999.0, status="FAILED", studies=("S",))
        ids["outside"] = s.log("micro", 1, seed=45, micro_ms=200.0)
        yield s, ids


@pytest.fixture(scope="module")
def sections(study):
    runs = load_runs(study="S", parts=None, statuses=None)
    assert expected_from_sweeps(runs) == (KS, ("micro", "update", "converge"))
    return build_sections(runs, *expected_from_sweeps(runs))


def test_groups_are_kept_apart(sections):
    assert len(sections) == 2
    device, tv = sections
    assert set(device.runs["loader"]) == {"device"} and set(tv.runs["loader"]) == {"torchvision"}
    assert "loader torchvision" in tv.label and tv.slug != device.slug
    row = tv.table.set_index("k").loc[1]
    assert row.update_n == 1 and row.update_time_s_mean == pytest.approx((100 + 5 + 50) / 1e3)
    # seeds 42 and 43 (0.107 and 0.117 s), never averaged with the torchvision loader's 0.155 s
    assert device.table.set_index("k").loc[1, "update_time_s_mean"] == pytest.approx(0.112)


def test_table_values_order_and_repeats(sections, study):
    _s, ids = study
    table = sections[0].table.set_index("k")
    assert list(table.index) == [1, 2, 4, 8, 16]  # numerically
    assert table.loc[1, "micro_n"] == 2  # seeds 42 and 43; the FAILED seed 44 and the run outside S left out
    assert table.loc[1, "micro_iter_ms_mean"] == pytest.approx(105.0)
    assert table.loc[1, "micro_iter_ms_mean_sd"] == pytest.approx(math.sqrt(50.0))
    assert table.loc[1, "test_accuracy"] == pytest.approx(45.5)
    assert table.loc[1, "test_accuracy_sd"] == pytest.approx(math.sqrt(0.5))
    assert table.loc[4, "micro_n"] == 1 and table.loc[4, "micro_iter_ms_mean"] == pytest.approx(130.0)  # newest
    assert math.isnan(table.loc[4, "micro_iter_ms_mean_sd"])
    assert table.loc[4, "test_accuracy"] == pytest.approx(accuracy(4, 42))  # the smoke run (99%) is left out
    assert table.loc[16, "effective_batch"] == 1024 and table.loc[16, "total_updates"] == 50
    assert table.loc[2, "throughput_img_s"] == pytest.approx((128 / 0.207 + 128 / 0.227) / 2)  # seeds 42, 43
    assert table.loc[8, "update_n"] == 0 and math.isnan(table.loc[8, "update_time_s_mean"])
    chosen = set(sections[0].runs["run_id"])
    assert ids["repeat"] in chosen and ids["micro", 4, 42] not in chosen
    (repeat,) = sections[0].repeats  # the left-out run is named, not silently dropped
    assert repeat.startswith("micro K=4, seed 42: 2 finished runs (130 ms, 100 ms, newest first); the newest")
    assert not {ids["failed"], ids["smoke"], ids["outside"], ids["sweep"]} & chosen


def test_missing_k_and_parts_reported(sections):
    device, tv = sections
    assert device.missing == ["no update runs for K=8 in this setting"]  # two settings: each line says whose
    assert tv.missing == ["no micro runs in this setting", "no update runs for K=2, 4, 16 in this setting",
                          "no converge runs in this setting"]
    assert "- no update runs for K=8 in this setting" in tables_markdown(sections)


def test_renderings(sections):
    md = table_markdown(sections[0])
    ks = [line.split("|")[1].strip() for line in md.splitlines()[2:]]
    assert ks == ["1", "2", "4", "8", "16"]
    assert "| 105.0 ± 63.5 |" in md and "| 45.5 ± 6.4 |" in md and "| 130.0 |" in md
    k8 = md.splitlines()[5].split("|")
    assert k8[5].strip() == "-" and k8[8].strip() == "1/0/1"
    text = table_text(sections[0])
    assert "105.0 ± 63.5" in text and len({len(line) for line in text.splitlines()}) == 1  # aligned
    csv = pd.read_csv(io.StringIO(tables_csv(sections)))
    assert list(csv.loc[csv["loader"] == "device", "k"]) == [1, 2, 4, 8, 16]
    assert list(csv.loc[csv["loader"] == "torchvision", "k"]) == [1, 8]


def test_plots_and_report(sections, study, tmp_path):
    series = load_series(pd.concat([s.runs for s in sections]), keys=("train_loss", "train_loss_update"))
    plots = {s.slug: write_plots(s, series, tmp_path / s.slug) for s in sections}
    assert set(plots[sections[0].slug]) == {"micro_time_vs_k", "throughput_vs_batch", "loss_vs_epoch",
                                            "update_time_vs_k", "accuracy_vs_k", "loss_vs_updates"}
    assert set(plots[sections[1].slug]) == {"throughput_vs_batch", "update_time_vs_k"}
    for path in plots[sections[0].slug].values():
        image = matplotlib.image.imread(path)
        assert image.shape[0] > 300 and image.shape[1] > 500 and image[..., :3].std() > 0.05
    page = render_report(sections, series, plots, "study S", "from a test")
    assert page.count("<img ") == 8 and page.count("data:image/png;base64,") == 8
    assert not re.search(r"src=['\"]?(https?:|file:|/)", page)  # self-contained
    _s, ids = study
    assert ids["repeat"] in page and ids["micro", 1, 43] in page
    assert ids["failed"] not in page and ids["smoke"] not in page and ids["micro", 4, 42] not in page
    assert "Test CPU (cpu), loader device" in page and "Test CPU (cpu), loader torchvision" in page
    assert "no update runs for K=8" in page and "Part 4: what real synchronous SGD adds" in page
    assert page.count("How the intervals are read") == 1 and "micro K=4, seed 42: 2 finished runs" in page


def test_run_compare_writes_and_logs(study, tmp_path, capsys):
    report = run_compare(None, "S", tmp_path / "out")
    out = capsys.readouterr().out
    assert report == tmp_path / "out" / "study-S" / "report.html" and report.stat().st_size > 10_000
    assert "105.0 ± 63.5" in out and "no update runs for K=8" in out
    files = {p.relative_to(report.parent).as_posix() for p in report.parent.rglob("*") if p.is_file()}
    assert {"report.html", "table.md", "table.csv", "plots/cpu-device-t2/micro_time_vs_k.png",
            "plots/cpu-torchvision-t2/throughput_vs_batch.png"} <= files
    client = MlflowClient()
    s, _ids = study
    logged = client.search_runs([s.exp_id], "tags.`gradacc.part` = 'compare' and tags.`gradacc.study.S` = '1'")
    assert len(logged) >= 1
    run = logged[0]
    assert run.info.run_name == "compare" and run.info.status == "FINISHED"
    assert run.data.params["study"] == "S" and run.data.metrics["settings"] == 2
    assert run.data.tags["mlflow.note.content"].startswith(
        f"Comparison of {int(run.data.metrics['runs_compared'])} runs (study S, 2 setting(s))")
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"report.html", "table.md", "table.csv", "plots"} <= artifacts
    assert load_runs(study="S", parts=["compare"]).shape[0] >= 1  # and compare leaves it out of the table
    assert "compare" not in set(build_sections(load_runs(study="S", parts=None))[0].runs["part"])


def test_whole_experiment_includes_runs_outside_the_study(study, tmp_path):
    _s, ids = study
    sections = build_sections(load_runs(parts=None))
    assert ids["outside"] in set(sections[0].runs["run_id"])
    assert sections[0].table.set_index("k").loc[1, "micro_n"] == 3


def test_empty_store_is_one_line(tmp_path, monkeypatch):
    fresh_store(tmp_path, monkeypatch)
    SyntheticStore()
    with pytest.raises(CompareError) as err:
        run_compare(None, None, tmp_path / "out")
    assert "no finished micro, update, converge runs to compare in experiment 'Default'" in str(err.value)
    assert "\n" not in str(err.value) and not (tmp_path / "out").exists()
    SyntheticStore().log("converge", 1, smoke=True)
    with pytest.raises(CompareError, match="1 smoke runs are left out: --include-smoke"):
        run_compare(None, None, tmp_path / "out", include_smoke=False)
    assert run_compare(None, None, tmp_path / "out", include_smoke=True, log=False).exists()
    assert run_compare(None, None, tmp_path / "out", log=False).exists()  # auto: no real run, so the smoke ones


def test_runs_in_another_experiment_are_named_in_the_error(tmp_path, monkeypatch):
    """A store from before runs shared MLflow's default experiment: the error says where the runs are."""
    fresh_store(tmp_path, monkeypatch)
    SyntheticStore("gradacc").log("converge", 1)
    with pytest.raises(CompareError, match="gradacc runs are in experiment 'gradacc': select it with "
                                           "--experiment 'gradacc'"):
        run_compare(None, None, tmp_path / "out")
    with pytest.warns(EmptyResultWarning, match=r"load_runs\(experiment='gradacc'\)"):
        assert load_runs().empty
    assert len(load_runs("gradacc")) == 1


def test_each_comparison_has_its_own_folder(tmp_path, monkeypatch, capsys):
    fresh_store(tmp_path, monkeypatch)
    store = SyntheticStore()
    for k in KS[:2]:
        store.log("converge", k, studies=("A",))
    store.log("converge", 1, studies=("B",))
    a = run_compare(None, "A", tmp_path / "out", log=False)
    b = run_compare(None, "B", tmp_path / "out", log=False)
    whole = run_compare(None, None, tmp_path / "out", log=False)
    assert [a, b, whole] == [tmp_path / "out" / f / "report.html" for f in ("study-A", "study-B",
                                                                             "experiment-Default")]
    assert "replacing" not in capsys.readouterr().err
    stale = a.parent / "plots" / "stale.png"
    stale.write_bytes(b"")
    assert run_compare(None, "A", tmp_path / "out", log=False) == a
    assert "(replacing the comparison written there 20" in capsys.readouterr().err
    assert not stale.exists() and a.exists() and b.exists()


def test_cli_errors_are_one_line(tmp_path, monkeypatch, capsys):
    """Through the real entry point, with `compare` registered as the lead's cli.add_command will."""
    from gradacc import cli as cli_module
    fresh_store(tmp_path, monkeypatch)
    monkeypatch.setitem(cli_module.cli.commands, "compare", compare)
    for args, message in ((["--experiment", "nowhere"], "no experiment 'nowhere'"),
                          (["--output", str(tmp_path / "o")], "no finished micro, update, converge runs")):
        SyntheticStore()
        with pytest.raises(SystemExit) as exit_:
            cli_module.main(["compare", *args])
        err = capsys.readouterr().err.strip()
        assert exit_.value.code == 1 and "\n" not in err and "Traceback" not in err
        assert err.startswith(f"gradacc: error: {message}")


def test_output_folder_not_writable(study, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with pytest.raises(CompareError, match="cannot write the comparison to") as err:
        run_compare(None, "S", blocker / "out", log=False)
    assert "\n" not in str(err.value) and isinstance(err.value, GradaccError)


def test_cli_command(study, tmp_path):
    result = CliRunner().invoke(compare, ["--study", "S", "--output", str(tmp_path / "cli"),
                                          "--include-smoke", "false"], catch_exceptions=False)
    assert result.exit_code == 0 and "105.0 ± 63.5" in result.output
    assert (tmp_path / "cli" / "study-S" / "report.html").exists()
    assert isinstance(compare, click.Command) and compare.name == "compare"


def test_resnet18_parameter_count():
    torchvision = pytest.importorskip("torchvision")
    model = torchvision.models.resnet18(num_classes=10)
    assert RESNET18_PARAMS == sum(p.numel() for p in model.parameters())


def test_variant_device_and_threads_are_group_keys():
    base = runs_frame(micro={1: 100.0, 2: 100.0})
    gpu = base.assign(device_type="cuda", device_name="GPU", tf32_conv=False)
    other = [base.assign(variant="nosyncbn"), gpu, gpu.assign(tf32_conv=True), base.assign(torch_threads=1)]
    frame = pd.concat([base] + [o.assign(run_id=o["run_id"] + f"-{i}") for i, o in enumerate(other)],
                      ignore_index=True)
    sections = build_sections(frame)
    assert len(sections) == 5 and all(list(s.table["micro_n"]) == [1, 1] for s in sections)
    assert len({s.slug for s in sections}) == 5
    assert any("variant nosyncbn" in s.label for s in sections)
    assert sum("TF32 convolutions" in s.label for s in sections) == 1  # --tf32 on and off never averaged


def test_command_line_is_light():
    """The CLI with every command registered imports no mlflow, pandas, matplotlib or torch at startup."""
    import subprocess
    import sys
    code = ("import sys, gradacc.cli; "
            "print(sorted(m for m in ('mlflow', 'pandas', 'matplotlib', 'torch') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
