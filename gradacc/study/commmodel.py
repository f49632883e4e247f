"""The Part 4 model fed by the store's runs (`gradacc commmodel`): tables and plots in a folder, logged as a
`commmodel` run: predicted update time, throughput, speed-up and efficiency per interconnect and N, the best N
for time to a target training loss, and the real DDP runs against their prediction."""
from __future__ import annotations

import os
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path

import pandas as pd

from gradacc.analysis.commmodel import model as cm
from gradacc.analysis.commmodel.check import DDP_CHECK_KEYS, check_rows
from gradacc.analysis.commmodel.inputs import convergence, micro_samples
from gradacc.analysis.commmodel.tables import check_markdown, presets_markdown, summary_markdown
from gradacc.analysis.plots.commmodel import write_model_plots
from gradacc.core.config import GRADIENT_BYTES, RESNET18_PARAMS
from gradacc.core.errors import ConfigError, GradaccError
from gradacc.names import ALLREDUCE, COMMMODEL, COMMMODEL_OUTPUT, NOTE, part_tags
from gradacc.study.console import say
from gradacc.study.folders import cannot_write, check_writable
from gradacc.tracking.experiments import experiment_id
from gradacc.tracking.results import load_runs, load_series
from gradacc.tracking.runs import copies_of, print_link, tracked_run

CHECK_SERIES = ["micro_iter_ms", "train_loss_update", *DDP_CHECK_KEYS]


class ModelError(GradaccError, RuntimeError):
    """The store lacks what the model needs (Part 1 micro runs), or its tables cannot be written."""


@dataclass(frozen=True)
class ModelOptions:
    """`gradacc commmodel`'s options, "auto" as None: the network, the workers, the target and where to write."""

    experiment: str | None = None
    gpus_per_node: int = 8
    nics_per_node: int | None = None
    intra: str = "nvlink"
    latency_us: float | None = None
    bandwidth_gb_s: float | None = None
    overlap: float = 0.0
    bucket_mb: float = 25.0
    max_workers: int = 64
    target_loss: float | None = None
    output: str = COMMMODEL_OUTPUT
    include_smoke: bool | str = "auto"


def build_model_outputs(options: ModelOptions):
    """Everything the command writes, computed from the store: (rows, best, checks, inputs, links)."""
    o, experiment = options, options.experiment
    runs = load_runs(experiment, parts=["micro", "converge", "ddp"], include_smoke=o.include_smoke)
    micro, converge, ddp_runs = (runs[runs["part"] == p] for p in ("micro", "converge", "ddp"))
    with warnings.catch_warnings():  # a store without a benchmark is fine: the check then says how to add one
        warnings.simplefilter("ignore")
        bench = load_runs(experiment, parts=[ALLREDUCE], include_smoke=True)  # a benchmark has no smoke form
    series = load_series(pd.concat([micro, converge, ddp_runs]), keys=CHECK_SERIES)
    samples = micro_samples(micro, series)
    if samples is None:
        raise ModelError("no FINISHED micro runs in the store: the model needs Part 1's micro-iteration times "
                         "(run `gradacc micro --k 1` first)")
    extra = [cm.custom_link(o.latency_us, o.bandwidth_gb_s)] if o.bandwidth_gb_s else []
    topologies = cm.preset_topologies(o.gpus_per_node, o.intra, extra, o.nics_per_node)
    ns = list(range(1, o.max_workers + 1))
    rows = cm.predict(samples.seconds, samples.step_s, GRADIENT_BYTES, topologies, ns, overlap=o.overlap,
                      bucket_bytes=o.bucket_mb * 2**20)
    conv = convergence(converge, series, o.target_loss)
    curve = cm.updates_curve(conv.measured, ns) if conv else None
    best = cm.best_workers(rows, curve) if conv else {}
    best["within measured"] = cm.best_workers(rows, curve, measured_only=True) if conv else {}
    checks = check_rows(ddp_runs, micro, series, bench, o.latency_us, o.bandwidth_gb_s, cores=os.cpu_count())
    links = [*cm.PRESETS.values(), *extra]
    inputs = {"samples": samples, "convergence": conv, "gradient_bytes": GRADIENT_BYTES,
              "smoke": bool(runs["smoke"].any())}  # include_smoke auto: smoke runs only where there is no real one
    return rows, best, checks, inputs, links


def run_commmodel(options: ModelOptions) -> Path:
    """Computes the model from the store, writes its tables and plots to `options.output`, logs them as a run."""
    o = options
    if (o.latency_us is None) != (o.bandwidth_gb_s is None):
        raise ConfigError("give both --latency-us and --bandwidth-gb-s (a link has both), or neither")
    folder = Path(o.output)
    check_writable(folder, "the model's tables", ModelError)  # before the store is read
    rows, best, checks, inputs, links = build_model_outputs(options)
    samples, conv = inputs["samples"], inputs["convergence"]
    best_measured = best.pop("within measured")
    notes = (f"Gradient {inputs['gradient_bytes']:,} bytes (float32 ResNet-18, {RESNET18_PARAMS:,} parameters); "
             f"compute from {len(samples.seconds)} micro-iterations of {samples.runs} micro run(s) on "
             f"{samples.device_name} ({samples.threads} threads), step {samples.step_s * 1e3:.3g} ms; "
             + (f"target loss {conv.target_loss:.3f}, updates to it measured at N={sorted(conv.measured)}"
                f" (= {conv.measured})" if conv else "no converge runs: no time to target") + ".\n")
    files = {"commmodel.csv": pd.DataFrame(rows).to_csv(index=False),
             "table.md": notes + "\n" + summary_markdown(rows, best, best_measured=best_measured),
             "check.md": check_markdown(checks),
             "presets.md": presets_markdown(links)}
    try:
        for name, text in files.items():
            (folder / name).write_text(text)
        plots = write_model_plots(pd.DataFrame(rows), best, pd.DataFrame(checks), folder / "plots")
    except OSError as err:
        raise ModelError(cannot_write("the model's tables", folder, err)) from None
    print(notes + "\n" + summary_markdown(rows, best, best_measured=best_measured) + "\nReal DDP runs:\n"
          + check_markdown(checks))
    with tracked_run(COMMMODEL, part_tags(COMMMODEL, inputs["smoke"]), experiment_id(o.experiment)) as run:
        # the options as given (None as auto); the card count auto resolved to as nics_per_node_resolved
        given = {key: "auto" if value is None else str(value).lower() if isinstance(value, bool) else value
                 for key, value in asdict(o).items() if key != "experiment"}
        resolved = {"gradient_bytes": inputs["gradient_bytes"],
                    "nics_per_node": cm.nics_resolved(o.gpus_per_node, o.nics_per_node)}
        run.log_params({k: str(v) for k, v in given.items()}, {k: str(v) for k, v in resolved.items()})
        run.log_metrics({}, {f"best_workers.{name.split(' (')[0]}": b["workers"] for name, b in best.items()})
        run.log_files({}, writers=[copies_of([*(folder / n for n in files), *plots.values()], folder)])
        run.set_tags({NOTE: "Part 4's model: the update time and scaling efficiency of N workers on "
                            f"{o.gpus_per_node} GPUs per node ({o.intra}) from this store's measurements, the best N "
                            f"per interconnect, checked against real DDP runs; tables and plots in {folder}."})
    say(f"commmodel: tables and plots in {folder}")
    print_link(run.experiment_id, run.run_id)
    return folder
