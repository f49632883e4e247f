"""The command line: `gradacc` / `python -m gradacc`. Resolves every option once, then calls the runner."""
from __future__ import annotations

import signal
import sys

import click

from .compare_cli import DEFAULT_OUTPUT, compare
from .config import DEFAULT_KS, DEVICES, LOADERS, LR_SCALINGS, MAX_TRAIN_SIZE, NOISE_MODES, Protocol, smoke_protocol
from .errors import GradaccError

PARTS = ("micro", "update", "converge")


class Terminated(KeyboardInterrupt):
    """SIGTERM, handled like Ctrl-C: the run ends KILLED with what it measured."""


class WholeNumber(click.ParamType):
    """An integer written as one (no '1.5', no 'abc'), at least `minimum`."""

    name = "integer"

    def __init__(self, minimum: int):
        self.minimum = minimum

    def convert(self, value, param, ctx):
        if isinstance(value, int) and not isinstance(value, bool):
            number = value
        else:
            try:
                number = int(str(value).strip(), 10)
            except ValueError:
                self.fail(f"{value!r} is not a whole number", param, ctx)
        if number < self.minimum:
            self.fail(f"{number} is below the minimum of {self.minimum}", param, ctx)
        return number


class Threads(WholeNumber):
    """'auto' (torch's default) or a positive thread count."""

    name = "auto|integer"

    def __init__(self):
        super().__init__(1)

    def convert(self, value, param, ctx):
        return "auto" if str(value).strip() == "auto" else super().convert(value, param, ctx)


class KList(click.ParamType):
    """A comma-separated list of accumulation factors, e.g. 1,2,4,8."""

    name = "k-list"

    def convert(self, value, param, ctx):
        if isinstance(value, tuple):
            return value
        parts = [p for p in str(value).split(",") if p.strip()]
        if not parts:
            self.fail("give at least one k", param, ctx)
        return tuple(WholeNumber(1).convert(p, param, ctx) for p in parts)


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
        click.option("--smoke", type=click.BOOL, is_flag=False, flag_value=True, default=False,
                     help="Tiny subset (1,024 train / 256 test images), one epoch: seconds on a CPU. "
                          "Tagged gradacc.smoke=true so comparisons leave it out."),
        # Variants of the protocol (tagged gradacc.variant; compare keeps them apart from the protocol).
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
                        help="converge: measure the gradient noise scale B_simple (auto: for K >= 2; such a "
                             "run records no timings).")(func)


def build_protocol(k: int, epochs: int, seed: int, loader: str, smoke: bool, lr_scaling: str = "none",
                   warmup_epochs: int = 0, train_size: int = Protocol.train_size,
                   noise_scale: str = "auto") -> Protocol:
    variant = dict(lr_scaling=lr_scaling, warmup_epochs=warmup_epochs, noise_scale=noise_scale)
    if smoke:
        return smoke_protocol(k, seed, loader, **variant).validate()
    return Protocol(k=k, epochs=epochs, seed=seed, loader=loader, train_size=train_size, **variant).validate()


def given_params(device, loader, threads, data_dir, smoke, **protocol_args) -> dict[str, str]:
    """The options as the user gave them, the same strings `mlflow run` logs for its parameters."""
    given = {key: str(value) for key, value in protocol_args.items()}
    given.update(device=device, loader=loader, threads=str(threads), data_dir=data_dir or "",
                 smoke=str(smoke).lower())
    return given


def prepare(protocols: list[Protocol], device: str, threads, data_dir: str):
    """Resolve the runtime and load the data once, for every configuration of this process."""
    from .data import resolve_data_dir
    from .parts import Context
    from .runtime import resolve_runtime
    runtime = resolve_runtime(device, None if threads == "auto" else threads)
    root = resolve_data_dir(data_dir)
    return Context.prepare(runtime, root, max(p.train_size for p in protocols),
                           max(p.test_size for p in protocols))


def run_part(part: str, k, epochs, seed, device, loader, threads, data_dir, experiment, smoke,
             **variant) -> None:
    from .runner import execute
    protocol = build_protocol(k, epochs, seed, loader, smoke, **variant)
    ctx = prepare([protocol], device, threads, data_dir)
    execute(part, protocol, ctx, given_params(device, loader, threads, data_dir, smoke, k=k, epochs=epochs,
                                              seed=seed, **variant), experiment)


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
    @extra
    def command(**options):
        run_part(part, **options)
    return command


part_command("micro", "Part 1: forward+backward time of one micro-batch (20 warm-up, 80 timed; ms).")
part_command("update", "Part 2: time of whole updates (s) and throughput (images/s), middle 60% of U updates.")
part_command("converge", "Part 3: epoch losses and test accuracy (%) after a fixed budget of epochs; the "
             "gradient noise scale for K >= 2.", noise_option)


@cli.command()
@click.option("--ks", type=KList(), default=",".join(map(str, DEFAULT_KS)), show_default=True,
              help="Accumulation factors to run, comma-separated.")
@click.option("--parts", "parts", default=",".join(PARTS), show_default=True,
              help="Parts to run for each k, comma-separated (micro, update, converge).")
@click.option("--repeats", type=WholeNumber(1), default=1, show_default=True,
              help="Seeds per configuration: --seed, --seed+1, ...")
@click.option("--force", type=click.BOOL, is_flag=False, flag_value=True, default=False,
              help="Measure again even where a FINISHED run of the same config and code version exists.")
@click.option("--study", default="", show_default="a new id",
              help="Study id to tag the runs with (reuse one to extend or resume a study).")
@click.option("--output", default=DEFAULT_OUTPUT, show_default=True, type=click.Path(file_okay=False),
              help="Folder for the comparison that ends the sweep (plots, table.md, table.csv, report.html).")
@common_options
@noise_option
def sweep(ks, parts, repeats, force, study, output, epochs, seed, device, loader, threads, data_dir, experiment,
          smoke, **variant):
    """The study: each part for each k, in one process, as child runs of one parent run. Configurations
    already measured by the same code are reused, not run again."""
    from .compare_cli import run_compare
    from .sweep import run_sweep
    chosen = [p.strip() for p in parts.split(",") if p.strip()]
    unknown = sorted(set(chosen) - set(PARTS))
    if unknown or not chosen:
        raise click.BadParameter(f"unknown part(s) {', '.join(unknown) or '(none)'}; choose from "
                                 f"{', '.join(PARTS)}", param_hint="--parts")
    protocols = [build_protocol(k, epochs, s, loader, smoke, **variant)
                 for s in range(seed, seed + repeats) for k in ks]
    ctx = prepare(protocols, device, threads, data_dir)
    given = given_params(device, loader, threads, data_dir, smoke, epochs=epochs, seed=seed, **variant)
    given.update(ks=",".join(map(str, ks)), parts=",".join(chosen), repeats=str(repeats),
                 force=str(force).lower(), study=study, output=output)

    def compare_study(parent_run_id: str, study_id: str) -> None:
        run_compare(experiment, study_id, output, parent_run_id=parent_run_id, include_smoke=smoke)

    run_sweep(protocols, chosen, ctx, given, experiment, study=study or None, force=force, after=compare_study)


cli.add_command(compare)


def _on_sigterm(signum, frame):
    raise Terminated()


def main(argv=None) -> None:
    """Entry point: every expected failure is one line on stderr and a non-zero exit, never a traceback."""
    signal.signal(signal.SIGTERM, _on_sigterm)
    try:
        code = cli.main(args=argv, prog_name="gradacc", standalone_mode=False)
    except click.UsageError as err:
        hint = f" (option {err.param.opts[0]})" if getattr(err, "param", None) is not None and \
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
