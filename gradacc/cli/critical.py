"""`gradacc critical`: updates and images to a loss target per K, and the critical batch size fitted to them."""
from __future__ import annotations

import math

import click

from gradacc.cli.options import common_options, variant_options
from gradacc.cli.types import KList, StudyId, WholeNumber

DEFAULT_KS = (1, 2, 4, 8, 16, 32)
SMOKE_KS = (1, 2, 4)  # the smoke subset (1,024 images) has no whole update of 2,048 images
# The eval-mode loss on the training subset's first 512 images that K=1 of seed 42 reached within about two of
# the protocol's epochs on the real data (docs/critical.md).
DEFAULT_TARGET = 2.0
DEFAULT_EPOCH_CAP = 20


class PositiveFloat(click.ParamType):
    name = "number"

    def convert(self, value, param, ctx):
        try:
            number = float(value)
        except (TypeError, ValueError):
            self.fail(f"{value!r} is not a number", param, ctx)
        if not (math.isfinite(number) and number > 0):
            self.fail(f"{value} is not a positive finite number", param, ctx)
        return number


@click.command()
@click.option("--ks", type=KList(auto=True), default="auto", show_default=True,
              help="Accumulation factors to run, comma-separated; auto: 1,2,4,8,16,32, with --smoke 1,2,4 (the smoke "
                   "subset has no whole update for more).")
@click.option("--target", type=PositiveFloat(), default=DEFAULT_TARGET, show_default=True,
              help="The loss to reach: mean cross-entropy, eval mode, on the training subset's first 512 images.")
@click.option("--repeats", type=WholeNumber(1), default=1, show_default=True,
              help="Seeds per K: --seed, --seed+1, ... (with two or more the fit's interval resamples seeds).")
@click.option("--force", type=click.BOOL, is_flag=False, flag_value=True, default=False,
              help="Measure again even where a FINISHED run of the same config, target and code version exists.")
@click.option("--study", type=StudyId("new"), default="new", show_default=True,
              help="Study id to tag the runs with (reuse one to resume; new = a new id).")
@common_options
@variant_options
def critical(**options):
    """The critical batch size: each K trained with the protocol's update until the target loss (or the epoch
    cap, --epochs), updates and images to target logged per K, S_min, E_min and B_crit fitted to them
    (McCandlish et al. 2018) beside the gradient noise scale measured in the same runs."""
    from gradacc.tracking import new_store
    new_store.start()  # a new sqlite store made beside the imports below (cli/__init__.py main finishes it)
    from gradacc.cli.request import build_request
    from gradacc.parts.context import prepare
    from gradacc.study.critical import PARENT_ONLY, run_critical_study
    from gradacc.tracking.experiments import with_experiment_id
    ks = (SMOKE_KS if options["smoke"] else DEFAULT_KS) if options["ks"] == "auto" else options["ks"]
    request = build_request(options, ks, parent_only=PARENT_ONLY)  # ks logged as given (auto), each child's k
    ctx = prepare(request.protocols, request.settings)
    run_critical_study(with_experiment_id(request), options["target"], ctx)


for _param in critical.params:  # the shared --epochs is this command's cap, with a cap's default
    if _param.name == "epochs":
        _param.default = DEFAULT_EPOCH_CAP
        _param.help = "The epoch cap: a K that has not reached the target by then logs a lower bound."
