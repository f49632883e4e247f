"""`gradacc commmodel`: Part 4's communication and straggler model, fed by the store's runs."""
from __future__ import annotations

import math

import click

from gradacc.cli.types import FiniteRange, SmokeChoice, WholeNumber
from gradacc.names import COMMMODEL_OUTPUT


class OptionalNumber(click.ParamType):
    """A positive number, or `auto` (not given: None). '' is taken as `auto` too, as these options' default was
    once, but is no default: `mlflow run` logs an empty parameter as the literal ''."""

    name = "auto|number"

    def convert(self, value, param, ctx):
        text = str(value).strip() if value is not None else ""
        if text in ("", "auto"):
            return None
        try:
            number = float(text)
        except ValueError:
            self.fail(f"{value!r} is not a number", param, ctx)
        if not math.isfinite(number):
            self.fail(f"{value!r} is not a finite number", param, ctx)
        if not number > 0:
            self.fail(f"{value!r} must be positive", param, ctx)
        return number


class PerGpu(WholeNumber):
    """'auto' or a positive whole number. 'auto' becomes None, one per GPU, resolved by the model against
    --gpus-per-node: a type or callback cannot rely on that option having been parsed first."""

    name = "auto|integer"

    def __init__(self):
        super().__init__(1)

    def convert(self, value, param, ctx):
        if value is None or str(value).strip() == "auto":
            return None
        return WholeNumber(1).convert(value, param, ctx)  # its messages say "integer", not this type's name


@click.command("commmodel")
@click.option("--experiment", default=None, show_default="$MLFLOW_EXPERIMENT_NAME, else MLflow's Default",
              help="MLflow experiment (name or id) whose micro, converge and ddp runs feed the model.")
@click.option("--gpus-per-node", type=click.IntRange(1), default=8, show_default=True,
              help="Workers per node for the network presets (joined inside the node by --intra).")
@click.option("--nics-per-node", type=PerGpu(), default="auto", show_default="auto = --gpus-per-node",
              help="Network cards per node: the gradient crosses the network split over them (auto: one per GPU, "
                   "as in DGX/HGX nodes; 1: the whole gradient through one card).")
@click.option("--intra", type=click.Choice(["nvlink", "pcie4", "pcie5"]), default="nvlink", show_default=True,
              help="The link between the GPUs of one node under a network preset.")
@click.option("--latency-us", type=OptionalNumber(), default="auto", show_default=True,
              help="A network link of your own: latency per ring step (us); with --bandwidth-gb-s (auto: no link "
                   "of your own, the presets only). Given, it is also the link the DDP runs are checked on, instead of "
                   "the newest `gradacc allreduce` benchmark of their device.")
@click.option("--bandwidth-gb-s", type=OptionalNumber(), default="auto", show_default=True,
              help="A network link of your own: bandwidth per direction and card in GB/s (Gb/s / 8); with "
                   "--latency-us (auto: no link of your own).")
@click.option("--overlap", type=FiniteRange(0, 1), default=0.0, show_default=True,
              help="Share of the backward pass (2/3 of a micro-iteration) that hides the all-reduce.")
@click.option("--bucket-mb", type=FiniteRange(min=0.001), default=25.0, show_default=True,
              help="DDP bucket size in MiB (bucket_cap_mb): each bucket pays the latency once.")
@click.option("--max-workers", type=click.IntRange(1, 4096), default=64, show_default=True,
              help="Predict for N = 1..this.")
@click.option("--target-loss", type=OptionalNumber(), default="auto", show_default=True,
              help="Training loss to reach (trailing mean over an epoch); auto = the highest final loss "
                   "among the converge runs.")
@click.option("--output", default=COMMMODEL_OUTPUT, show_default=True, type=click.Path(file_okay=False),
              help="Folder for the tables and plots.")
@click.option("--include-smoke", type=SmokeChoice(), is_flag=False, flag_value="true", default="auto",
              show_default=True, help="true: use smoke runs too; false: leave them out; auto: the full-protocol "
                                      "runs, or the smoke runs where there is none.")
def commmodel(**options):
    """Part 4's communication and straggler model, fed by the store's runs: tables and plots, as a run."""
    from gradacc.study.commmodel import ModelOptions, run_commmodel  # pandas, matplotlib and mlflow when it runs
    run_commmodel(ModelOptions(**options))
