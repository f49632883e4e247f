"""`gradacc bench`'s end-to-end line: the whole study as gradacc runs it against the seeds' way of running it
(seeds_reference.py beside this file, shipped with the package), each in a fresh process on the same data and
thread count, one after the other."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from gradacc.bench.costs import KINDS
from gradacc.bench.lines import Line, tracking_store
from gradacc.core.config import Protocol
from gradacc.core.errors import GradaccError
from gradacc.tracking.results import load_runs

REFERENCE = Path(__file__).resolve().with_name("seeds_reference.py")


def _run(command: list[str], env: dict[str, str], what: str, cwd: str) -> float:
    """Wall seconds of a child process, its output passed on to our stderr; a failure is a one-line error."""
    start = time.perf_counter()
    last = ""
    with subprocess.Popen(command, env=env, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          text=True) as child:
        for line in child.stdout:
            print(line, end="", file=sys.stderr, flush=True)
            last = line.strip() or last
    if child.returncode != 0:
        raise GradaccError(f"bench: {what} exited with code {child.returncode}: {last}")
    return time.perf_counter() - start


def _gradacc_results(uri: str, study: str, smoke: bool, seed: int) -> tuple[dict[int, dict], float]:
    """Per K the figures of gradacc's side for `seed` (the reference's one), and the seconds its runs spent
    measuring (their wall_time_s; seeds trained together have none)."""
    with tracking_store(uri):
        runs = load_runs(experiment="gradacc-bench-e2e", study=study, parts=("micro", "converge"),
                         include_smoke=smoke)
    out: dict[int, dict] = {}
    for row in runs[runs["seed"].astype(int) == seed].itertuples():
        entry = out.setdefault(int(row.k), {})
        if row.part == "micro":
            entry["micro_iter_ms"] = row.micro_iter_ms_mean
        elif row.part == "converge":
            entry.update(update_time_s=row.update_time_s_mean, final_train_loss=row.final_train_loss,
                         test_accuracy=row.test_accuracy)
    return out, float(runs["wall_time_s"].sum())


def fixed_costs(costs: dict, measured_s: float, started: float, ended: float, wall_s: float) -> dict[str, float]:
    """The study's overhead (its wall minus its runs' own wall_time_s) by kind, from gradacc/bench/costs.py's
    FILE and the epoch seconds at which the bench started the process and saw it end: the interpreter's start,
    imports, data, the store, tracking the runs (their time less what they measured), their PNGs, compare, the
    exit after the command returned, and the rest."""
    seconds = costs["seconds"]
    out = {"start": costs["started_at"] - started, "imports": seconds.get("imports", 0.0),
           "data": seconds.get("data", 0.0), "store": seconds.get("store", 0.0),
           "runs' tracking": seconds.get("runs", 0.0) - measured_s,
           "per-run PNGs": seconds.get("per-run PNGs", 0.0), "compare": seconds.get("compare", 0.0),
           "exit": ended - costs["returned_at"]}
    out["other"] = wall_s - measured_s - sum(out.values())
    return {kind: out[kind] for kind in KINDS}


def bench_end_to_end(data_root: Path, ks: tuple[int, ...], protocol: Protocol, threads: int,
                     device: str, seeds: int = 1) -> tuple[list[Line], str]:
    """Returns the lines (gradacc's wall against the reference's; the study's overhead: its wall minus what its
    runs measured, against its wall) and a per-K table of both sides' results.
    Both sides run `protocol`'s sizes, epochs and seed (the smoke protocol's too, for the tests). With `seeds` > 1
    gradacc's side is the study of that many seeds (`--repeats`, the seeds after the first trained together where
    the device allows: --seeds-together auto) against the reference's one seed: the seeds line."""
    if not REFERENCE.is_file():
        raise GradaccError(f"bench: the reference script {REFERENCE} is not there (it ships with the package)")
    klist, epochs, seed = ",".join(map(str, ks)), protocol.epochs, protocol.seed
    with tempfile.TemporaryDirectory(prefix="gradacc-bench-e2e-") as tmp:
        uri = f"sqlite:///{Path(tmp) / 'mlflow.db'}"
        env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
        env.update(MLFLOW_TRACKING_URI=uri, MLFLOW_EXPERIMENT_NAME="gradacc-bench-e2e")
        costs_json = Path(tmp) / "costs.json"
        started = time.time()
        # `python -m gradacc sweep` with its fixed costs timed by kind (costs.py, beside this file)
        ours = _run([sys.executable, "-m", "gradacc.bench.costs", "--out", str(costs_json), "sweep", "--ks", klist,
                     "--epochs", str(epochs), "--seed", str(seed), "--threads", str(threads), "--device", device,
                     "--data-dir", str(data_root), "--study", "bench", "--force", "true", "--output",
                     str(Path(tmp) / "out"), "--smoke", str(protocol.smoke).lower(), "--cuda-graphs",
                     str(protocol.cuda_graphs).lower(), "--repeats", str(seeds), "--seeds-together", "auto"],
                    # the default main job's parts and noise scale: one training pass per K
                    env, "gradacc sweep", tmp)
        ended, costs = time.time(), json.loads(costs_json.read_text())
        ref_json = Path(tmp) / "reference.json"
        theirs = _run([sys.executable, str(REFERENCE), "--data-dir", str(data_root), "--ks", klist, "--epochs",
                       str(epochs), "--seed", str(seed), "--threads", str(threads), "--device",
                       "cuda" if device == "cuda" else "cpu", "--out", str(ref_json), "--train-size",
                       str(protocol.train_size), "--test-size", str(protocol.test_size), "--micro-iters",
                       f"{protocol.warmup_micro_iters},{protocol.timed_micro_iters}"], env, "the reference", tmp)
        reference = {int(k): v for k, v in json.loads(ref_json.read_text())["results"].items()}
        ours_results, measuring_s = _gradacc_results(uri, "bench", protocol.smoke, seed)
    rows = ["K  side       micro ms  update s  final loss  test acc %"]
    for k in ks:
        a, b = ours_results.get(k, {}), reference.get(k, {})
        rows.append(f"{k:<2} gradacc    {a.get('micro_iter_ms', float('nan')):8.2f}  "
                    f"{a.get('update_time_s', float('nan')):8.4f}  {a.get('final_train_loss', float('nan')):10.3f}"
                    f"  {a.get('test_accuracy', float('nan')):10.1f}")
        rows.append(f"{k:<2} reference  {b.get('micro_iter_ms', float('nan')):8.2f}  "
                    f"{b.get('update_time_s', float('nan')):8.4f}  {b.get('train_loss', [float('nan')])[-1]:10.3f}"
                    f"  {b.get('test_accuracy', float('nan')):10.1f}")
    if seeds > 1:
        together = "the seeds after the first trained together" if device == "cuda" else "one seed after another"
        line = Line(f"{seeds} seeds against one", f"gradacc, {seeds} seeds", ours, "seeds' reference, 1 seed",
                    theirs, "s", goal="<= 1.0" if device == "cuda" else "",
                    note=f"K={klist}, {epochs} epoch(s), {threads} torch threads, {device}; gradacc: the default "
                         f"main job with --repeats {seeds} (Parts 1 and 2 on the first seed, converge on all; "
                         f"{together}); reference: one seed's micro, update and converge runs. The table: seed "
                         f"{seed} on both sides")
        return [line], "\n".join(rows)
    goal = "<= 0.5" if device == "cpu" else "<= 0.2"  # >= 5x faster on a GPU
    line = Line("end to end, the study", "gradacc", ours, "seeds' reference", theirs, "s", goal=goal,
                note=f"K={klist}, {epochs} epoch(s), {threads} torch threads, {device}; gradacc: the default main "
                     "job (micro and converge runs; the converge runs time the updates and, for K >= 2, measure "
                     "the noise scale)" + (", updates replayed from CUDA graphs" if protocol.cuda_graphs else "")
                     + "; reference: micro, update and converge runs, no noise scale")
    overhead = Line("the study's overhead", "wall minus the runs' own time", ours - measuring_s, "wall", ours, "s",
                    goal="<= 0.15" if device == "cuda" else "",
                    note=f"of gradacc's {ours:.1f} s its runs measured for {measuring_s:.1f} s (their wall_time_s); "
                         "the rest is start-up, data, tracking, per-run files and compare (by kind: "
                         "gradacc/bench/costs.py)",
                    parts=fixed_costs(costs, measuring_s, started, ended, ours))
    return [line, overhead], "\n".join(rows)
