"""Synthetic runs for the compare tests: logged with MlflowClient under the real names, or as in-memory frames."""
from __future__ import annotations

import atexit
import os
import shutil
import tempfile
import time
from functools import cache
from pathlib import Path

import numpy as np
import pandas as pd
from mlflow.entities import Metric, Param, RunTag
from mlflow.tracking import MlflowClient

MLFLOW_ENV = ("MLFLOW_RUN_ID", "MLFLOW_EXPERIMENT_NAME", "MLFLOW_EXPERIMENT_ID")
T0_MS = 1_790_000_000_000  # a fixed start time: run i of a test starts at T0 + i minutes
MICRO = 64


@cache
def _template_db() -> Path:
    """An empty sqlite store with MLflow's tables, made once per session: creating them takes seconds."""
    folder = Path(tempfile.mkdtemp(prefix="gradacc-store-"))
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    path = folder / "mlflow.db"
    previous = os.environ.get("MLFLOW_TRACKING_URI")
    os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{path}"
    try:
        MlflowClient().search_experiments()
    finally:
        if previous is None:
            os.environ.pop("MLFLOW_TRACKING_URI")
        else:
            os.environ["MLFLOW_TRACKING_URI"] = previous
    return path


def fresh_store(folder: Path, monkeypatch) -> str:
    """A store of its own in `folder` (a copy of the empty template), cwd there, no inherited run or
    experiment; returns its URI. Same contract as conftest's `tracking_store`, seconds faster."""
    shutil.copyfile(_template_db(), folder / "mlflow.db")
    uri = f"sqlite:///{folder / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    for name in MLFLOW_ENV:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(folder)
    return uri


def config_params(k: int, seed: int, loader: str, device_type: str, device_name: str, epochs: int,
                  threads: int, smoke: bool) -> dict[str, str]:
    train, test = (1024, 256) if smoke else (10_240, 2_048)
    upe = train // (MICRO * k)
    return {"k": str(k), "epochs": str(epochs), "seed": str(seed), "device": "auto", "loader": loader,
            "threads": "auto", "data_dir": "", "smoke": str(smoke).lower(), "micro_batch": str(MICRO),
            "train_size": str(train), "test_size": str(test), "lr": "0.1", "momentum": "0.9",
            "weight_decay": "0.0005", "eval_batch": "256", "warmup_micro_iters": "2" if smoke else "20",
            "timed_micro_iters": "8" if smoke else "80", "effective_batch": str(MICRO * k),
            "updates_per_epoch": str(upe), "total_updates": str(epochs * upe), "device_type": device_type,
            "device_name": device_name, "torch_threads": str(threads), "cpu_model": "Test CPU",
            "torch_version": "2.14.1", "cuda_version": "None", "cudnn_deterministic": "true",
            "code_version": "abc123", "data_path": "/data"}


def part_metrics(part: str, k: int, total_updates: int, epochs: int, micro_ms: float, step_ms: float,
                 update_extra_ms: float, accuracy: float, final_loss: float):
    """(series {name: (steps, values)}, summaries) shaped like the part's real ones."""
    if part == "micro":
        series = {"micro_iter_ms": (list(range(80)), [micro_ms] * 80),
                  "opt_step_ms": (list(range(80 // k)), [step_ms] * (80 // k))}
        return series, {"micro_iter_ms_mean": micro_ms, "micro_iter_ms_std": micro_ms * 0.02,
                        "micro_iter_ms_p90": micro_ms * 1.03, "opt_step_ms_mean": step_ms}
    if part == "update":
        update_s = (k * micro_ms + step_ms + update_extra_ms) / 1e3
        return ({"update_time_s": (list(range(total_updates)), [update_s] * total_updates)},
                {"update_time_s_mean": update_s, "update_time_s_std": 0.0, "throughput_img_s": MICRO * k / update_s})
    first_loss = final_loss + 1.0
    epoch_loss = [first_loss - (first_loss - final_loss) * e / max(epochs - 1, 1) for e in range(epochs)]
    noise = np.random.default_rng(k).normal(0.0, 0.15, total_updates)  # per-update losses are noisy
    per_update = [first_loss + 0.5 - (first_loss + 0.5 - final_loss) * u / max(total_updates - 1, 1) + float(e)
                  for u, e in zip(range(total_updates), noise)]
    acc_epoch = [accuracy - 2.0 * (epochs - 1 - e) for e in range(epochs)]
    series = {"train_loss": (list(range(1, epochs + 1)), epoch_loss),
              "train_loss_update": (list(range(total_updates)), per_update),
              "test_accuracy_epoch": (list(range(1, epochs + 1)), acc_epoch)}
    return series, {"test_accuracy": accuracy, "final_train_loss": final_loss}


class SyntheticStore:
    """Logs runs into one experiment; every run starts one minute after the previous (newest = last logged)."""

    def __init__(self, experiment: str = "Default"):  # MLflow's default experiment, where load_runs() looks
        self.client = MlflowClient()
        found = self.client.get_experiment_by_name(experiment)
        self.exp_id = found.experiment_id if found else self.client.create_experiment(experiment)
        self.count = 0

    def log(self, part: str, k: int, seed: int = 42, *, micro_ms: float = 100.0, step_ms: float = 5.0,
            update_extra_ms: float = 2.0, accuracy: float = 40.0, final_loss: float = 1.7, loader: str = "device",
            device_type: str = "cpu", device_name: str = "Test CPU", epochs: int = 5, threads: int = 2,
            smoke: bool = False, status: str = "FINISHED", studies: tuple[str, ...] = (),
            variant: str | None = None, given_epochs: str | None = None, tf32: str | None = None) -> str:
        start = T0_MS + 60_000 * self.count
        self.count += 1
        params = config_params(k, seed, loader, device_type, device_name, epochs, threads, smoke)
        if tf32 is not None:  # the resolved runtime's tf32_conv; None: a run from before gradacc logged it
            params["tf32_conv"] = tf32
        if given_epochs is not None:  # as `mlflow run` logs it: given value, resolved one under _resolved
            params["epochs"], params["epochs_resolved"] = given_epochs, str(epochs)
        tags = {"mlflow.runName": f"{part}-k{k}" + ("-smoke" if smoke else ""), "gradacc.part": part,
                "gradacc.schema": "1", "gradacc.smoke": str(smoke).lower()}
        for study in studies:
            tags[f"gradacc.study.{study}"] = "1"
        if studies:
            tags["gradacc.study"] = studies[-1]
        if variant:
            tags["gradacc.variant"] = variant
        run = self.client.create_run(self.exp_id, start_time=start, run_name=tags["mlflow.runName"])
        series, summaries = part_metrics(part, k, int(params["total_updates"]), epochs, micro_ms, step_ms,
                                         update_extra_ms, accuracy, final_loss)
        now = int(time.time() * 1000)
        metrics = [Metric(n, float(v), now, int(s)) for n, (steps, vals) in series.items()
                   for s, v in zip(steps, vals)] + [Metric(n, float(v), now, 0) for n, v in summaries.items()]
        self.client.log_batch(run.info.run_id, params=[Param(k_, v) for k_, v in params.items()],
                              tags=[RunTag(k_, v) for k_, v in tags.items()])
        for i in range(0, len(metrics), 1000):
            self.client.log_batch(run.info.run_id, metrics=metrics[i:i + 1000])
        self.client.set_terminated(run.info.run_id, status=status, end_time=start + 30_000)
        return run.info.run_id

    def sweep_run(self, study: str, ks, parts=("micro", "update", "converge")) -> str:
        """The parent run of a sweep: gradacc.part=sweep, params ks and parts, the study's tags."""
        run = self.client.create_run(self.exp_id, start_time=T0_MS + 60_000 * self.count, run_name="sweep")
        self.count += 1
        self.client.log_batch(run.info.run_id, params=[Param("ks", ",".join(map(str, ks))),
                                                       Param("parts", ",".join(parts))],
                              tags=[RunTag("gradacc.part", "sweep"), RunTag("gradacc.smoke", "false"),
                                    RunTag(f"gradacc.study.{study}", "1"), RunTag("gradacc.study", study)])
        self.client.set_terminated(run.info.run_id, "FINISHED")
        return run.info.run_id

    def sweep(self, ks=(1, 2, 4, 8), seeds=(42,), parts=("micro", "update", "converge"), study: str | None = None,
              micro_ms=lambda k, seed: 100.0, accuracy=lambda k, seed: 45.0 - 2.5 * k ** 0.5,
              final_loss=lambda k, seed: 1.5 + 0.05 * k, log_sweep_run: bool = True, **common) -> dict:
        """A study: the sweep parent run (gradacc.part=sweep, params ks and parts), then each part for each
        K and seed; the metric callables take (k, seed). Returns {(part, k, seed): run_id, 'sweep': run_id}."""
        studies = (study,) if study else ()
        ids = {"sweep": self.sweep_run(study, ks, parts)} if log_sweep_run and study else {}
        for seed in seeds:
            for k in ks:
                for part in parts:
                    ids[part, k, seed] = self.log(part, k, seed, micro_ms=micro_ms(k, seed),
                                                  accuracy=accuracy(k, seed), final_loss=final_loss(k, seed),
                                                  studies=studies, **common)
        return ids


def runs_frame(micro=None, update=None, accuracy=None, loss=None, seeds=(42,), **setting) -> pd.DataFrame:
    """Typed runs as load_runs returns them: {k: value} per metric, one run per (part, K, seed); `setting`
    overrides the protocol's columns (device_type="cuda", lr=0.05, lr_scaling="linear", ...) on every run."""
    base = {"status": "FINISHED", "variant": "protocol", "smoke": False, "cuda_graphs": False, "device_type": "cpu",
            "device_name": "CPU", "torch_threads": 2, "loader": "device", "epochs": 5, "micro_batch": 64,
            "train_size": 10240, "test_size": 2048, "lr": 0.1, "momentum": 0.9, "weight_decay": 5e-4,
            "eval_batch": 256, "warmup_micro_iters": 20, "timed_micro_iters": 80, "code_version": "x",
            "studies": ()} | setting
    rows = []
    for seed in seeds:
        for part, values in (("micro", micro), ("update", update), ("converge", accuracy)):
            for k, value in (values or {}).items():
                row = dict(base, part=part, k=k, seed=seed, effective_batch=64 * k, total_updates=5 * 160 // k,
                           run_id=f"{part}{k}-{seed}", run_name=f"{part}-k{k}",
                           start_time=pd.Timestamp("2026-01-01", tz="UTC") + pd.Timedelta(minutes=len(rows)))
                if part == "micro":
                    row.update(micro_iter_ms_mean=value, micro_iter_ms_std=value * 0.05, opt_step_ms_mean=5.0)
                elif part == "update":
                    row.update(update_time_s_mean=value, throughput_img_s=64 * k / value)
                else:
                    row.update(test_accuracy=value, final_train_loss=(loss or {}).get(k, 1.0))
                rows.append(row)
    return pd.DataFrame(rows)
