"""The reader: the store's runs as one typed row each, metric histories as a long table (public as gradacc.results)."""
from __future__ import annotations

import re
import warnings
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor

import mlflow
import numpy as np
import pandas as pd
from mlflow.tracking import MlflowClient

from gradacc.core.errors import TrackingError
from gradacc.names import (
    DEFAULT_VARIANT,
    FAILURE,
    NOISE_SCALE,
    PART,
    SERIES,
    SMOKE,
    STUDY_ID_PATTERN,
    STUDY_ID_RULE,
    TOGETHER,
    VARIANT,
)
from gradacc.names import STUDY as STUDY_TAG
from gradacc.tracking.experiments import others_with_runs, resolve_experiments, where_else

INT_PARAMS = ("k", "effective_batch", "epochs", "updates_per_epoch", "total_updates", "images_per_epoch",
              "seed", "train_size", "test_size", "micro_batch", "eval_batch", "warmup_micro_iters", "timed_micro_iters",
              "torch_threads", "workers", "warmup_epochs")
FLOAT_PARAMS = ("lr", "momentum", "weight_decay", "peak_lr")
STR_PARAMS = ("loader", "device", "device_type", "device_name", "cpu_model", "torch_version", "cuda_version",
              "code_version", "data_path", "ks", "parts", "lr_scaling", "noise_scale")
BASE_COLUMNS = ["run_id", "run_name", "part", "status", "start_time", "experiment_id", "parent_run_id",
                "study", "studies", "smoke", "variant", "noise_status", "failure", "cuda_graphs", "tf32_conv",
                "seeds_together"]
SERIES_COLUMNS = ["run_id", "part", "k", "key", "step", "value"]
HISTORY_THREADS = 4  # helps against a tracking server; on sqlite the GIL caps the gain
STUDY_ID = re.compile(STUDY_ID_PATTERN)


def _quote(value: str) -> str:
    return "'" + str(value).replace("'", "\\'") + "'"


def _filter_string(study: str | None, parts: Sequence[str] | None, statuses: Sequence[str] | None) -> str:
    """The conditions the store can apply itself (tags allow no IN, so several parts are filtered here)."""
    terms = []
    if study:
        terms.append(f"tags.`{STUDY_TAG}.{study}` = '1'")
    if parts and len(parts) == 1:
        terms.append(f"tags.`{PART}` = {_quote(parts[0])}")
    if statuses and len(statuses) == 1:
        terms.append(f"attributes.status = {_quote(statuses[0])}")
    return " and ".join(terms)


def _column(raw: pd.DataFrame, name: str) -> pd.Series:
    return raw[name] if name in raw.columns else pd.Series([None] * len(raw), index=raw.index, dtype=object)


def _param(raw: pd.DataFrame, key: str) -> pd.Series:
    """A param as resolved: `<key>_resolved` where the run has it (the given value differed), else `<key>`."""
    value = _column(raw, f"params.{key}")
    resolved = _column(raw, f"params.{key}_resolved")
    return resolved.where(resolved.notna(), value)


def _to_int(values: pd.Series) -> pd.Series:
    return pd.to_numeric(values, errors="coerce").round().astype("Int64")


def _to_bool(values: pd.Series) -> pd.Series:
    return values.astype(str).str.strip().str.lower().isin(("true", "1", "yes"))


def _tf32(values: pd.Series, device_type: pd.Series) -> pd.Series:
    """Whether cuDNN convolutions could use TF32 (CUDA, Ampere and newer): a bool; None for a CUDA run from before
    gradacc logged it (PyTorch allows TF32 there by default, so it is not known), False for a CPU run."""
    return pd.Series([bool(on) if known else (None if cuda else False) for on, known, cuda in
                      zip(_to_bool(values), values.notna(), device_type.eq("cuda"))], index=values.index, dtype=object)


def _studies(raw: pd.DataFrame) -> pd.Series:
    prefix = f"tags.{STUDY_TAG}."
    cols = [c for c in raw.columns if c.startswith(prefix)]
    if not cols:
        return pd.Series([()] * len(raw), index=raw.index, dtype=object)
    marks = raw[cols].eq("1").to_numpy()
    names = np.array([c[len(prefix):] for c in cols], dtype=object)
    return pd.Series([tuple(sorted(names[row])) for row in marks], index=raw.index, dtype=object)


def tidy_runs(raw: pd.DataFrame) -> pd.DataFrame:
    """mlflow.search_runs' frame (strings under params./tags./metrics.) -> one typed row per run."""
    out = pd.DataFrame(index=raw.index)
    out["run_id"] = _column(raw, "run_id").astype(str)
    out["run_name"] = _column(raw, "tags.mlflow.runName")
    out["part"] = _column(raw, f"tags.{PART}")
    out["status"] = _column(raw, "status")
    out["start_time"] = pd.to_datetime(_column(raw, "start_time"), utc=True)
    out["experiment_id"] = _column(raw, "experiment_id").astype(str)
    out["parent_run_id"] = _column(raw, "tags.mlflow.parentRunId")
    out["study"] = _column(raw, f"tags.{STUDY_TAG}")
    out["studies"] = _studies(raw)
    smoke_tag = _column(raw, f"tags.{SMOKE}")
    out["smoke"] = _to_bool(smoke_tag.where(smoke_tag.notna(), _param(raw, "smoke")))
    out["variant"] = _column(raw, f"tags.{VARIANT}").fillna(DEFAULT_VARIANT)
    out["noise_status"] = _column(raw, f"tags.{NOISE_SCALE}")  # measured | off | unavailable: why
    out["failure"] = _column(raw, f"tags.{FAILURE}")
    out["cuda_graphs"] = _to_bool(_param(raw, "cuda_graphs"))  # runs from before the option: False
    out["tf32_conv"] = _tf32(_param(raw, "tf32_conv"), _param(raw, "device_type"))
    out["seeds_together"] = _column(raw, f"tags.{TOGETHER}")  # '43, 44, 45': trained together, no timings
    for key in INT_PARAMS:
        out[key] = _to_int(_param(raw, key))
    for key in FLOAT_PARAMS:
        out[key] = pd.to_numeric(_param(raw, key), errors="coerce").astype(float)
    for key in STR_PARAMS:
        out[key] = _param(raw, key)
    for col in sorted(c for c in raw.columns if c.startswith("metrics.")):
        name = col[len("metrics."):]
        if name in out.columns:  # a per-update series named as a param (`lr`): the param is the run's setting
            continue
        out[name] = pd.to_numeric(raw[col], errors="coerce").astype(float)
    return out.reset_index(drop=True)


def _frame(runs) -> pd.DataFrame:
    """Runs as search_runs' pandas layout (built here: faster than MLflow's own conversion)."""
    records = []
    for run in runs:
        record = {"run_id": run.info.run_id, "experiment_id": run.info.experiment_id,
                  "status": run.info.status, "start_time": run.info.start_time}
        record.update({f"params.{k}": v for k, v in run.data.params.items()})
        record.update({f"tags.{k}": v for k, v in run.data.tags.items()})
        record.update({f"metrics.{k}": v for k, v in run.data.metrics.items()})
        records.append(record)
    frame = pd.DataFrame.from_records(records)
    if len(frame):
        frame["start_time"] = pd.to_datetime(frame["start_time"], unit="ms", utc=True)
    return frame


def smoke_choice(value: bool | str) -> bool | str:
    """True, False or "auto" from a bool or its spelling (the CLI's and MLproject's strings)."""
    text = str(value).strip().lower()
    if text in ("true", "1", "yes", "false", "0", "no", "auto"):
        return "auto" if text == "auto" else text in ("true", "1", "yes")
    raise TrackingError(f"include_smoke must be true, false or auto, got {value!r}")


class EmptyResultWarning(UserWarning):
    """load_runs found nothing, and knows where the runs probably are."""


def load_runs(experiment: str | Sequence[str] | None = None, study: str | None = None,
              parts: Iterable[str] | None = None, include_smoke: bool | str = "auto",
              statuses: Iterable[str] | None = ("FINISHED",)) -> pd.DataFrame:
    """One typed row per run of the experiment(s) (names or ids), newest first.

    study: only runs tagged `gradacc.study.<study>`; parts: only these `gradacc.part` values (None: all);
    include_smoke: True keeps smoke runs, False leaves them out; "auto" (default) gives the real runs, or the
    smoke runs where no real run matches (never both), so that a query works right after a smoke study;
    statuses: run statuses to keep (None: all). Params are cast (ints, floats, bools); every metric's latest
    value is a float column under its own name."""
    include_smoke = smoke_choice(include_smoke)
    if study is not None and not STUDY_ID.fullmatch(str(study)):
        raise TrackingError(f"study id {study!r} is not valid: {STUDY_ID_RULE}")
    parts = tuple(parts) if parts is not None else None
    statuses = tuple(statuses) if statuses is not None else None
    experiments = resolve_experiments(experiment)
    filter_string = _filter_string(study, parts, statuses)
    try:
        frames = [_frame(mlflow.search_runs(experiment_ids=[exp_id], filter_string=filter_string,
                                            output_format="list")) for exp_id, _name in experiments]
    except mlflow.exceptions.MlflowException as err:
        first = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise TrackingError(f"searching runs in {mlflow.get_tracking_uri()} failed: {first}") from None
    frames = [f for f in frames if len(f)]
    if not frames:
        elsewhere = where_else(others_with_runs([exp_id for exp_id, _ in experiments]), python=True)
        if elsewhere and not study:
            names = ", ".join(repr(name) for _, name in experiments)
            warnings.warn(f"load_runs: experiment {names} has no gradacc runs{elsewhere}", EmptyResultWarning,
                          stacklevel=2)
        return tidy_runs(pd.DataFrame(columns=["run_id", "status", "start_time", "experiment_id"]))
    runs = tidy_runs(pd.concat(frames, ignore_index=True))
    keep = pd.Series(True, index=runs.index)
    if parts is not None:
        keep &= runs["part"].isin(parts)
    if statuses is not None:
        keep &= runs["status"].isin(statuses)
    only_smoke = not (keep & ~runs["smoke"]).any() and bool((keep & runs["smoke"]).any())
    if include_smoke is False and only_smoke:
        warnings.warn(f"load_runs: only smoke runs match ({int((keep & runs['smoke']).sum())}); they are left "
                      "out unless include_smoke=True or 'auto'", EmptyResultWarning, stacklevel=2)
    if not (include_smoke is True or (include_smoke == "auto" and only_smoke)):
        keep &= ~runs["smoke"]
    runs = runs[keep].sort_values("start_time", ascending=False, kind="stable")
    return runs.reset_index(drop=True)


def _history(client: MlflowClient, run_id: str, key: str) -> list[tuple[int, float]]:
    return [(m.step, m.value) for m in client.get_metric_history(run_id, key)]


def load_series(runs: pd.DataFrame, keys: Iterable[str] | None = None) -> pd.DataFrame:
    """Metric histories of the given runs only, long: [run_id, part, k, key, step, value], sorted.

    keys: the series to fetch (default: every per-step series of each run's part); a run whose part has no
    such series is skipped. One get_metric_history call per (run, key), run on a small thread pool."""
    wanted = tuple(keys) if keys is not None else None
    jobs = []
    for row in runs[["run_id", "part", "k"]].itertuples(index=False):
        own = SERIES.get(row.part, ())
        for key in (own if wanted is None else [k for k in wanted if k in own]):
            jobs.append((row.run_id, row.part, row.k, key))
    if not jobs:
        return pd.DataFrame({c: pd.Series(dtype=t) for c, t in zip(
            SERIES_COLUMNS, (object, object, "Int64", object, "int64", "float64"))})
    client = MlflowClient()
    with ThreadPoolExecutor(max_workers=min(HISTORY_THREADS, len(jobs))) as pool:
        histories = list(pool.map(lambda job: _history(client, job[0], job[3]), jobs))
    lengths = [len(h) for h in histories]
    series = pd.DataFrame({
        "run_id": np.repeat([j[0] for j in jobs], lengths),
        "part": np.repeat([j[1] for j in jobs], lengths),
        "k": pd.array(np.repeat([j[2] for j in jobs], lengths), dtype="Int64"),
        "key": np.repeat([j[3] for j in jobs], lengths),
        "step": np.array([s for h in histories for s, _ in h], dtype="int64"),
        "value": np.array([v for h in histories for _, v in h], dtype="float64"),
    })
    # A summary shares no key with a series, so every (run, key, step) is one value; keep the last logged.
    series = series.drop_duplicates(["run_id", "key", "step"], keep="last")
    return series.sort_values(["k", "run_id", "key", "step"], kind="stable").reset_index(drop=True)
