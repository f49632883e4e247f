"""`gradacc commmodel`: the Part 4 model fed by the store's runs -> tables and plots in a folder, logged as a
`commmodel` run: predicted update time, throughput, speed-up and efficiency per interconnect and N, the best
N for time to a target training loss, and the real DDP runs against their prediction."""
from __future__ import annotations

import shutil
from pathlib import Path

import click

from .errors import ConfigError, GradaccError

DEFAULT_OUTPUT = "commmodel-output"
SHOWN_NS = (1, 2, 4, 8, 16, 32, 64)


class ModelError(GradaccError, RuntimeError):
    """The store lacks what the model needs (Part 1 micro runs)."""


class OptionalNumber(click.ParamType):
    """A positive number, or '' (not given); `auto` too where allowed."""

    name = "number"

    def convert(self, value, param, ctx):
        text = str(value).strip() if value is not None else ""
        if text in ("", "auto"):
            return None
        try:
            number = float(text)
        except ValueError:
            self.fail(f"{value!r} is not a number", param, ctx)
        if not number > 0:
            self.fail(f"{value!r} must be positive", param, ctx)
        return number


def _fmt(value: float) -> str:
    return f"{value:,.0f}" if abs(value) >= 100 else f"{value:.3g}"


def summary_markdown(rows, best, ns=SHOWN_NS, best_measured=None) -> str:
    """Per interconnect and N: update ms, throughput, speed-up, efficiency (and time to target)."""
    head = "| interconnect | N | update ms | all-reduce ms (exposed) | throughput img/s | speed-up | efficiency | " \
           "time to target s |\n|---|---|---|---|---|---|---|---|\n"
    lines = []
    for r in rows:
        if r["workers"] not in ns:
            continue
        target = f"{_fmt(r['time_to_target_s'])}{' (extrap.)' if r['extrapolated'] else ''}" \
            if "time_to_target_s" in r else ""
        lines.append(f"| {r['interconnect']} | {r['workers']} | {_fmt(r['update_s'] * 1e3)} | "
                     f"{_fmt(r['allreduce_s'] * 1e3)} ({_fmt(r['exposed_s'] * 1e3)}) | {_fmt(r['throughput_img_s'])} | "
                     f"{r['speedup']:.2f} | {r['efficiency'] * 100:.0f}% | {target} |")
    best_measured = best_measured or {}
    best_lines = [f"| {name} | {b['workers']} | {_fmt(b['time_to_target_s'])} | "
                  f"{'extrapolated' if b['extrapolated'] else 'measured batch'} | "
                  + (f"{best_measured[name]['workers']} ({_fmt(best_measured[name]['time_to_target_s'])} s) |"
                     if name in best_measured else " |") for name, b in best.items()]
    table = head + "\n".join(lines) + "\n"
    if best_lines:
        table += ("\n| interconnect | best N (time to target) | time s | updates at that batch | best N within the "
                  "measured batches |\n|---|---|---|---|---|\n" + "\n".join(best_lines) + "\n")
    return table


def check_markdown(checks) -> str:
    if not checks:
        return "No real DDP runs in the store (run `gradacc ddp --workers N`).\n"
    head = ("| run | N | compute ms measured / predicted | all-reduce ms measured / predicted wait + all-reduce | "
            "update s measured / predicted | cores shared | link |\n|---|---|---|---|---|---|---|\n")
    return head + "".join(
        f"| {c['run']} | {c['workers']} | {_fmt(c['measured_compute_ms'])} / {_fmt(c['predicted_compute_ms'])} | "
        f"{_fmt(c['measured_allreduce_ms'])} / {_fmt(c['predicted_wait_plus_allreduce_ms'])} | "
        f"{c['measured_update_s']:.3g} / {c['predicted_update_s']:.3g} | {c['cores_shared']:.2g}x | {c['link']} |\n"
        for c in checks)


def presets_markdown(links) -> str:
    from .commmodel import LATENCY_NOTE
    return ("| key | link | bandwidth used (GB/s per direction) | as stated | latency us | source |\n"
            "|---|---|---|---|---|---|\n" + "".join(
                f"| {x.key} | {x.name} | {x.bandwidth_gb_s:g} | {x.stated} | {x.latency_s * 1e6:g} | {x.source} |\n"
                for x in links) + f"\nGB/s = 1e9 bytes/s; Gb/s = 1e9 bits/s = GB/s / 8; {LATENCY_NOTE}.\n")


def build_model_outputs(experiment, gpus_per_node, intra, latency_us, bandwidth_gb_s, overlap, bucket_mb,
                        max_workers, target_loss, include_smoke):
    """Everything the command writes, computed from the store: (rows, best, checks, inputs, links)."""
    import pandas as pd

    from . import commmodel as cm
    from .commmodel_data import check_rows, convergence, gradient_bytes, micro_samples
    from .results import load_runs, load_series
    runs = load_runs(experiment, parts=["micro", "converge", "ddp"], include_smoke=include_smoke)
    micro, converge, ddp_runs = (runs[runs["part"] == p] for p in ("micro", "converge", "ddp"))
    series = load_series(pd.concat([micro, converge]), keys=["micro_iter_ms", "train_loss_update"])
    samples = micro_samples(micro, series)
    if samples is None:
        raise ModelError("no FINISHED micro runs in the store: the model needs Part 1's micro-iteration times "
                         "(run `gradacc micro --k 1` first)")
    extra = [cm.custom_link(latency_us, bandwidth_gb_s)] if bandwidth_gb_s else []
    topologies = cm.preset_topologies(gpus_per_node, intra, extra)
    ns = list(range(1, max_workers + 1))
    grad = gradient_bytes()
    rows = cm.predict(samples.seconds, samples.step_s, grad, topologies, ns, overlap=overlap,
                      bucket_bytes=bucket_mb * 2**20)
    conv = convergence(converge, series, target_loss)
    curve = cm.updates_curve(conv.measured, ns) if conv else None
    best = cm.best_workers(rows, curve) if conv else {}
    best["within measured"] = cm.best_workers(rows, curve, measured_only=True) if conv else {}
    checks = check_rows(ddp_runs, micro, series, grad, latency_us, bandwidth_gb_s)
    links = [*cm.PRESETS.values(), *extra]
    return rows, best, checks, {"samples": samples, "convergence": conv, "gradient_bytes": grad}, links


@click.command("commmodel")
@click.option("--experiment", default=None, show_default="$MLFLOW_EXPERIMENT_NAME, else gradacc",
              help="MLflow experiment (name or id) whose micro, converge and ddp runs feed the model.")
@click.option("--gpus-per-node", type=click.IntRange(1), default=8, show_default=True,
              help="Workers per node for the network presets (joined inside the node by --intra).")
@click.option("--intra", type=click.Choice(["nvlink", "pcie4", "pcie5"]), default="nvlink", show_default=True,
              help="The link between the GPUs of one node under a network preset.")
@click.option("--latency-us", type=OptionalNumber(), default="", show_default="not given",
              help="A network link of your own: latency per ring step (us); with --bandwidth-gb-s.")
@click.option("--bandwidth-gb-s", type=OptionalNumber(), default="", show_default="not given",
              help="A network link of your own: bandwidth per direction in GB/s (Gb/s / 8).")
@click.option("--overlap", type=click.FloatRange(0, 1), default=0.0, show_default=True,
              help="Share of the backward pass (2/3 of a micro-iteration) that hides the all-reduce.")
@click.option("--bucket-mb", type=click.FloatRange(min=0.001), default=25.0, show_default=True,
              help="DDP bucket size in MiB (bucket_cap_mb): each bucket pays the latency once.")
@click.option("--max-workers", type=click.IntRange(1, 4096), default=64, show_default=True,
              help="Predict for N = 1..this.")
@click.option("--target-loss", type=OptionalNumber(), default="auto", show_default=True,
              help="Training loss to reach (trailing mean over an epoch); auto = the highest final loss "
                   "among the converge runs.")
@click.option("--output", default=DEFAULT_OUTPUT, show_default=True, type=click.Path(file_okay=False),
              help="Folder for the tables and plots.")
@click.option("--include-smoke", type=click.BOOL, is_flag=False, flag_value=True, default=False,
              help="Use smoke runs too.")
def commmodel(experiment, gpus_per_node, intra, latency_us, bandwidth_gb_s, overlap, bucket_mb, max_workers,
              target_loss, output, include_smoke):
    """Part 4's communication and straggler model, fed by the store's runs: tables and plots, as a run."""
    import pandas as pd

    from .commmodel_plots import write_model_plots
    from .tracking import print_link, tracked_run
    if (latency_us is None) != (bandwidth_gb_s is None):
        raise ConfigError("give both --latency-us and --bandwidth-gb-s (a link has both), or neither")
    rows, best, checks, inputs, links = build_model_outputs(
        experiment, gpus_per_node, intra, latency_us, bandwidth_gb_s, overlap, bucket_mb, max_workers,
        target_loss, include_smoke)
    folder = Path(output)
    folder.mkdir(parents=True, exist_ok=True)
    samples, conv = inputs["samples"], inputs["convergence"]
    best_measured = best.pop("within measured")
    notes = (f"Gradient {inputs['gradient_bytes']:,} bytes (float32 ResNet-18, counted from the model); "
             f"compute from {len(samples.seconds)} micro-iterations of {samples.runs} micro run(s) on "
             f"{samples.device_name} ({samples.threads} threads), step {samples.step_s * 1e3:.3g} ms; "
             + (f"target loss {conv.target_loss:.3f}, updates to it measured at N={sorted(conv.measured)}"
                f" (= {conv.measured})" if conv else "no converge runs: no time to target") + ".\n")
    files = {"commmodel.csv": pd.DataFrame(rows).to_csv(index=False),
             "table.md": notes + "\n" + summary_markdown(rows, best, best_measured=best_measured),
             "check.md": check_markdown(checks),
             "presets.md": presets_markdown(links)}
    for name, text in files.items():
        (folder / name).write_text(text)
    plots = write_model_plots(pd.DataFrame(rows), best, pd.DataFrame(checks), folder / "plots")
    click.echo(notes + "\n" + summary_markdown(rows, best, best_measured=best_measured) + "\nReal DDP runs:\n"
               + check_markdown(checks))
    tags = {"gradacc.part": "commmodel", "gradacc.smoke": str(include_smoke).lower()}
    with tracked_run("commmodel", tags, experiment) as run:
        given = {"gpus_per_node": gpus_per_node, "intra": intra, "latency_us": latency_us or "",
                 "bandwidth_gb_s": bandwidth_gb_s or "", "overlap": overlap, "bucket_mb": bucket_mb,
                 "max_workers": max_workers, "target_loss": "auto" if target_loss is None else target_loss,
                 "output": output, "include_smoke": str(include_smoke).lower()}
        run.log_params({k: str(v) for k, v in given.items()}, {"gradient_bytes": str(inputs["gradient_bytes"])})
        run.log_metrics({}, {f"best_workers.{name.split(' (')[0]}": b["workers"] for name, b in best.items()})

        def copy(root: Path) -> None:
            for path in [*(folder / n for n in files), *plots.values()]:
                target = root / path.relative_to(folder)
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(path, target)
        run.log_files({}, writers=[copy])
    click.echo(f"commmodel: tables and plots in {folder}", err=True)
    print_link(run.experiment_id, run.run_id)
