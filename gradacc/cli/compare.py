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
    from gradacc.core.errors import TrackingError
    from gradacc.study.compare import check_output_folder, run_compare
    from gradacc.tracking.store import missing_local_store
    if missing := missing_local_store():  # nothing to compare, and nothing left behind
        raise TrackingError(f"no tracking store here: {missing} does not exist (nothing was measured with it); run "
                           "compare where the runs' mlflow.db is, or set MLFLOW_TRACKING_URI")
    folder = Path(output)
    made = not folder.exists()
    check_output_folder(folder)  # before loading the runs, which can take a while
    try:
        run_compare(experiment, None if study in ("", "all") else study, output, include_smoke=include_smoke)
    except BaseException:
        if made:  # a comparison that wrote nothing leaves no empty folder behind
            for empty in sorted((p for p in [folder, *folder.rglob("*")] if p.is_dir()), reverse=True):
                try:
                    empty.rmdir()
                except OSError:  # not empty: something was written, it stays
                    pass
        raise
