"""The one experiment resolver, for the writers and the reader alike, so that runs made by `mlflow run` and by
the CLI land together and are found with no flag. It follows MLflow's own order: the `mlflow run` run's
experiment; else the name or id given; else $MLFLOW_EXPERIMENT_NAME (created when writing, as MLflow does), else
$MLFLOW_EXPERIMENT_ID; else MLflow's default experiment (id 0, 'Default')."""
from __future__ import annotations

import os
from collections.abc import Sequence

import mlflow
from mlflow.tracking import MlflowClient

from gradacc.core.errors import GradaccError, TrackingError
from gradacc.core.request import Request
from gradacc.names import DEFAULT_EXPERIMENT_ID, EXPERIMENT_KIND, PART
from gradacc.tracking.new_store import adopt
from gradacc.tracking.redact import redact
from gradacc.tracking.sqlite_check import check_sqlite_store
from gradacc.tracking.store import bound_http_retries, describe, sqlite_path, store_lock

NAME_ENV, ID_ENV = "MLFLOW_EXPERIMENT_NAME", "MLFLOW_EXPERIMENT_ID"
HOW_TO_CHOOSE = f"give --experiment, or set {NAME_ENV} (under `mlflow run`: --experiment-name)"


def _by_ref(c: MlflowClient, ref: str):
    """An experiment by name, else by id (ids are digits on every store MLflow ships)."""
    exp = c.get_experiment_by_name(ref)
    if exp is None and ref.isdigit():
        try:
            exp = c.get_experiment(ref)
        except mlflow.exceptions.MlflowException:
            exp = None
    return exp


def _found(c: MlflowClient, ref: str | None, create: bool):
    """The experiment of the module docstring's order (a named one created where `create` and it is missing)."""
    run_id = os.environ.get("MLFLOW_RUN_ID")
    if ref is None and run_id:
        return c.get_experiment(c.get_run(run_id).info.experiment_id)
    from_env = ref is None and os.environ.get(NAME_ENV)
    ref = ref or os.environ.get(NAME_ENV) or os.environ.get(ID_ENV) or DEFAULT_EXPERIMENT_ID
    exp = c.get_experiment_by_name(ref) if from_env else _by_ref(c, str(ref))
    if exp is None and create and not str(ref).isdigit():
        return c.get_experiment(_create(c, str(ref)))
    if exp is None:
        raise TrackingError(f"no experiment {ref!r} in the tracking store {redact(mlflow.get_tracking_uri())} "
                            f"({HOW_TO_CHOOSE})")
    return exp


def _create(c: MlflowClient, name: str) -> str:
    """A new experiment's id; where another process created it first (writers that start together on a server or
    a database, which the sqlite store_lock does not reach), that one's."""
    try:
        return c.create_experiment(name)
    except mlflow.exceptions.MlflowException as err:
        exp = c.get_experiment_by_name(name) if err.error_code == "RESOURCE_ALREADY_EXISTS" else None
        if exp is None:
            raise
        return exp.experiment_id


def _resolve_one(c: MlflowClient, ref: str | None, create: bool) -> tuple[str, str]:
    """(id, name); a writer's experiment is also marked as one of training runs (EXPERIMENT_KIND), so that the
    UI opens it on its runs rather than on the GenAI overview, unless something marked it before."""
    exp = _found(c, ref, create)
    key, kind = EXPERIMENT_KIND
    if create and key not in exp.tags:
        try:
            c.set_experiment_tag(exp.experiment_id, key, kind)
        except mlflow.exceptions.MlflowException:
            # writers that start together all find the tag missing; the losers of the race to insert it (a unique
            # key on a server's database) find it set by the winner
            if key not in c.get_experiment(exp.experiment_id).tags:
                raise
    return exp.experiment_id, exp.name


def resolve_experiments(experiment: str | Sequence[str] | None = None, create: bool = False) -> list[tuple[str, str]]:
    """[(id, name)] for experiment names or ids, or the default one (module docstring). create: make a named
    experiment that does not exist yet (writers); readers get a TrackingError that says how to choose one."""
    bound_http_retries()  # a dead server fails in seconds, not minutes
    uri = mlflow.get_tracking_uri()
    refs = [None] if experiment is None else [experiment] if isinstance(experiment, str) else list(experiment)
    if sqlite_path(uri):  # before MLflow touches the file: it would alter one that is not its store
        check_sqlite_store(redact(uri), sqlite_path(uri), writes=create)
    try:
        with store_lock(uri):  # the first access creates a sqlite store: one process at a time
            adopt(uri)  # or moves into place the one this command made beside its imports (new_store.py)
            c = MlflowClient()
            return [_resolve_one(c, None if ref is None else str(ref), create) for ref in refs]
    except GradaccError:
        raise
    except Exception as err:
        raise TrackingError(f"tracking store {redact(uri)} is not usable: {describe(err, uri)}") from None


def experiment_id(name: str | None) -> str:
    """The experiment a new run goes to (created if it is named and missing, marked for the UI)."""
    (exp_id, _name), = resolve_experiments(name, create=True)
    return exp_id


def with_experiment_id(request: Request) -> Request:
    """The request with its experiment resolved to an id (created if it is named and missing): once, by the process
    that writes the runs, after the request was checked and its data found, so that a command refused earlier leaves
    no store behind."""
    return request.in_experiment(experiment_id(request.experiment))


def others_with_runs(exclude_ids: Sequence[str]) -> list[str]:
    """Names of the other active experiments that hold gradacc runs (for an error that says where runs are)."""
    try:
        c = MlflowClient()
        names = []
        for exp in c.search_experiments():
            if exp.experiment_id in exclude_ids:
                continue
            if c.search_runs([exp.experiment_id], filter_string=f"tags.`{PART}` LIKE '%'", max_results=1):
                names.append(exp.name)
        return names
    except Exception:  # only a hint: a store that cannot answer it has already said so elsewhere
        return []


def where_else(names: Sequence[str], python: bool = False) -> str:
    """' gradacc runs are in experiment 'x': --experiment x' (or load_runs(experiment=...)), or ''."""
    if not names:
        return ""
    listed = ", ".join(repr(n) for n in names)
    how = f"load_runs(experiment={names[0]!r})" if python else f"--experiment {names[0]!r} or {NAME_ENV}={names[0]!r}"
    return f"; gradacc runs are in experiment {listed}: select it with {how}"
