"""The comparison (`gradacc compare`, and the end of every sweep): the store's runs -> table, plots and HTML
report in a folder, logged as a `compare` run."""
from __future__ import annotations

import re
import shutil
import time
from datetime import datetime, timezone
from pathlib import Path

import pandas as pd

from gradacc.analysis.commmodel.check import DDP_CHECK_KEYS
from gradacc.analysis.compare import (
    LOSS_KEYS,
    NOISE_KEYS,
    CompareError,
    Section,
    build_sections,
    tables_csv,
    tables_markdown,
    tables_text,
)
from gradacc.analysis.plots.compare import write_plots
from gradacc.analysis.plots.critical import TRADEOFF_PNG, UPDATES_PNG, plot_tradeoff, plot_updates
from gradacc.analysis.report.critical import CriticalGroup, critical_groups, critical_html, critical_text
from gradacc.analysis.report.html import render_report
from gradacc.analysis.report.noise import noise_summary_text
from gradacc.analysis.report.part4 import matching_ddp
from gradacc.core.config import DEFAULT_KS
from gradacc.names import ALLREDUCE, COMPARE, COMPARE_OUTPUT, NOTE, PARTS, part_tags, study_tags
from gradacc.study.console import say
from gradacc.study.folders import cannot_write, check_writable
from gradacc.tracking.experiments import experiment_id, others_with_runs, where_else
from gradacc.tracking.orphans import orphan_names
from gradacc.tracking.results import load_runs, load_series, resolve_experiments, smoke_choice
from gradacc.tracking.runs import copies_of, print_link, tracked_run


def expected_from_sweeps(runs: pd.DataFrame) -> tuple[tuple[int, ...], tuple[str, ...]]:
    """The K values and parts that the study's sweep run(s) asked for; the protocol's where there is none."""
    sweeps = runs[runs["part"] == "sweep"]
    ks, parts = set(), set()
    for value in sweeps["ks"].dropna():
        ks |= {int(k) for k in str(value).split(",") if k.strip().isdigit()}
    for value in sweeps["parts"].dropna():
        parts |= {p.strip() for p in str(value).split(",") if p.strip() in PARTS}
    return tuple(sorted(ks)) or DEFAULT_KS, tuple(p for p in PARTS if p in parts) or PARTS


OUTPUT_NAMES = ("report.html", "table.md", "table.csv", "plots")  # what write_outputs writes


def _write(path: Path, content: str | bytes, written: list[Path]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content, encoding="utf-8")
    written.append(path)


def check_output_folder(output_dir: Path) -> None:
    """Before the runs are loaded (or a sweep measures): the comparison's folder can be written."""
    check_writable(output_dir, "the comparison", CompareError)


def output_folder(output_dir: str | Path, study: str | None, experiment: str) -> Path:
    """One folder per study (or per experiment, when no study is chosen), so that no comparison overwrites
    another's: compare-output/study-<id>/, compare-output/experiment-<name>/."""
    label = f"study-{study}" if study else "experiment-" + re.sub(r"[^\w.-]+", "-", experiment).strip("-")
    return Path(output_dir) / label


def clear_previous(folder: Path) -> str | None:
    """Removes the files of an earlier comparison in folder (only the names compare writes, so that no stale
    plot of a setting that is gone stays beside the new ones); returns when that comparison was written."""
    previous = [folder / name for name in OUTPUT_NAMES if (folder / name).exists()]
    if not previous:
        return None
    when = datetime.fromtimestamp(max(p.stat().st_mtime for p in previous), timezone.utc)
    try:
        for path in previous:
            shutil.rmtree(path) if path.is_dir() else path.unlink()
    except OSError as err:
        raise CompareError(f"cannot replace the comparison in {folder}: {err.strerror or type(err).__name__}"
                           f"{' (' + str(err.filename) + ')' if err.filename else ''}") from None
    return when.strftime("%Y-%m-%d %H:%M UTC")


def write_critical_plots(groups: list[CriticalGroup], output_dir: Path) -> list[Path]:
    """The critical part's two plots per group: in plots/ for one group, plots/<group>/ for several."""
    for group in groups:
        folder = output_dir / "plots" / (group.slug if len(groups) > 1 else "")
        group.plots = {"critical_updates": plot_updates(group.points, group.fit, group.title, folder / UPDATES_PNG),
                       "critical_tradeoff": plot_tradeoff(group.points, group.fit, group.title,
                                                          folder / TRADEOFF_PNG)}
    return [path for group in groups for path in group.plots.values()]


def write_outputs(sections: list[Section], series: pd.DataFrame, output_dir: Path, title: str,
                  source: str, critical: list[CriticalGroup] = ()) -> tuple[Path, list[Path]]:
    """Plots (plots/ for one setting, plots/<setting>/ for several), table.md, table.csv, report.html; the
    critical part's plots and section where `critical` has groups."""
    written: list[Path] = []
    try:
        output_dir.mkdir(parents=True, exist_ok=True)
        plots = {}
        for section in sections:
            folder = output_dir / "plots" / (section.slug if len(sections) > 1 else "")
            plots[section.slug] = write_plots(section, series, folder)
            written += plots[section.slug].values()
        written += write_critical_plots(list(critical), output_dir)
        _write(output_dir / "table.md", tables_markdown(sections, title), written)
        _write(output_dir / "table.csv", tables_csv(sections), written)
        report = output_dir / "report.html"
        _write(report, render_report(sections, series, plots, title, source, critical_html(list(critical))),
               written)
    except OSError as err:
        raise CompareError(cannot_write("the comparison", output_dir, err)) from None
    return report, written


def _log_compare_run(name: str, study: str | None, output_dir: Path, written: list[Path],
                     sections: list[Section], include_smoke: bool, parent_run_id: str | None,
                     started_ms: int) -> None:
    tags = part_tags(COMPARE, include_smoke)
    if study:
        tags.update(study_tags(study))
    # opened once the outputs exist (a compare that fails leaves no run), dated from when its work began
    with tracked_run(COMPARE, tags, experiment_id(name), parent_run_id, start_ms=started_ms) as run:
        run.log_params({"study": study or "all", "output": str(output_dir)},
                       {"experiment": name, "include_smoke": str(include_smoke).lower()})
        compared = sum(len(s.runs) for s in sections)
        run.log_metrics({}, {"runs_compared": compared, "settings": len(sections)})
        run.log_files({}, writers=[copies_of(written, output_dir)])
        run.set_tags({NOTE: f"Comparison of {compared} runs ({'study ' + study if study else 'experiment ' + name}"
                            f", {len(sections)} setting(s)): the summary table, plots and report.html, in "
                            f"this run's artifacts and in {output_dir}."})
    print_link(run.experiment_id, run.run_id)


def _why_nothing(exp_id: str, study: str | None, include_smoke: bool) -> str:
    """Where the runs the user probably meant are: smoke runs left out, or another experiment."""
    if not include_smoke:
        smoke = load_runs(exp_id, study=study, parts=PARTS, include_smoke=True)
        if len(smoke):
            return f"; {len(smoke)} smoke runs are left out: --include-smoke (-P include_smoke=true) compares them"
    return "" if study else where_else(others_with_runs([exp_id]))


def run_compare(experiment: str | None = None, study: str | None = None,
                output_dir: str | Path = COMPARE_OUTPUT, parent_run_id: str | None = None,
                include_smoke: bool | str = "auto", log: bool = True) -> Path:
    """Compare the experiment's (or one study's) runs: print the table, write plots, table.md, table.csv and
    report.html to output_dir, log them as artifacts of a `compare` run (child of parent_run_id if given).
    Returns the report's path. Raises CompareError (a GradaccError) when there is nothing to compare."""
    started_ms = int(time.time() * 1000)  # the compare run's start: its Duration covers the reading and writing
    study = study or None
    (exp_id, name), = resolve_experiments(experiment)
    runs = load_runs(exp_id, study=study, parts=None, include_smoke=True, statuses=None)
    where = f"in experiment {name!r}" + (f" for study {study!r}" if study else "")
    if orphaned := orphan_names(exp_id, study):  # RUNNING, their process gone: never FINISHED, so left out
        say(f"compare: leaving out {len(orphaned)} run(s) left RUNNING by a process that no longer exists: "
            f"{', '.join(orphaned)} (a `gradacc sweep --study <id>` that resumes their study ends them KILLED)")
    include_smoke = smoke_choice(include_smoke)
    if include_smoke == "auto":  # the real runs; the smoke runs where there is no real one (never both)
        real = runs[~runs["smoke"] & runs["part"].isin(PARTS) & (runs["status"] == "FINISHED")]
        include_smoke = real.empty and bool((runs["smoke"] & runs["part"].isin(PARTS)).any())
        if include_smoke:
            say(f"compare: no full-protocol runs {where}; comparing the smoke runs (tiny data: their figures "
                "say nothing about K)")
    if not include_smoke:
        runs = runs[~runs["smoke"]].reset_index(drop=True)
    expected_ks, expected_parts = expected_from_sweeps(runs) if study else (DEFAULT_KS, PARTS)
    try:
        sections = build_sections(runs, expected_ks, expected_parts, where=where)
    except CompareError as err:
        raise CompareError(str(err) + _why_nothing(exp_id, study, include_smoke)) from None
    chosen = pd.concat([s.runs for s in sections], ignore_index=True)
    series = load_series(chosen[chosen["part"].isin(["converge", "micro"])],
                         keys=LOSS_KEYS + NOISE_KEYS + ("micro_iter_ms",))
    # Part 4: DDP runs of any study, matched by setting, with their per-rank times; the all-reduce benchmarks
    ddp_runs = load_runs(exp_id, parts=["ddp", ALLREDUCE], include_smoke=include_smoke)
    if len(ddp_runs):
        series = pd.concat([series, load_series(ddp_runs[ddp_runs["part"] == "ddp"], keys=DDP_CHECK_KEYS)])
    for section in sections:
        section.ddp = matching_ddp(ddp_runs, section.setting)
    title = f"gradacc study {study}" if study else f"gradacc experiment {name}"
    now = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    source = (f"From experiment {name!r} (id {exp_id}){', study ' + repr(study) if study else ''}: "
              f"{len(chosen)} runs in {len(sections)} setting(s); generated {now}.")
    critical = critical_groups(runs)  # the critical part's children, where the experiment (study) has any
    output_dir = output_folder(output_dir, study, name)
    replaced = clear_previous(output_dir)
    report, written = write_outputs(sections, series, output_dir, title, source, critical)
    say(f"compare: {source}")
    print(tables_text(sections), end="")
    print(noise_summary_text(sections), end="")
    print(critical_text(critical), end="")
    say(f"compare: report {report}; plots and tables in {output_dir}"
        + (f" (replacing the comparison written there {replaced})" if replaced else ""))
    if log:
        _log_compare_run(name, study, output_dir, written, sections, include_smoke, parent_run_id, started_ms)
    return report
