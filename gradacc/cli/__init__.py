"""The command line, click only: `gradacc` / `python -m gradacc`. Options are resolved here, once; the work is
done by the floors below (study, bench, distributed), imported when a command runs so that `--help` is quick.
Every expected failure ends as one line `gradacc: error: ...` and a non-zero exit."""
from __future__ import annotations

import os
import re
import signal
import sys
import warnings

import click

from gradacc.cli import heap
from gradacc.cli.allreduce import allreduce
from gradacc.cli.bench import bench
from gradacc.cli.commmodel import commmodel
from gradacc.cli.compare import compare
from gradacc.cli.critical import critical
from gradacc.cli.ddp import ddp, verify
from gradacc.cli.measure import converge, micro, sweep, update
from gradacc.cli.upload import upload
from gradacc.core.errors import GradaccError, Terminated
from gradacc.names import failed_run_name


@click.group(context_settings={"help_option_names": ["-h", "--help"], "show_default": True})
@click.version_option(package_name="gradacc")
def cli():
    """Synchronous data-parallel SGD simulated by gradient accumulation (ResNet-18, CIFAR-10 subset),
    every run tracked in MLflow."""


for command in (micro, update, converge, sweep, compare, upload, bench, ddp, verify, allreduce, commmodel,
                critical):
    cli.add_command(command)


def _on_signal(signum, frame):
    """The first SIGINT or SIGTERM stops the work; the run then logs what it measured. Later ones are ignored so
    that they cannot cut that logging short: `mlflow run` sends SIGTERM right after forwarding a Ctrl-C, and
    users press Ctrl-C twice. The bounded HTTP retries keep that logging under a minute even with no server."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    raise Terminated() if signum == signal.SIGTERM else KeyboardInterrupt()


def _fail(message: str, code: int, argv: list[str]) -> None:
    from gradacc.tracking.redact import redact  # a password in a URI is never printed, whichever error holds it
    message = redact(message)
    click.echo(f"gradacc: error: {message}", err=True)
    if os.environ.get("MLFLOW_RUN_ID"):  # under `mlflow run`: its run keeps the reason
        from gradacc.tracking.runs import note_launcher_failure
        command = next((a for a in argv if not a.startswith("-")), "gradacc")
        k = next((m.group(1) for a in argv if (m := re.fullmatch(r"--k=(\d+)", a))), None)
        note_launcher_failure(message, failed_run_name(command, k))
    sys.exit(code)


def _what_was_kept() -> str:
    """After a signal: what became of this command's runs (tracking/runs.py OPENED and KILLED)."""
    runs = sys.modules.get("gradacc.tracking.runs")
    if runs is not None and runs.KILLED:
        return "; what was measured is logged, the run ends KILLED"
    if runs is not None and runs.OPENED:
        return " once its runs were measured in full and logged: they ended FINISHED"
    return " before any run began: nothing was measured or logged"


def main(argv=None) -> None:
    """Entry point: every expected failure is one line on stderr and a non-zero exit, never a traceback."""
    if argv is None:  # this process's own command line: the collector's policy for a command (cli/heap.py)
        heap.for_a_command()
    runs = sys.modules.get("gradacc.tracking.runs")
    if runs is not None:  # an earlier call in this process (tests) opened runs of its own
        runs.OPENED.clear()
        runs.KILLED.clear()
    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGINT, _on_signal)
    args = list(sys.argv[1:] if argv is None else argv)
    # load_runs' hints (tracking/results.py EmptyResultWarning) are for Python users: the CLI's errors say the same
    warnings.filterwarnings("ignore", message="load_runs: ")
    try:
        code = cli.main(args=args, prog_name="gradacc", standalone_mode=False)
    except click.UsageError as err:
        hint = f" (option {err.param.opts[0]})" if isinstance(getattr(err, "param", None), click.Option) and \
            err.param.opts and err.param.opts[0] not in err.format_message() else ""
        _fail(f"{err.format_message()}{hint}", 2, args)
    except (GradaccError, click.ClickException) as err:
        _fail(err.format_message() if isinstance(err, click.ClickException) else str(err), 1, args)
    except (KeyboardInterrupt, click.Abort) as err:
        # click turns any KeyboardInterrupt (Terminated included) into Abort, keeping it as __context__.
        terminated = isinstance(err, Terminated) or isinstance(err.__context__, Terminated)
        click.echo(f"gradacc: {'terminated' if terminated else 'interrupted'}{_what_was_kept()}", err=True)
        sys.exit(143 if terminated else 130)
    finally:  # the store a command began making beside its imports: never outlives it, nor stays unused
        new_store = sys.modules.get("gradacc.tracking.new_store")
        if new_store is not None:
            new_store.finish()
    sys.exit(code if isinstance(code, int) else 0)
