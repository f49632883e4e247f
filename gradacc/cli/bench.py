"""`gradacc bench`: the performance lines, each two figures measured side by side and their ratio."""
from __future__ import annotations

import click

from gradacc.bench.lines import LINES
from gradacc.cli.types import FiniteRange, KList, Threads
from gradacc.core.config import DEVICES


def _lines(value: str) -> tuple[str, ...]:
    chosen = tuple(v.strip() for v in value.split(",") if v.strip())
    unknown = sorted(set(chosen) - set(LINES))
    if unknown or not chosen:
        raise click.BadParameter(f"unknown line(s) {', '.join(unknown) or '(none)'}; choose from "
                                 f"{', '.join(LINES)}", param_hint="--lines")
    return chosen


@click.command()
@click.option("--lines", default=",".join(LINES), show_default=True,
              help="Which lines to run (graph runs on CUDA only).")
@click.option("--device", type=click.Choice(DEVICES), default="auto", show_default=True)
@click.option("--threads", type=Threads(), default="auto", show_default=True,
              help="torch CPU threads for every line (auto = torch's default, one per physical core).")
@click.option("--data-dir", default="auto", show_default=True,
              help="Folder that holds cifar-10-batches-py/ (auto: $GRADACC_DATA_DIR, else ./data).")
@click.option("--batches", type=click.IntRange(1), default=200, show_default=True,
              help="Micro-batches drawn per stream for the delivery rate.")
@click.option("--updates", type=click.IntRange(5), default=40, show_default=True,
              help="K=1 updates timed with each stream.")
@click.option("--tracking-epochs", type=click.IntRange(1), default=1, show_default=True,
              help="Epochs of the K=1 converge run timed tracked and bare (ABBA).")
@click.option("--tracking-blocks", type=click.IntRange(1), default=2, show_default=True,
              help="Blocks of converge runs (bare, tracked, tracked, bare) of the tracking line; two or more give "
                   "its interval.")
@click.option("--e2e-epochs", type=click.IntRange(1), default=1, show_default=True,
              help="Epochs of the end-to-end study on both sides (5 = the full protocol).")
@click.option("--seeds", "bench_seeds", type=click.IntRange(2), default=5, show_default=True,
              help="Seeds of the seeds line's study (against the reference's one seed), with --e2e-epochs and "
                   "--e2e-ks.")
@click.option("--e2e-ks", type=KList(), default="1,2,4,8", show_default=True, help="K values of the end-to-end study.")
@click.option("--log-values", type=click.IntRange(1), default=800, show_default=True,
              help="Metric values written per side of the logging line (800 = a K=1 run's updates).")
@click.option("--noise-k", type=click.IntRange(2), default=4, show_default=True,
              help="K of the converge runs of the noise line (with and without the noise scale).")
@click.option("--noise-updates", type=click.IntRange(5), default=20, show_default=True,
              help="Updates per converge run of the noise line.")
@click.option("--noise-pairs", type=click.IntRange(1), default=3, show_default=True,
              help="Pairs of converge runs (with, without) of the noise line, in A B B A order.")
@click.option("--system-metrics-side-s", type=FiniteRange(min=0.1), default=10.0, show_default=True,
              help="Seconds each side of the system-metrics line lasts (its update count from a warm-up side): "
                   "several sampling intervals, so that the sampling falls inside the timed window.")
@click.option("--system-metrics-pairs", type=click.IntRange(1), default=3, show_default=True,
              help="Pairs of update runs (monitor off, on) of the system-metrics line, in A B B A order.")
@click.option("--smoke", type=click.BOOL, is_flag=False, flag_value=True, default=False,
              help="The smoke protocol everywhere (1,024 / 256 images, 1 epoch): checks the bench, measures little.")
@click.option("--cuda-graphs", type=click.BOOL, is_flag=False, flag_value=True, default=False,
              help="The end-to-end study's gradacc side replays its updates from CUDA graphs (CUDA only).")
@click.option("--json", "json_path", type=click.Path(dir_okay=False), default=None,
              help="Also write the lines to this JSON file.")
def bench(**options):
    """Benchmarks: data streams, tracking overhead, logging cost, Part 2's figures from a run that measures the
    noise scale against one that does not, update times with MLflow's system-metrics monitor against without,
    end to end against the seeds' reference (one seed, and several seeds against its one), and (on CUDA) the
    micro-iteration against its CUDA-graph floor."""
    from gradacc.bench.suite import BenchOptions, run_bench
    run_bench(BenchOptions(**dict(options, lines=_lines(options["lines"]))))
