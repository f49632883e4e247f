"""The study in one process: each part for each k as child runs of one parent run (data loaded once)."""
from __future__ import annotations

import click

from .config import Protocol
from .parts import Context
from .runner import execute
from .tracking import print_link, tracked_run


def run_sweep(protocols: list[Protocol], parts: list[str], ctx: Context, given: dict[str, str],
              experiment: str | None = None) -> None:
    smoke = any(p.smoke for p in protocols)
    name = "sweep" + ("-smoke" if smoke else "")
    with tracked_run(name, {"gradacc.part": "sweep", "gradacc.smoke": str(smoke).lower()}, experiment) as parent:
        parent.log_params(given, ctx.params())
        child_given = {k: v for k, v in given.items() if k not in ("ks", "parts")}
        for protocol in protocols:
            for part in parts:
                execute(part, protocol, ctx, dict(child_given, k=str(protocol.k)), experiment,
                        parent_run_id=parent.run_id)
        click.echo(f"sweep: {len(protocols) * len(parts)} runs finished", err=True)
    print_link(parent.experiment_id, parent.run_id)
