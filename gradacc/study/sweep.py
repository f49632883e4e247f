"""The study: each part for each k (and seed) as child runs of one parent run, data loaded once per process.

Every sweep has a study id. A configuration whose FINISHED run already exists (same part, config and code
version) is not run again but tagged with the new study's id, so an interrupted sweep resumes where it stopped.

One process runs `run_sweep`. A sweep spread over several processes (gradacc/distributed/spread.py) is built from
the same pieces: rank 0 opens the parent (`sweep_parent`), finds what is already measured (`pending`), splits the
rest (`assign`); each rank runs its share (`run_share`); rank 0 closes the parent over every rank's `Outcome`."""
from __future__ import annotations

import traceback
import uuid
from contextlib import contextmanager
from dataclasses import dataclass, field

from gradacc.core.config import Protocol
from gradacc.core.errors import ConfigError, GradaccError
from gradacc.names import NOTE, STUDY, SWEEP, WORLD_SIZE, part_tags, run_name, study_tags
from gradacc.parts.context import Context
from gradacc.study.console import say
from gradacc.study.run import config_key, draw_plots, execute, execute_together, plot_if_missing, subset_inputs
from gradacc.tracking.orphans import end_orphans
from gradacc.tracking.runs import add_tags, copies_of, find_finished_run, one_line, print_link, tracked_run

# options of the parent, not of its children
SWEEP_ONLY = ("ks", "parts", "repeats", "seeds_together", "force", "study", "output")


def new_study_id() -> str:
    return uuid.uuid4().hex[:8]


@dataclass(frozen=True)
class Config:
    """One configuration of the study: a part of one protocol (one k, one seed)."""

    part: str
    protocol: Protocol

    @property
    def label(self) -> str:
        return f"{run_name(self.part, self.protocol.k, self.protocol.smoke)} seed {self.protocol.seed}"

    @property
    def work(self) -> int:
        """Micro-batches through forward and backward: what `assign` balances (evaluation left out)."""
        p = self.protocol
        return p.warmup_micro_iters + p.timed_micro_iters if self.part == "micro" else p.total_updates * p.k


@dataclass(frozen=True)
class Together:
    """The converge runs of several seeds of one K, trained together on one device (gradacc/parts/together.py): one
    unit of the sweep, one run per seed, no timings."""

    protocols: tuple[Protocol, ...]
    part = "converge"

    @property
    def label(self) -> str:
        first = self.protocols[0]
        return (f"{run_name(self.part, first.k, first.smoke)} seeds {', '.join(str(p.seed) for p in self.protocols)} "
                "together")

    @property
    def work(self) -> int:
        """Each seed's micro-batches, as if run alone: how much the device gains by sharing is not known here."""
        return sum(Config(self.part, p).work for p in self.protocols)


def trains_together(choice: str, ctx: Context, protocols: list[Protocol]) -> bool:
    """--seeds-together: true, false, or auto (on a GPU, where the seeds can share the device). Not with CUDA graphs
    yet: graphs that replay side by side each need a cuBLAS workspace of their own (gradacc/core/graphs.py captures
    them so), not yet checked on a GPU; auto then runs the seeds one after another."""
    graphs = any(p.cuda_graphs for p in protocols)
    if choice == "true" and graphs:
        raise ConfigError("--seeds-together true does not work with --cuda-graphs yet (not yet checked on a GPU: "
                          "docs/seeds.md); leave one of them out")
    return not graphs and (choice == "true" or (choice == "auto" and ctx.runtime.is_cuda))


def configurations(protocols: list[Protocol], parts: list[str], together: bool = False) -> list[Config | Together]:
    """The study's configurations in the sweep's order: for each protocol (seed, then k), each part. `together`
    (where the study has converge runs and several seeds): every part for the first seed only, then the other
    seeds' converge runs of each K trained together; their other parts would only repeat the first seed's timings."""
    first_seed = protocols[0].seed
    if not together or "converge" not in parts or all(p.seed == first_seed for p in protocols):
        return [Config(part, protocol) for protocol in protocols for part in parts]
    units: list[Config | Together] = [Config(part, p) for p in protocols if p.seed == first_seed for part in parts]
    for k in dict.fromkeys(p.k for p in protocols):
        units.append(Together(tuple(p for p in protocols if p.k == k and p.seed != first_seed)))
    return units


def assign(configs: list[Config | Together], world: int) -> list[int]:
    """The rank of each configuration: longest first, each to the rank with the least work so far (ties: the
    lower rank). Deterministic, and no rank's load exceeds the mean by more than one configuration; in the default
    study (micro and converge for K = 1, 2, 4, 8) two ranks get two converge and two micro runs each."""
    loads, ranks = [0] * world, [0] * len(configs)
    for index in sorted(range(len(configs)), key=lambda i: -configs[i].work):  # stable: ties in sweep order
        rank = min(range(world), key=lambda r: loads[r])
        ranks[index] = rank
        loads[rank] += configs[index].work
    return ranks


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


def still_to_run(unit: Config | Together, ctx: Context, exp_id: str, study: str, force: bool,
                 reused: list[str]) -> Config | Together | None:
    """The part of `unit` not measured yet (None: all of it was), the labels of what is reused added to `reused`."""
    if force:
        return unit
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


def seed_labels(unit: Config | Together) -> list[str]:
    """A label per run: one for a configuration, one per seed for seeds trained together."""
    if isinstance(unit, Config):
        return [unit.label]
    return [Config(unit.part, protocol).label for protocol in unit.protocols]


def run_count(units: list[Config | Together]) -> int:
    return sum(len(seed_labels(unit)) for unit in units)


def pending(units: list[Config | Together], ctx: Context, exp_id: str, study: str,
            force: bool) -> tuple[list[Config | Together], list[str]]:
    """What is still to measure, and the labels of the runs reused (tagged with the study)."""
    todo, reused = [], []
    for unit in units:
        left = still_to_run(unit, ctx, exp_id, study, force, reused)
        if left is not None:
            todo.append(left)
    return todo, reused


def reason(err: BaseException) -> str:
    return one_line(err) if isinstance(err, GradaccError) else f"{type(err).__name__}: {one_line(err)}"


def run_share(configs: list[Config | Together], ctx: Context, given: dict[str, str], experiment: str | None,
              exp_id: str, parent_run_id: str, study: str, force: bool, outcome: Outcome,
              tags: dict[str, str] | None = None, keep_failure: bool = False) -> Outcome:
    """Runs (or reuses) each configuration as a child of the parent. A failure propagates (the run ends FAILED),
    or with `keep_failure` stops this share and is kept in the outcome: the other ranks of a spread sweep go on."""
    child_given = {k: v for k, v in given.items() if k not in SWEEP_ONLY}
    plots_later: list = []  # the runs' PNGs, drawn after the last configuration, not between two
    try:
        for index, unit in enumerate(configs):
            try:
                config = still_to_run(unit, ctx, exp_id, study, force, outcome.reused)
                if config is None:
                    continue
                run_tags = {**study_tags(study), **(tags or {})}
                if isinstance(config, Together):
                    execute_together(list(config.protocols), ctx, child_given, experiment, parent_run_id, run_tags,
                                     plots_later)
                else:
                    protocol = config.protocol
                    execute(config.part, protocol, ctx, dict(child_given, k=str(protocol.k),
                                                             seed=str(protocol.seed)),
                            experiment, parent_run_id=parent_run_id, tags=run_tags, plots_later=plots_later)
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
    finally:
        draw_plots(plots_later)
    return outcome


@contextmanager
def sweep_parent(protocols: list[Protocol], parts: list[str], given: dict[str, str], ctx: Context,
                 experiment: str | None, study: str, world: int = 1):
    """The study's parent run (its children are the configurations' runs), opened and always closed; it carries
    the subsets its children use as dataset inputs too, so the study's data shows in the runs table's row."""
    smoke = any(p.smoke for p in protocols)
    tags = {**part_tags(SWEEP, smoke), **study_tags(study), **({WORLD_SIZE: str(world)} if world > 1 else {})}
    with tracked_run(SWEEP + ("-smoke" if smoke else ""), tags, experiment) as parent:
        ended = end_orphans(study, f"the sweep that resumed study {study} (run {parent.run_id})")
        if ended:
            say(f"sweep: study {study}: ended KILLED {len(ended)} run(s) left RUNNING by a process that no longer "
                f"exists: {', '.join(ended)}")
        parent.log_params(given, ctx.params())
        parent.log_inputs(subset_inputs(protocols[0], ctx, parts))
        yield parent
    print_link(parent.experiment_id, parent.run_id)


def close_parent(parent, study: str, protocols: list[Protocol], parts: list[str], outcomes: list[Outcome],
                 after=None, spread: str = ""):
    """The study's description and counts on the parent, then `after(parent_run_id, study)` (compare)."""
    ran, reused = (sum(len(getattr(o, what)) for o in outcomes) for what in ("ran", "reused"))
    say(f"sweep: study {study}: {ran} runs measured, {reused} reused")
    ks = sorted({p.k for p in protocols})
    seeds = sorted({p.seed for p in protocols})
    smoke = any(p.smoke for p in protocols)
    note = (f"Study {study}: {', '.join(parts)} for K = {', '.join(map(str, ks))}, seed(s) "
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


def run_sweep(protocols: list[Protocol], parts: list[str], ctx: Context, given: dict[str, str],
              experiment: str | None = None, study: str | None = None, force: bool = False,
              after=None, together: bool = False) -> str:
    """Runs (or reuses) every part of every protocol in this process (`together`: see `configurations`);
    `after(parent_run_id, study)` runs at the end (compare). Returns the study id."""
    study = study or new_study_id()
    configs = configurations(protocols, parts, together)
    with sweep_parent(protocols, parts, given, ctx, experiment, study) as parent:
        say(f"sweep: study {study}, {run_count(configs)} runs")
        outcome = run_share(configs, ctx, given, experiment, parent.experiment_id, parent.run_id, study, force,
                            Outcome())
        close_parent(parent, study, protocols, parts, [outcome], after)
    return study
