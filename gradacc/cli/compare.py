"""`gradacc compare`: the study's runs from the tracking store -> table, plots and HTML report."""
from __future__ import annotations

from pathlib import Path

import click

from gradacc.cli.types import SmokeChoice, StudyId
from gradacc.names import COMPARE_OUTPUT


@click.command("compare")
@click.option("--experiment", default=None, show_default="$MLFLOW_EXPERIMENT_NAME, else MLflow's Default",
              help="MLflow experiment (name or id) whose runs are compared (under `mlflow run`: its own).")
@click.option("--study", type=StudyId("all"), default="all", show_default=True,
              help="Only the runs of this sweep's study id (tag gradacc.study.<ID>); all = every run of the "
                   "experiment.")
@click.option("--output", default=COMPARE_OUTPUT, show_default=True,
              type=click.Path(file_okay=False), help="Folder for the plots, table.md, table.csv and report.html.")
@click.option("--include-smoke", type=SmokeChoice(), is_flag=False, flag_value="true", default="auto",
              show_default=True,
              help="true: compare smoke runs too (kept apart from full-protocol runs); false: leave them out; auto: "
                   "the full-protocol runs, or the smoke runs where there is none.")
def compare(experiment, study, output, include_smoke):
    """Compare the study's runs from the tracking store: table, plots and an HTML report (Parts 1-4)."""
    # mlflow, pandas and matplotlib are imported when a comparison runs, not when the CLI starts.
    from gradacc.study.compare import check_output_folder, run_compare
    check_output_folder(Path(output))  # before loading the runs, which can take a while
    run_compare(experiment, None if study in ("", "all") else study, output, include_smoke=include_smoke)
