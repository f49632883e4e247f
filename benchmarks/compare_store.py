"""Benchmark: 500 synthetic runs with 800-step series in a sqlite store, then `compare` timed over it."""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
KS = (1, 2, 4, 8)
PARTS = ("micro", "update", "converge")
STEPS = 800  # every run carries at least one 800-step series
BATCH = 1000  # log_batch's limit on metrics per call


def params_for(k: int, seed: int, loader: str) -> dict[str, str]:
    upe = 10_240 // (64 * k)
    return {"k": str(k), "epochs": "5", "seed": str(seed), "device": "auto", "loader": loader, "threads": "auto",
            "data_dir": "", "smoke": "false", "micro_batch": "64", "train_size": "10240", "test_size": "2048",
            "lr": "0.1", "momentum": "0.9", "weight_decay": "0.0005", "eval_batch": "256",
            "warmup_micro_iters": "20", "timed_micro_iters": "80", "effective_batch": str(64 * k),
            "updates_per_epoch": str(upe), "total_updates": str(5 * upe), "device_type": "cpu",
            "device_name": "Bench CPU", "torch_threads": "2", "cpu_model": "Bench CPU", "torch_version": "2.14.1",
            "cuda_version": "None", "cudnn_deterministic": "true", "code_version": "bench", "data_path": "/data"}


def metrics_for(part: str, k: int, rng: np.random.Generator):
    steps = np.arange(STEPS)
    if part == "micro":
        micro = 450 + rng.normal(0, 5, STEPS)
        series = {"micro_iter_ms": micro, "opt_step_ms": 20 + rng.normal(0, 1, STEPS // k)}
        return series, {"micro_iter_ms_mean": micro.mean(), "micro_iter_ms_std": micro.std(),
                        "micro_iter_ms_p90": np.percentile(micro, 90), "opt_step_ms_mean": 20.0}
    if part == "update":
        update = (k * 0.45 + 0.03) * (1 + rng.normal(0, 0.02, STEPS))
        mean = update[STEPS // 5: STEPS - STEPS // 5].mean()
        return {"update_time_s": update}, {"update_time_s_mean": mean, "update_time_s_std": update.std(),
                                           "throughput_img_s": 64 * k / mean}
    loss = 3.2 - 1.5 * steps / STEPS + rng.normal(0, 0.15, STEPS)
    series = {"train_loss_update": loss, "train_loss": 3.0 - 0.3 * np.arange(5) - 0.05 * k,
              "test_accuracy_epoch": 30 + 2.5 * np.arange(5) - k}
    return series, {"test_accuracy": 40.0 - k + rng.normal(0, 0.5), "final_train_loss": 1.7 + 0.05 * k}


def log_run(client, exp_id: str, part: str, k: int, seed: int, study: str, start_ms: int, rng, loader="device"):
    from mlflow.entities import Metric, Param, RunTag
    run_id = client.create_run(exp_id, start_time=start_ms, run_name=f"{part}-k{k}").info.run_id
    tags = {"gradacc.part": part, "gradacc.schema": "1", "gradacc.smoke": "false",
            f"gradacc.study.{study}": "1", "gradacc.study": study}
    client.log_batch(run_id, params=[Param(a, b) for a, b in params_for(k, seed, loader).items()],
                     tags=[RunTag(a, b) for a, b in tags.items()])
    series, summaries = metrics_for(part, k, rng)
    metrics = [Metric(name, float(v), start_ms, i) for name, values in series.items() for i, v in enumerate(values)]
    metrics += [Metric(name, float(v), start_ms, 0) for name, v in summaries.items()]
    for i in range(0, len(metrics), BATCH):
        client.log_batch(run_id, metrics=metrics[i:i + BATCH])
    client.set_terminated(run_id, "FINISHED", end_time=start_ms + 1000)
    return len(metrics)


def populate(n_runs: int, studies: int) -> tuple[int, float]:
    """Studies of seeds 42, 43, ... (each K, each part); later studies repeat the seeds of earlier ones, so
    that the whole experiment has repeats where the newest run wins. Returns (metric values, seconds)."""
    from mlflow.tracking import MlflowClient
    client = MlflowClient()
    exp_id = client.create_experiment("gradacc")
    rng = np.random.default_rng(0)
    per_study = max(1, n_runs // studies)
    start, logged, count, t0 = 1_790_000_000_000, 0, 0, time.perf_counter()
    for s in range(studies):
        seeds = 42 + np.arange(max(1, per_study // (len(KS) * len(PARTS))))
        for seed in seeds:
            for k in KS:
                for part in PARTS:
                    if count < n_runs:
                        logged += log_run(client, exp_id, part, k, int(seed), f"s{s}", start + count * 1000, rng)
                        count += 1
    while count < n_runs:  # the remainder: update runs of the other loader, kept apart by compare
        k = KS[count % len(KS)]
        logged += log_run(client, exp_id, "update", k, 42, f"s{studies - 1}", start + count * 1000, rng,
                          loader="torchvision")
        count += 1
    return logged, time.perf_counter() - t0


def time_in_process(study: str | None, out: Path) -> dict[str, float]:
    """Each phase of run_compare, in this process (imports already paid)."""
    import pandas as pd

    from gradacc.analysis.compare import LOSS_KEYS, build_sections
    from gradacc.study.compare import run_compare, write_outputs
    from gradacc.tracking.results import load_runs, load_series
    times = {}
    t = time.perf_counter()
    runs = load_runs("gradacc", study=study, parts=None, statuses=None)
    times["load_runs_s"] = time.perf_counter() - t
    t = time.perf_counter()
    sections = build_sections(runs)
    times["group_s"] = time.perf_counter() - t
    chosen = pd.concat([s.runs for s in sections])
    t = time.perf_counter()
    series = load_series(chosen[chosen["part"] == "converge"], keys=LOSS_KEYS)
    times["load_series_s"] = time.perf_counter() - t
    times["series_rows"] = len(series)
    t = time.perf_counter()
    write_outputs(sections, series, out / "phases", "bench", "bench")
    times["plots_report_s"] = time.perf_counter() - t
    t = time.perf_counter()
    run_compare("gradacc", study, out / "full")
    times["run_compare_total_s"] = time.perf_counter() - t
    times["runs_loaded"], times["runs_compared"] = len(runs), len(chosen)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=500)
    parser.add_argument("--studies", type=int, default=8)
    parser.add_argument("--dir", default=None, help="work folder (default: a temporary one)")
    args = parser.parse_args()
    work = Path(args.dir or tempfile.mkdtemp(prefix="gradacc-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    os.chdir(work)
    os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{work / 'mlflow.db'}"
    for name in ("MLFLOW_RUN_ID", "MLFLOW_EXPERIMENT_NAME", "MLFLOW_EXPERIMENT_ID"):
        os.environ.pop(name, None)
    sys.path.insert(0, str(REPO))
    logged, seconds = populate(args.runs, args.studies)
    print(f"store: {args.runs} runs, {logged:,} metric values in {args.studies} studies, logged in {seconds:.1f} s "
          f"({work / 'mlflow.db'}, {(work / 'mlflow.db').stat().st_size / 2**20:.0f} MiB)")
    for label, study in (("one study (s0)", "s0"), ("whole experiment", None)):
        phases = time_in_process(study, work / (study or "all"))
        print(f"{label}: " + ", ".join(f"{k}={v:.2f}" if isinstance(v, float) else f"{k}={v}"
                                        for k, v in phases.items()))
        cmd = [sys.executable, "-c", "from gradacc.cli.compare import compare; compare.main(standalone_mode=True)",
               "--output", str(work / "cli")] + (["--study", study] if study else [])
        t = time.perf_counter()
        subprocess.run(cmd, check=True, capture_output=True, cwd=work)
        print(f"{label}: `gradacc compare` as a fresh process (imports included): {time.perf_counter() - t:.2f} s")


if __name__ == "__main__":
    main()
