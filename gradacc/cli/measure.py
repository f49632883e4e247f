"""The measuring commands: `gradacc micro`, `update`, `converge` (one run each) and `sweep` (the study)."""
from __future__ import annotations

from pathlib import Path

import click

from gradacc.cli.options import common_options, noise_option, system_metrics_option, variant_options
from gradacc.cli.request import build_request
from gradacc.cli.types import KList, StudyId, WholeNumber, repeated
from gradacc.core.config import DEFAULT_KS
from gradacc.names import COMPARE_OUTPUT, DEFAULT_PARTS, PARTS


def run_part(part: str, options: dict) -> None:
    """One tracked run of `part`: the request built from the options, the data loaded, the experiment resolved."""
    from gradacc.tracking import new_store
    new_store.start()  # a new sqlite store made beside the imports below (cli/__init__.py main finishes it)
    from gradacc.parts.context import prepare
    from gradacc.study.run import execute
    from gradacc.tracking.experiments import with_experiment_id
    request = build_request(options, [options["k"]])
    ctx = prepare(request.protocols, request.settings)
    execute(part, request.protocol, ctx, with_experiment_id(request))


def log_model_option(func):
    return click.option("--log-model", type=click.BOOL, is_flag=False, flag_value=True, default=False,
                        show_default=True, help="Log the trained model (mlflow.pytorch.log_model, about 45 MB for "
                        "ResNet-18) once every epoch has run; `mlflow.pytorch.load_model('runs:/<run id>/model')` "
                        "reads it back.")(func)


def part_command(part: str, doc: str, extra=lambda func: func) -> click.Command:
    @click.command(part, help=doc)
    @click.option("--k", type=WholeNumber(1), default=1, show_default=True,
                  help="Accumulation factor: micro-batches of 64 per update (effective batch 64*k).")
    @common_options
    @system_metrics_option
    @variant_options
    @extra
    def command(**options):
        run_part(part, options)
    return command


micro = part_command("micro", "Part 1: forward+backward time of one micro-batch (20 warm-up, 80 timed; ms).")
update = part_command("update", "Part 2: time of whole updates (s) and throughput (images/s), middle 60% of U "
                      "updates.")
converge = part_command("converge", "Part 3: epoch losses and test accuracy (%) after a fixed budget of epochs; each "
                        "update timed whole as in Part 2 and, for K >= 2, the gradient noise scale (its work "
                        "taken out of the update times).",
                        lambda func: noise_option(log_model_option(func)))


@click.command()
@click.option("--ks", type=KList(), default=",".join(map(str, DEFAULT_KS)), show_default=True,
              help="Accumulation factors to run, comma-separated.")
@click.option("--parts", "parts", default=",".join(DEFAULT_PARTS), show_default=True,
              help="Parts to run for each k, comma-separated (micro, update, converge). A converge run also "
                   "times its updates as Part 2 does (the noise scale's work taken out), so the study needs no "
                   "update runs; add `update` for Part 2's own runs.")
@click.option("--repeats", type=WholeNumber(1), default=1, show_default=True,
              help="Seeds per configuration: --seed, --seed+1, ...")
@click.option("--seeds-together", type=click.Choice(["auto", "true", "false"]), default="auto", show_default=True,
              help="With --repeats: every part for the first seed, alone and timed; then the other seeds' converge "
                   "runs of each K trained together on one device, each on its own CUDA stream (the same losses "
                   "and accuracy as alone, no timings). auto: on a GPU. false: every part for every seed, one "
                   "after another (a CPU's default: there the seeds cannot share the device).")
@click.option("--force", type=click.BOOL, is_flag=False, flag_value=True, default=False,
              help="Measure again even where a FINISHED run of the same config and code version exists.")
@click.option("--study", type=StudyId("new"), default="new", show_default=True,
              help="Study id to tag the runs with (reuse one to extend or resume a study; new = a new id).")
@click.option("--output", default=COMPARE_OUTPUT, show_default=True, type=click.Path(file_okay=False),
              help="Folder for the comparison that ends the sweep (plots, table.md, table.csv, report.html).")
@click.option("--gpus", type=WholeNumber(1), default=1, show_default=True,
              help="Spread the study over G processes of this node, one GPU each (a CPU machine: G CPU "
                   "processes): launches `torchrun --standalone --nproc-per-node G -m gradacc sweep` with the "
                   "other options. Under torchrun (several nodes), leave it out.")
@common_options
@system_metrics_option
@variant_options
@noise_option
@click.pass_context
def sweep(click_ctx, **options):
    """The study: each part for each k as child runs of one parent run, in one process or, under torchrun (or
    with --gpus), spread over the processes, one GPU each. Configurations already measured by the same code are
    reused, not run again."""
    from gradacc.tracking import new_store
    if options["gpus"] == 1:  # (with --gpus, the ranks open the store)
        new_store.start()  # a new sqlite store made beside the imports below (cli/__init__.py main finishes it)
    from gradacc.distributed.spread import torchrun_world
    from gradacc.parts.context import prepare
    from gradacc.study.compare import check_output_folder, run_compare
    from gradacc.study.plan import trains_together
    from gradacc.study.sweep import SWEEP_ONLY, run_sweep
    from gradacc.tracking.experiments import with_experiment_id
    chosen = [p.strip() for p in options["parts"].split(",") if p.strip()]
    unknown = sorted(set(chosen) - set(PARTS))
    if unknown or not chosen:
        raise click.BadParameter(f"unknown part(s) {', '.join(unknown) or '(none)'}; choose from "
                                 f"{', '.join(PARTS)}", param_hint="--parts")
    if repeated(chosen):
        raise click.BadParameter(f"{', '.join(repeated(chosen))} listed more than once", param_hint="--parts")
    request = build_request(dict(options, parts=",".join(chosen)), options["ks"], chosen, SWEEP_ONLY)
    output = options["output"]
    check_output_folder(Path(output))  # before the measurements, not after them
    if options["gpus"] > 1:
        if torchrun_world():
            raise click.BadParameter("under torchrun, leave --gpus out: torchrun's --nproc-per-node and --nnodes "
                                     "choose the processes", param_hint="--gpus")
        from gradacc.distributed.spread_launch import launch_spread
        click_ctx.exit(launch_spread(options["gpus"], request, forwarded_options(click_ctx, leave_out="gpus")))

    def compare_study(parent_run_id: str, study_id: str) -> Path:
        return run_compare(options["experiment"], study_id, output, parent_run_id=parent_run_id,
                           include_smoke=request.smoke)

    if torchrun_world():  # one rank of several: its share of the study (gradacc/distributed/spread.py)
        from gradacc.distributed.spread import run_spread_sweep
        run_spread_sweep(request, compare_study, options["seeds_together"])
        return
    ctx = prepare(request.protocols, request.settings)
    run_sweep(with_experiment_id(request), ctx, after=compare_study,
              together=trains_together(options["seeds_together"], ctx, list(request.protocols)))


def forwarded_options(click_ctx: click.Context, leave_out: str) -> list[str]:
    """The command's options as parsed, written back as `--name=value` (what --gpus passes to each rank)."""
    args = []
    for param in click_ctx.command.params:
        value = click_ctx.params.get(param.name)
        if not isinstance(param, click.Option) or param.name == leave_out or value is None:
            continue
        if isinstance(value, bool):
            value = str(value).lower()
        elif isinstance(value, (tuple, list)):
            value = ",".join(map(str, value))
        args.append(f"{param.opts[0]}={value}")
    return args
