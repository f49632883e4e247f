"""The study in one process: each part for each k (and seed) as child runs of one parent run, data loaded once.

Every sweep has a study id. A configuration whose FINISHED run already exists (same part, config and code
version) is not run again but tagged with the new study's id, so an interrupted sweep resumes where it stopped."""
from __future__ import annotations

import uuid

import click

from .config import Protocol
from .parts import Context
from .runner import config_key, execute
from .tracking import add_tags, find_finished_run, print_link, tracked_run


def study_tags(study: str) -> dict[str, str]:
    """A run belongs to every study whose `gradacc.study.<id>` tag it carries; `gradacc.study` is the latest."""
    return {"gradacc.study": study, f"gradacc.study.{study}": "1"}


def new_study_id() -> str:
    return uuid.uuid4().hex[:8]


def run_sweep(protocols: list[Protocol], parts: list[str], ctx: Context, given: dict[str, str],
              experiment: str | None = None, study: str | None = None, force: bool = False,
              after=None) -> str:
    """Runs (or reuses) every part of every protocol; `after(parent_run_id, study)` runs at the end (compare).

    Returns the study id."""
    study = study or new_study_id()
    smoke = any(p.smoke for p in protocols)
    name = "sweep" + ("-smoke" if smoke else "")
    tags = {"gradacc.part": "sweep", "gradacc.smoke": str(smoke).lower(), **study_tags(study)}
    ran = reused = 0
    with tracked_run(name, tags, experiment) as parent:
        parent.log_params(given, ctx.params())
        click.echo(f"sweep: study {study}, {len(protocols) * len(parts)} runs", err=True)
        child_given = {k: v for k, v in given.items()
                       if k not in ("ks", "parts", "repeats", "force", "study", "output")}
        for protocol in protocols:
            for part in parts:
                key = config_key(part, protocol, ctx)
                previous = None if force else find_finished_run(parent.experiment_id, key)
                if previous:
                    add_tags(previous, study_tags(study))
                    click.echo(f"{part}-k{protocol.k} seed {protocol.seed}: reusing finished run {previous}",
                               err=True)
                    reused += 1
                    continue
                execute(part, protocol, ctx, dict(child_given, k=str(protocol.k), seed=str(protocol.seed)),
                        experiment, parent_run_id=parent.run_id, tags=study_tags(study))
                ran += 1
        click.echo(f"sweep: study {study}: {ran} runs measured, {reused} reused", err=True)
        if after is not None:
            after(parent.run_id, study)
    print_link(parent.experiment_id, parent.run_id)
    return study
