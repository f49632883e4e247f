"""The study in one process: each part for each k (and seed) as child runs of one parent run, data loaded once.

Every sweep has a study id. A configuration whose FINISHED run already exists (same part, config and code
version) is not run again but tagged with the new study's id, so an interrupted sweep resumes where it stopped."""
from __future__ import annotations

import uuid

from gradacc.core.config import Protocol
from gradacc.names import NOTE, STUDY, SWEEP, part_tags, run_name, study_tags
from gradacc.parts.context import Context
from gradacc.study.console import say
from gradacc.study.run import config_key, execute
from gradacc.tracking.runs import add_tags, copies_of, find_finished_run, print_link, tracked_run


def new_study_id() -> str:
    return uuid.uuid4().hex[:8]


def run_sweep(protocols: list[Protocol], parts: list[str], ctx: Context, given: dict[str, str],
              experiment: str | None = None, study: str | None = None, force: bool = False,
              after=None) -> str:
    """Runs (or reuses) every part of every protocol; `after(parent_run_id, study)` runs at the end (compare).

    Returns the study id."""
    study = study or new_study_id()
    smoke = any(p.smoke for p in protocols)
    name = SWEEP + ("-smoke" if smoke else "")
    tags = {**part_tags(SWEEP, smoke), **study_tags(study)}
    ran = reused = 0
    with tracked_run(name, tags, experiment) as parent:
        parent.log_params(given, ctx.params())
        say(f"sweep: study {study}, {len(protocols) * len(parts)} runs")
        child_given = {k: v for k, v in given.items()
                       if k not in ("ks", "parts", "repeats", "force", "study", "output")}
        for protocol in protocols:
            for part in parts:
                key = config_key(part, protocol, ctx)
                previous = None if force else find_finished_run(parent.experiment_id, key)
                if previous:
                    add_tags(previous, study_tags(study))
                    say(f"{run_name(part, protocol.k, protocol.smoke)} seed {protocol.seed}: reusing finished run "
                        f"{previous}")
                    reused += 1
                    continue
                execute(part, protocol, ctx, dict(child_given, k=str(protocol.k), seed=str(protocol.seed)),
                        experiment, parent_run_id=parent.run_id, tags=study_tags(study))
                ran += 1
        say(f"sweep: study {study}: {ran} runs measured, {reused} reused")
        ks = sorted({p.k for p in protocols})
        seeds = sorted({p.seed for p in protocols})
        note = (f"Study {study}: {', '.join(parts)} for K = {', '.join(map(str, ks))}, seed(s) "
                f"{', '.join(map(str, seeds))}{' (smoke)' if smoke else ''}; {ran} runs measured, {reused} reused. "
                f"Its runs: filter tags.`{STUDY}.{study}` = '1'.")
        parent.set_tags({NOTE: note})
        parent.log_metrics({}, {"runs_measured": ran, "runs_reused": reused})
        if after is not None:
            report = after(parent.run_id, study)
            if report is not None:  # the study's table and report on the parent too, so that it is not empty
                parent.set_tags({NOTE: note + f" Report: {report} (also an artifact of this run and of its "
                                              "compare run)."})
                parent.log_files({}, writers=[copies_of([report, report.with_name("table.md")], report.parent)])
    print_link(parent.experiment_id, parent.run_id)
    return study
