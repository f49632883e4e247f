"""The critical-batch study: for each K (and seed) a child run trained to the loss target (parts/critical.py), under
one parent run that carries the fit (analysis/critical.py), its sentence, a table and the two plots.

A child whose FINISHED run already exists (same protocol, device, code version and target: its gradacc.config) is
reused, as a sweep reuses its runs, and tagged with the new study."""
from __future__ import annotations

import hashlib

from gradacc.analysis.critical import Fit, Point, fit, noise_interval, regime, sentence
from gradacc.analysis.plots.critical import TRADEOFF_PNG, UPDATES_PNG, plot_tradeoff, plot_updates
from gradacc.core.config import Protocol
from gradacc.core.noise import status as noise_status
from gradacc.core.request import Request
from gradacc.names import CONFIG, CRITICAL, NOISE_SCALE, NOTE, VARIANT, part_tags, run_name, study_tags
from gradacc.parts.context import Context
from gradacc.parts.critical import eval_every, run_critical
from gradacc.study.console import say
from gradacc.study.run import Planned, config_key, measure_tracked, what_is_measured
from gradacc.study.sweep import new_study_id
from gradacc.tracking.runs import add_tags, client, find_finished_run, store_errors, tracked_run

PARENT_ONLY = ("ks", "repeats", "force", "study")  # options of the parent, not of its children


def child_key(protocol: Protocol, ctx: Context, target: float) -> str:
    """The converge-like config key of the protocol, with the part and the target in it."""
    base = config_key(CRITICAL, protocol, ctx)
    return hashlib.sha1(f"{base}:{target!r}".encode()).hexdigest()[:16]


def reused_summaries(protocol: Protocol, ctx: Context, target: float, exp_id: str, study: str) -> dict | None:
    previous = find_finished_run(exp_id, child_key(protocol, ctx, target))
    if previous is None:
        return None
    add_tags(previous, study_tags(study))
    with store_errors(f"reading run {previous}"):
        metrics = client().get_run(previous).data.metrics
    say(f"{run_name(CRITICAL, protocol.k, protocol.smoke)} seed {protocol.seed}: reusing finished run {previous}")
    return dict(metrics)


def measure_child(protocol: Protocol, ctx: Context, target: float, request: Request,
                  parent_run_id: str) -> dict[str, float]:
    study = request.study
    name = run_name(CRITICAL, protocol.k, protocol.smoke)
    tags = {**part_tags(CRITICAL, protocol.smoke), CONFIG: child_key(protocol, ctx, target),
            VARIANT: protocol.variant, NOISE_SCALE: noise_status(protocol.noise_scale, protocol.k),
            **study_tags(study)}
    what = (f"{what_is_measured('converge', protocol, ctx)}, stopped once the eval-mode loss on the training "
            f"subset's first images is <= {target:g} (evaluated every {eval_every(protocol)} updates), at most "
            f"{protocol.epochs} epochs")
    planned = Planned(name, CRITICAL, tags, request.child_params(protocol),
                      {**protocol.as_params(), **ctx.params(), "target": str(target)}, protocol, what)
    result = measure_tracked(planned, ctx, lambda r, advance: run_critical(protocol, ctx, r, target, advance),
                             protocol.total_updates, request.experiment_id, parent_run_id)
    return result.summaries


def table(rows: list[tuple[Protocol, dict]], result: Fit | None) -> str:
    lines = ["| K | batch | seed | reached | updates to target | images to target | B_simple to target | regime |",
             "|---|---|---|---|---|---|---|---|"]
    for protocol, s in rows:
        reached = bool(s.get("target_reached"))
        bound = "" if reached else ">= "
        b_simple = s.get("noise_scale_simple_to_target")
        lines.append(f"| {protocol.k} | {protocol.effective_batch} | {protocol.seed} | {'yes' if reached else 'no'} "
                     f"| {bound}{s['updates_to_target']:.0f} | {bound}{s['images_to_target']:.0f} | "
                     f"{'' if b_simple is None else f'{b_simple:.0f}'} | "
                     f"{regime(protocol.effective_batch, result.b_crit) if result else ''} |")
    return "\n".join(lines) + "\n"


def run_critical_study(request: Request, target: float, ctx: Context) -> str:
    """Every protocol's child run (or its reuse), then the fit, sentence, table and plots on the parent."""
    request = request.in_study(request.study or new_study_id())
    protocols, study, smoke = request.protocols, request.study, request.smoke
    tags = {**part_tags(CRITICAL, smoke), **study_tags(study)}
    with tracked_run(CRITICAL + ("-smoke" if smoke else ""), tags, request.experiment_id) as parent:
        parent.log_params(request.given_params(), {**ctx.params(), "target": str(target)})
        say(f"critical: study {study}, {len(protocols)} runs to a target loss of {target:g}")
        rows = []
        for protocol in protocols:
            summaries = None if request.force else reused_summaries(protocol, ctx, target, parent.experiment_id,
                                                                    study)
            if summaries is None:
                summaries = measure_child(protocol, ctx, target, request, parent.run_id)
            rows.append((protocol, summaries))
        points = [Point(p.effective_batch, s["updates_to_target"], bool(s["target_reached"]), p.seed)
                  for p, s in rows]
        result = fit(points)
        noise = noise_interval([s.get("noise_scale_simple_to_target", float("nan")) for _, s in rows])
        words = sentence(result, {p.k: p.effective_batch for p, _ in rows}, noise)
        say(f"critical: {words}")
        figures = {} if result is None else {"s_min": result.s_min, "e_min": result.e_min, "b_crit": result.b_crit}
        if result is not None:
            figures.update({f"{name}_{end}": value for name, (low, high) in result.interval.items()
                            for end, value in (("low", low), ("high", high))})
        if noise is not None:
            figures.update(b_noise=noise[0])
        parent.log_metrics({}, figures)
        title = f"Critical batch: target loss {target:g}" + (" (smoke)" if smoke else "")

        def plots(root):
            plot_updates(points, result, title, root / "plots" / UPDATES_PNG)
            plot_tradeoff(points, result, title, root / "plots" / TRADEOFF_PNG)

        parent.log_files({"critical.md": f"{words}\n\n{table(rows, result)}"}, writers=[plots])
        parent.set_tags({NOTE: f"Study {study}: {words}"})
    return study
