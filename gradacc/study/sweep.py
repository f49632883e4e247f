"""The study: each part for each k (and seed) as child runs of one parent run, data loaded once per process.

Every sweep has a study id. A configuration whose FINISHED run already exists (same part, config and code
version) is not run again but tagged with the new study's id, so an interrupted sweep resumes where it stopped.

One sweep, `run_sweep`, in one process (a world of one, `Alone`) or spread over several (gradacc/distributed/spread.py
gives rank 0 the other ranks): it opens the parent (`sweep_parent`), finds what is already measured (`pending`),
splits the rest (`assign`), runs its share (`run_share`, as every rank does) and closes the parent over every rank's
`Outcome`."""
from __future__ import annotations

import traceback
import uuid
from contextlib import contextmanager
from dataclasses import dataclass, field

from gradacc.core.errors import GradaccError
from gradacc.core.request import Request
from gradacc.names import NOTE, STUDY, SWEEP, WORLD_SIZE, part_tags, study_tags
from gradacc.parts.context import Context
from gradacc.study.console import say
from gradacc.study.figures import PlotsLater, finish_drawing
from gradacc.study.plan import Config, Together, assign, configurations, run_count, seed_labels
from gradacc.study.run import config_key, execute, execute_together, plot_if_missing, subset_inputs
from gradacc.tracking.orphans import end_orphans
from gradacc.tracking.runs import add_tags, copies_of, find_finished_run, one_line, print_link, tracked_run

# options of the parent, not of its children
SWEEP_ONLY = ("ks", "parts", "repeats", "seeds_together", "force", "study", "output")


def new_study_id() -> str:
    return uuid.uuid4().hex[:8]


@dataclass
class Outcome:
    """What one process did with its share: labels of the runs it measured and reused, and where it stopped: the
    configuration that failed (None: the process could not start) and why, and what it therefore did not run."""

    rank: int = 0
    ran: list[str] = field(default_factory=list)
    reused: list[str] = field(default_factory=list)
    failed: str | None = None
    why: str | None = None
    not_run: list[str] = field(default_factory=list)

    def failure(self) -> str | None:
        if self.why is None:
            return None
        what = f"{self.failed} failed on rank {self.rank}" if self.failed else f"rank {self.rank} could not start"
        return f"{what} ({self.why})" + (f", so it did not run {', '.join(self.not_run)}" if self.not_run else "")


def reuse(config: Config, ctx: Context, exp_id: str, study: str, timed: bool = True) -> str | None:
    """The FINISHED run of the same configuration, tagged with the study; None when there is none. A seed trained
    together (`timed=False`) may also reuse a run of the same seed alone, which has everything and its timings."""
    keys = [config_key(config.part, config.protocol, ctx, timed=False)] if not timed else []
    for key in keys + [config_key(config.part, config.protocol, ctx)]:
        previous = find_finished_run(exp_id, key)
        if previous:
            add_tags(previous, study_tags(study))
            say(f"{config.label}: reusing finished run {previous}")
            if plot_if_missing(previous, exp_id, config.part):  # its sweep was killed before it drew the plots
                say(f"{config.label}: drew the plot run {previous} lacked")
            return previous
    return None


def still_to_run(unit: Config | Together, ctx: Context, request: Request,
                 reused: list[str]) -> Config | Together | None:
    """The part of `unit` not measured yet (None: all of it was), the labels of what is reused added to `reused`."""
    if request.force:
        return unit
    exp_id, study = request.experiment_id, request.study
    if isinstance(unit, Config):
        if reuse(unit, ctx, exp_id, study):
            reused.append(unit.label)
            return None
        return unit
    left = []
    for protocol in unit.protocols:
        seed = Config(unit.part, protocol)
        if reuse(seed, ctx, exp_id, study, timed=False):
            reused.append(seed.label)
        else:
            left.append(protocol)
    return Together(tuple(left)) if left else None


def pending(units: list[Config | Together], ctx: Context,
            request: Request) -> tuple[list[Config | Together], list[str]]:
    """What is still to measure, and the labels of the runs reused (tagged with the study)."""
    todo, reused = [], []
    for unit in units:
        left = still_to_run(unit, ctx, request, reused)
        if left is not None:
            todo.append(left)
    return todo, reused


def reason(err: BaseException) -> str:
    return one_line(err) if isinstance(err, GradaccError) else f"{type(err).__name__}: {one_line(err)}"


def run_share(configs: list[Config | Together], ctx: Context, request: Request, parent_run_id: str, outcome: Outcome,
              tags: dict[str, str] | None = None, keep_failure: bool = False,
              plots: PlotsLater | None = None) -> Outcome:
    """Runs (or reuses) each configuration as a child of the parent, in the request's experiment and study. A
    failure propagates (the run ends FAILED), or with `keep_failure` stops this share and is kept in the outcome:
    the other ranks of a spread sweep go on. The runs' PNGs are drawn after the last configuration, not between
    two: with `plots`, by a child process while the caller goes on (it then calls study/figures.finish_drawing);
    without, here before returning."""
    plots_later = plots if plots is not None else PlotsLater(overlap=ctx.runtime.is_cuda)
    try:
        for index, unit in enumerate(configs):
            try:
                config = still_to_run(unit, ctx, request, outcome.reused)
                if config is None:
                    continue
                run_tags = {**study_tags(request.study), **(tags or {})}
                if isinstance(config, Together):
                    execute_together(list(config.protocols), ctx, request, parent_run_id, run_tags, plots_later)
                else:
                    execute(config.part, config.protocol, ctx, request, parent_run_id, run_tags, plots_later)
            except Exception as err:
                if not keep_failure:
                    raise
                if not isinstance(err, GradaccError):  # a bug, not a failure the user caused: keep its traceback
                    traceback.print_exc()
                outcome.failed, outcome.why = unit.label, reason(err)
                outcome.not_run = [c.label for c in configs[index + 1:]]
                say(f"sweep: {outcome.failure()}; rank 0 reports it at the end")
                break
            outcome.ran += seed_labels(config)
            plots_later.configuration_done()
    finally:
        if plots is None:
            finish_drawing(plots_later)
        else:
            plots_later.start()
    return outcome


@contextmanager
def sweep_parent(request: Request, ctx: Context, world: int = 1):
    """The study's parent run (its children are the configurations' runs), opened and always closed; it carries
    the subsets its children use as dataset inputs too, so the study's data shows in the runs table's row."""
    smoke, study = request.smoke, request.study
    tags = {**part_tags(SWEEP, smoke), **study_tags(study), **({WORLD_SIZE: str(world)} if world > 1 else {})}
    with tracked_run(SWEEP + ("-smoke" if smoke else ""), tags, request.experiment_id) as parent:
        ended = end_orphans(study, f"the sweep that resumed study {study} (run {parent.run_id})")
        if ended:
            say(f"sweep: study {study}: ended KILLED {len(ended)} run(s) left RUNNING by a process that no longer "
                f"exists: {', '.join(ended)}")
        parent.log_params(request.given_params(), ctx.params())
        parent.log_inputs(subset_inputs(request.protocol, ctx, request.parts))
        yield parent
    print_link(parent.experiment_id, parent.run_id)


def close_parent(parent, request: Request, outcomes: list[Outcome], after=None, spread: str = ""):
    """The study's description and counts on the parent, then `after(parent_run_id, study)` (compare)."""
    study = request.study
    ran, reused = (sum(len(getattr(o, what)) for o in outcomes) for what in ("ran", "reused"))
    say(f"sweep: study {study}: {ran} runs measured, {reused} reused")
    ks = sorted({p.k for p in request.protocols})
    seeds = sorted({p.seed for p in request.protocols})
    smoke = request.smoke
    note = (f"Study {study}: {', '.join(request.parts)} for K = {', '.join(map(str, ks))}, seed(s) "
            f"{', '.join(map(str, seeds))}{' (smoke)' if smoke else ''}{spread}; {ran} runs measured, {reused} "
            f"reused. Its runs: filter tags.`{STUDY}.{study}` = '1'.")
    parent.set_tags({NOTE: note})
    parent.log_metrics({}, {"runs_measured": ran, "runs_reused": reused})
    if after is not None:
        report = after(parent.run_id, study)
        if report is not None:  # the study's table and report on the parent too, so that it is not empty
            parent.set_tags({NOTE: note + f" Report: {report} (also an artifact of this run and of its "
                                          "compare run)."})
            parent.log_files({}, writers=[copies_of([report, report.with_name("table.md")], report.parent)])


class Alone:
    """The ranks of a sweep run in one process: a world of one, with nothing to send or gather. A failure is not kept
    in its outcome but propagates (the run and the parent end FAILED, the command says why)."""

    world = 1
    Failed = GradaccError

    def send(self, plan: dict) -> None:
        pass

    def gather(self, outcome: Outcome) -> tuple[list[Outcome], str | None]:
        return [outcome], None

    def tags(self, rank: int) -> dict[str, str]:
        return {}

    def failure_line(self, outcomes: list[Outcome], lost: str | None) -> str | None:
        return None


def run_sweep(request: Request, ctx: Context, after=None, together: bool = False, ranks=None) -> str:
    """Runs (or reuses) every part of every protocol of the request (`together`: see `configurations`), split over
    `ranks` (a spread sweep's rank 0: gradacc/distributed/spread.py) or in this process alone; `after(parent_run_id,
    study)` runs at the end (compare). Returns the study id (the request's, or a new one)."""
    ranks = ranks or Alone()
    world, request = ranks.world, request.in_study(request.study or new_study_id())
    configs = configurations(list(request.protocols), list(request.parts), together)
    with sweep_parent(request, ctx, world) as parent:
        todo, reused = pending(configs, ctx, request)
        load = assign(todo, world)
        shares = [[unit for unit, r in zip(todo, load) if r == rank] for rank in range(world)]
        ranks.send({"request": request, "parent": parent.run_id, "shares": shares})
        say(f"sweep: study {request.study}, {run_count(configs)} runs"
            + (f" over {world} processes" if world > 1 else "") + f", {len(reused)} reused")
        for rank, share in enumerate(shares if world > 1 else []):
            say(f"sweep: rank {rank} runs " + (", ".join(unit.label for unit in share) or "nothing"))
        plots = PlotsLater(overlap=ctx.runtime.is_cuda)
        try:
            outcome = run_share(shares[0], ctx, request, parent.run_id, Outcome(0, reused=reused), ranks.tags(0),
                                keep_failure=world > 1, plots=plots)
            outcomes, lost = ranks.gather(outcome)
            line = ranks.failure_line(outcomes, lost)
            anything = any(o.ran or o.reused for o in outcomes)
            try:  # compare, while a child process draws the runs' PNGs
                close_parent(parent, request, outcomes, after if anything else None,
                             spread=f", spread over {world} processes" if world > 1 else "")
            except GradaccError as err:
                if line is None:
                    raise
                line += f"; compare: {reason(err)}"
        finally:
            finish_drawing(plots)
        if line:
            raise ranks.Failed(line)  # the parent ends FAILED with this line as its gradacc.failure
    return request.study
