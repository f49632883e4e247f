"""A DDP worker started by torchrun by hand, on one node of several, with `gradacc ddp`'s options:

    torchrun --nnodes 2 --nproc-per-node 8 --rdzv-backend c10d --rdzv-endpoint HOST:29500 \
             --rdzv-id gradacc-ddp-1 -m gradacc.cli.ddp_node --device cuda --data-dir /data

Each rank builds the job itself (there is no launcher to write one); failures are one line on stderr."""
from __future__ import annotations

import os
import signal
import sys

import click

from gradacc.cli.ddp import node_options
from gradacc.cli.request import build_request
from gradacc.core.errors import GradaccError


def main(argv: list[str] | None = None) -> None:
    from gradacc.distributed.launch import make_job
    from gradacc.distributed.worker import serve, stop_on_sigterm
    signal.signal(signal.SIGTERM, stop_on_sigterm)
    args = sys.argv[1:] if argv is None else argv
    try:
        options = node_options.make_context("gradacc.cli.ddp_node", list(args)).params
        workers = int(os.environ["WORLD_SIZE"])  # the job's K: every node's workers together
        request = build_request(dict(options, workers=workers), [workers])
        job = make_job("train", request, local_workers=int(os.environ["LOCAL_WORLD_SIZE"]),
                       straggle_ms=options["straggle_ms"])
    except (GradaccError, click.ClickException) as err:
        message = err.format_message() if isinstance(err, click.ClickException) else str(err)
        click.echo(f"gradacc: error: {message}", err=True)
        sys.exit(1)
    serve(dict(job, error_dir=None))  # no launcher to read a file: failures go to stderr


if __name__ == "__main__":
    main()
