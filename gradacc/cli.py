"""The command line: `gradacc` / `python -m gradacc`. Resolves every option once, then calls the runner."""
from __future__ import annotations

import signal
import sys
from pathlib import Path

import click

from .bench_cli import bench
from .compare_cli import DEFAULT_OUTPUT, compare
from .config import DEFAULT_KS, DEVICES, LOADERS, LR_SCALINGS, MAX_TRAIN_SIZE, NOISE_MODES, Protocol, smoke_protocol
from .cli_types import KList, Threads, WholeNumber
from .errors import ConfigError, GradaccError
from .upload_cli import upload

PARTS = ("micro", "update", "converge")


class Terminated(KeyboardInterrupt):
    """SIGTERM, handled like Ctrl-C: the run ends KILLED with what it measured."""


def common_options(func):
    """The options every measuring command shares (defaults = the protocol)."""
    options = [
        click.option("--epochs", type=WholeNumber(1), default=Protocol.epochs, show_default=True,
                     help="Epochs over the training subset (parts 2 and 3)."),
        click.option("--seed", type=WholeNumber(0), default=Protocol.seed, show_default=True,
                     help="Seed set before each model is built; also seeds the data order and augmentation."),
        click.option("--device", type=click.Choice(DEVICES), default="auto", show_default=True,
                     help="auto = CUDA when present, else CPU."),
        click.option("--loader", type=click.Choice(LOADERS), default=Protocol.loader, show_default=True,
                     help="device: subset on the device, batched augmentation there; torchvision: the seeds' "
                          "DataLoader (2 workers, pinned memory)."),
        click.option("--threads", type=Threads(), default="auto", show_default=True,
                     help="torch CPU threads (auto = torch's default, one per physical core)."),
        click.option("--data-dir", default="", show_default="$GRADACC_DATA_DIR, else ./data",
                     help="Folder that holds cifar-10-batches-py/."),
        click.option("--experiment", default=None, show_default="$MLFLOW_EXPERIMENT_NAME, else gradacc",
                     help="MLflow experiment (ignored under `mlflow run`, which chooses it)."),
        click.option("--cuda-graphs", type=click.BOOL, is_flag=False, flag_value=True, default=False,
                     help="Replay each update from a CUDA graph (Parts 2 and 3; same kernels, no Python "
                          "launches in between). CUDA only."),
        click.option("--smoke", type=click.BOOL, is_flag=False, flag_value=True, default=False,
                     help="Tiny subset (1,024 train / 256 test images), one epoch: seconds on a CPU. "
                          "Tagged gradacc.smoke=true so comparisons leave it out."),
    ]
    for option in reversed(options):
        func = option(func)
    return func


def variant_options(func):
    """Variants of the protocol (tagged gradacc.variant; compare keeps them apart from the protocol)."""
    options = [
        click.option("--lr-scaling", type=click.Choice(LR_SCALINGS), default=Protocol.lr_scaling,
                     help="Variant: linear = lr 0.1*K (Goyal et al. 2017)."),
        click.option("--warmup-epochs", type=WholeNumber(0), default=Protocol.warmup_epochs,
                     help="Variant: ramp the lr linearly from 0.1 to 0.1*K over these epochs (needs linear)."),
        click.option("--train-size", type=WholeNumber(64), default=Protocol.train_size,
                     help=f"Variant: the first N training images (up to {MAX_TRAIN_SIZE:,})."),
    ]
    for option in reversed(options):
        func = option(func)
    return func


def noise_option(func):
    """converge and sweep: the gradient noise scale (gradacc/noise.py)."""
    return click.option("--noise-scale", type=click.Choice(NOISE_MODES), default=Protocol.noise_scale,
                        help="converge: measure the gradient noise scale B_simple (auto: for K >= 2, unless "
                             "--cuda-graphs; such a run records no timings).")(func)


def build_protocol(k: int, epochs: int, seed: int, loader: str, smoke: bool, cuda_graphs: bool = False,
                   lr_scaling: str = "none", warmup_epochs: int = 0, train_size: int = Protocol.train_size,
                   noise_scale: str = "auto") -> Protocol:
    if cuda_graphs and noise_scale == "auto":
        noise_scale = "off"  # a graph replays whole updates: no micro-step to snapshot the gradients at
    variant = dict(lr_scaling=lr_scaling, warmup_epochs=warmup_epochs, noise_scale=noise_scale,
                   cuda_graphs=cuda_graphs)
    if smoke:
        return smoke_protocol(k, seed, loader, **variant).validate()
    return Protocol(k=k, epochs=epochs, seed=seed, loader=loader, train_size=train_size, **variant).validate()


def given_params(device, loader, threads, data_dir, smoke, cuda_graphs=False, **protocol_args) -> dict[str, str]:
    """The options as the user gave them, the same strings `mlflow run` logs for its parameters."""
    given = {key: str(value) for key, value in protocol_args.items()}
    given.update(device=device, loader=loader, threads=str(threads), data_dir=data_dir or "",
                 smoke=str(smoke).lower(), cuda_graphs=str(cuda_graphs).lower())
    return given


def prepare(protocols: list[Protocol], device: str, threads, data_dir: str):
    """Resolve the runtime and load the data once, for every configuration of this process."""
    from .data import resolve_data_dir
    from .parts import Context
    from .runtime import resolve_runtime
    runtime = resolve_runtime(device, None if threads == "auto" else threads)
    if any(p.cuda_graphs for p in protocols) and not runtime.is_cuda:
        raise ConfigError(f"--cuda-graphs needs a CUDA device; this run is on {runtime.device.type}")
    root = resolve_data_dir(data_dir)
    return Context.prepare(runtime, root, max(p.train_size for p in protocols),
                           max(p.test_size for p in protocols))


def run_part(part: str, k, epochs, seed, device, loader, threads, data_dir, experiment, smoke,
             cuda_graphs, **variant) -> None:
    from .runner import execute
    protocol = build_protocol(k, epochs, seed, loader, smoke, cuda_graphs, **variant)
    ctx = prepare([protocol], device, threads, data_dir)
    execute(part, protocol, ctx, given_params(device, loader, threads, data_dir, smoke, cuda_graphs, k=k,
                                              epochs=epochs, seed=seed, **variant), experiment)


@click.group(context_settings={"help_option_names": ["-h", "--help"], "show_default": True})
@click.version_option(package_name="gradacc")
def cli():
    """Synchronous data-parallel SGD simulated by gradient accumulation (ResNet-18, CIFAR-10 subset),
    every run tracked in MLflow."""


def part_command(part: str, doc: str, extra=lambda func: func):
    @cli.command(part, help=doc)
    @click.option("--k", type=WholeNumber(1), default=1, show_default=True,
                  help="Accumulation factor: micro-batches of 64 per update (effective batch 64*k).")
    @common_options
    @variant_options
    @extra
    def command(**options):
        run_part(part, **options)
    return command


part_command("micro", "Part 1: forward+backward time of one micro-batch (20 warm-up, 80 timed; ms).")
part_command("update", "Part 2: time of whole updates (s) and throughput (images/s), middle 60% of U updates.")
part_command("converge", "Part 3: epoch losses and test accuracy (%) after a fixed budget of epochs; each update "
             "timed whole as in Part 2, or the gradient noise scale for K >= 2 (then no timings).", noise_option)


@cli.command()
@click.option("--ks", type=KList(), default=",".join(map(str, DEFAULT_KS)), show_default=True,
              help="Accumulation factors to run, comma-separated.")
@click.option("--parts", "parts", default=",".join(PARTS), show_default=True,
              help="Parts to run for each k, comma-separated (micro, update, converge). Converge runs that do "
                   "not measure the noise scale also give Part 2's figures: micro,converge with "
                   "--noise-scale off is the cheapest study.")
@click.option("--repeats", type=WholeNumber(1), default=1, show_default=True,
              help="Seeds per configuration: --seed, --seed+1, ...")
@click.option("--force", type=click.BOOL, is_flag=False, flag_value=True, default=False,
              help="Measure again even where a FINISHED run of the same config and code version exists.")
@click.option("--study", default="", show_default="a new id",
              help="Study id to tag the runs with (reuse one to extend or resume a study).")
@click.option("--output", default=DEFAULT_OUTPUT, show_default=True, type=click.Path(file_okay=False),
              help="Folder for the comparison that ends the sweep (plots, table.md, table.csv, report.html).")
@common_options
@variant_options
@noise_option
def sweep(ks, parts, repeats, force, study, output, epochs, seed, device, loader, threads, data_dir, experiment,
          cuda_graphs, smoke, **variant):
    """The study: each part for each k, in one process, as child runs of one parent run. Configurations
    already measured by the same code are reused, not run again."""
    from .compare_cli import check_output_folder, run_compare
    from .sweep import run_sweep
    chosen = [p.strip() for p in parts.split(",") if p.strip()]
    unknown = sorted(set(chosen) - set(PARTS))
    if unknown or not chosen:
        raise click.BadParameter(f"unknown part(s) {', '.join(unknown) or '(none)'}; choose from "
                                 f"{', '.join(PARTS)}", param_hint="--parts")
    protocols = [build_protocol(k, epochs, s, loader, smoke, cuda_graphs, **variant)
                 for s in range(seed, seed + repeats) for k in ks]
    check_output_folder(Path(output))  # before the measurements, not after them
    ctx = prepare(protocols, device, threads, data_dir)
    given = given_params(device, loader, threads, data_dir, smoke, cuda_graphs, epochs=epochs, seed=seed,
                         **variant)
    given.update(ks=",".join(map(str, ks)), parts=",".join(chosen), repeats=str(repeats),
                 force=str(force).lower(), study=study, output=output)

    def compare_study(parent_run_id: str, study_id: str) -> None:
        run_compare(experiment, study_id, output, parent_run_id=parent_run_id, include_smoke=smoke)

    run_sweep(protocols, chosen, ctx, given, experiment, study=study or None, force=force, after=compare_study)


cli.add_command(compare)
cli.add_command(upload)
cli.add_command(bench)
from .ddp_cli import ddp, verify  # noqa: E402  (after the options it borrows from this module)
cli.add_command(ddp)
cli.add_command(verify)
from .commmodel_cli import commmodel  # noqa: E402
cli.add_command(commmodel)


def _on_signal(signum, frame):
    """The first SIGINT or SIGTERM stops the work; the run then logs what it measured. Later ones are ignored so
    that they cannot cut that logging short: `mlflow run` sends SIGTERM right after forwarding a Ctrl-C, and
    users press Ctrl-C twice. The bounded HTTP retries keep that logging under a minute even with no server."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    raise Terminated() if signum == signal.SIGTERM else KeyboardInterrupt()


def main(argv=None) -> None:
    """Entry point: every expected failure is one line on stderr and a non-zero exit, never a traceback."""
    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGINT, _on_signal)
    try:
        code = cli.main(args=argv, prog_name="gradacc", standalone_mode=False)
    except click.UsageError as err:
        hint = f" (option {err.param.opts[0]})" if isinstance(getattr(err, "param", None), click.Option) and \
            err.param.opts and err.param.opts[0] not in err.format_message() else ""
        click.echo(f"gradacc: error: {err.format_message()}{hint}", err=True)
        sys.exit(2)
    except (GradaccError, click.ClickException) as err:
        message = err.format_message() if isinstance(err, click.ClickException) else str(err)
        click.echo(f"gradacc: error: {message}", err=True)
        sys.exit(1)
    except (KeyboardInterrupt, click.Abort) as err:
        # click turns any KeyboardInterrupt (Terminated included) into Abort, keeping it as __context__.
        if isinstance(err, Terminated) or isinstance(err.__context__, Terminated):
            click.echo("gradacc: terminated; what was measured is logged, the run ends KILLED", err=True)
            sys.exit(143)
        click.echo("gradacc: interrupted; what was measured is logged, the run ends KILLED", err=True)
        sys.exit(130)
    sys.exit(code if isinstance(code, int) else 0)
