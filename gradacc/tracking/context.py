"""MLflow's standard context tags (user, source, git commit) for the runs gradacc creates itself with
`MlflowClient.create_run`, which sets none of them, so that the UI's User, Source and Version columns are filled
as `mlflow.start_run` would fill them. Under `mlflow run` they are copied from the run it created (its source is
the project, its commit the project's), so a sweep's children say what their parent says."""
from __future__ import annotations

import functools
import os
import subprocess
from pathlib import Path

from mlflow.tracking import MlflowClient
from mlflow.tracking.context.registry import resolve_tags
from mlflow.utils.mlflow_tags import MLFLOW_GIT_COMMIT, MLFLOW_GIT_REPO_URL

import gradacc

COPIED_PREFIXES = ("mlflow.user", "mlflow.source.", "mlflow.project.", "mlflow.gitRepoURL")


def _git(folder: Path, *args: str) -> str | None:
    try:
        done = subprocess.run(["git", "-C", str(folder), *args], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):  # no git, or it hangs
        return None
    return done.stdout.strip() or None if done.returncode == 0 else None


def checkout_tags(package_dir: Path) -> dict[str, str]:
    """The commit (and the remote's URL, if any) of the git checkout that holds gradacc's own files: MLflow looks
    for git beside the script it runs (the console script in the venv), so a CLI run in a clone gets none. Nothing
    where the package is not a tracked file of a checkout (an installed wheel, even in a venv inside a repo)."""
    if _git(package_dir, "ls-files", "--error-unmatch", "__init__.py") is None:
        return {}
    commit = _git(package_dir, "rev-parse", "HEAD")
    if commit is None:
        return {}
    url = _git(package_dir, "remote", "get-url", "origin")
    return {MLFLOW_GIT_COMMIT: commit, **({MLFLOW_GIT_REPO_URL: url, "mlflow.gitRepoURL": url} if url else {})}


@functools.cache
def _resolved_here() -> tuple[tuple[str, str], ...]:
    tags = resolve_tags()
    if MLFLOW_GIT_COMMIT not in tags:
        tags.update(checkout_tags(Path(gradacc.__file__).resolve().parent))
    return tuple(sorted(tags.items()))


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
