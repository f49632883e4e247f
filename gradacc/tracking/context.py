"""MLflow's standard context tags (user, source, git commit) for the runs gradacc creates itself with
`MlflowClient.create_run`, which sets none of them, so that the UI's User, Source and Version columns are filled
as `mlflow.start_run` would fill them. Under `mlflow run` they are copied from the run it created (its source is
the project, its commit the project's), so a sweep's children say what their parent says."""
from __future__ import annotations

import functools
import os

from mlflow.tracking import MlflowClient
from mlflow.tracking.context.registry import resolve_tags

COPIED_PREFIXES = ("mlflow.user", "mlflow.source.", "mlflow.project.", "mlflow.gitRepoURL")


@functools.cache
def _resolved_here() -> tuple[tuple[str, str], ...]:
    return tuple(sorted(resolve_tags().items()))


def context_tags(client: MlflowClient) -> dict[str, str]:
    """The context tags of a new run of this process (best effort: a tag that cannot be found is left out)."""
    launcher = os.environ.get("MLFLOW_RUN_ID")
    try:
        if launcher:
            tags = client.get_run(launcher).data.tags
            return {k: v for k, v in tags.items() if k.startswith(COPIED_PREFIXES)}
        return dict(_resolved_here())
    except Exception:  # noqa: BLE001 - context is a courtesy to the UI; the run itself must not fail for it
        return {}
