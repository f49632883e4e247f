"""`gradacc upload`: writes runs that were saved locally (the tracking store did not answer) into the store."""
from __future__ import annotations

from pathlib import Path

import click

from gradacc.core.errors import TrackingError


@click.command("upload")
@click.argument("path", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--tracking-uri", default=None, show_default="the store the run was started in",
              help="Upload into this store instead (e.g. the same server at a new address).")
def upload(path: Path, tracking_uri: str | None):
    """Upload the run saved in PATH (a folder printed by a run whose tracking store stopped answering), or every
    saved run under PATH (runs are saved under ./gradacc-unsent unless GRADACC_UNSENT_DIR says otherwise), and
    end each run with its saved status."""
    from gradacc.tracking.offline import UPLOADED, SavedRun, find_saved_runs, mark_uploaded
    from gradacc.tracking.upload import upload_saved_run
    if path.name.endswith(UPLOADED):  # sent already: again would end the run a second time, and rename it twice
        raise TrackingError(f"{path} was uploaded already (its name ends in {UPLOADED}); to send it again, rename "
                            f"it without {UPLOADED} first")
    folders = find_saved_runs(path)
    if not folders:
        raise TrackingError(f"no saved run in {path} (a saved run is a folder holding run.json)")
    for folder in folders:
        try:
            saved = SavedRun.load(folder)
        except (OSError, ValueError, TypeError) as err:
            raise TrackingError(f"{folder} does not hold a readable saved run: {err}") from None
        summary = upload_saved_run(saved, tracking_uri)
        click.echo(f"upload: {summary}; the saved copy is now {mark_uploaded(folder)}", err=True)
