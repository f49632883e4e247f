"""The options that several commands share (defaults = the protocol), as decorators."""
from __future__ import annotations

import os

import click

from gradacc.cli.types import Threads, WholeNumber
from gradacc.core.config import DEVICES, LOADERS, LR_SCALINGS, MAX_TRAIN_SIZE, NOISE_MODES, TF32_MODES, Protocol

MAX_SEED = 2**64 - 1  # torch.manual_seed's largest seed; beyond it, a ValueError deep in the first run


def common_options(func):
    """The options every measuring command shares (defaults = the protocol)."""
    options = [
        click.option("--epochs", type=WholeNumber(1), default=Protocol.epochs, show_default=True,
                     help="Epochs over the training subset (parts 2 and 3)."),
        click.option("--seed", type=WholeNumber(0, MAX_SEED),
                     default=Protocol.seed, show_default=True,
                     help="Seed set before each model is built; also seeds the data order and augmentation "
                          "(an unsigned 64-bit integer, as torch.manual_seed takes)."),
        click.option("--device", type=click.Choice(DEVICES), default="auto", show_default=True,
                     help="auto = CUDA when present, else CPU."),
        click.option("--loader", type=click.Choice(LOADERS), default=Protocol.loader, show_default=True,
                     help="device: subset on the device, batched augmentation there; torchvision: the seeds' "
                          "DataLoader (2 workers, pinned memory)."),
        click.option("--threads", type=Threads(), default="auto", show_default=True,
                     help="torch CPU threads (auto = torch's default, one per physical core); at most the cores "
                          "this process may use, unless GRADACC_THREADS_OVER_CORES=1 (then 8 per core)."),
        click.option("--data-dir", default="auto", show_default=True,
                     help="Folder that holds cifar-10-batches-py/ (auto: $GRADACC_DATA_DIR, else ./data)."),
        click.option("--experiment", default=None, show_default="$MLFLOW_EXPERIMENT_NAME, else MLflow's Default",
                     help="MLflow experiment (ignored under `mlflow run`, which chooses it)."),
        click.option("--cuda-graphs", type=click.BOOL, is_flag=False, flag_value=True, default=False,
                     help="Replay each update from a CUDA graph (Parts 2 and 3; same kernels, no Python "
                          "launches in between). CUDA only."),
        click.option("--tf32", type=click.Choice(TF32_MODES), default="on", show_default=True,
                     help="CUDA on Ampere and newer: on = PyTorch's default (cuDNN convolutions may use TF32), "
                          "off = IEEE float32 throughout. No effect on a CPU."),
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
    """converge and sweep: the gradient noise scale (gradacc/core/noise.py) and the per-epoch evaluation."""
    func = click.option("--eval-every-epoch", type=click.BOOL, is_flag=False, flag_value=True, default=False,
                        help="converge: the test accuracy after every epoch (test_accuracy_epoch), not only "
                             "after training as the protocol has it; about a tenth of an epoch's time each on a "
                             "CPU.")(func)
    return click.option("--noise-scale", type=click.Choice(NOISE_MODES), default=Protocol.noise_scale,
                        help="converge: measure the gradient noise scale B_simple (auto: for K >= 2, unless "
                             "--cuda-graphs). Its work is timed apart and taken out of the update times.")(func)


def _switch_system_metrics(_ctx, _param, value: bool) -> bool:
    """Sets MLflow's system-metrics switch as the option says, for this process and the ones it starts (DDP
    workers, a spread sweep's ranks); on without psutil fails here, before any run starts. Off where the user's
    environment does not set it is MLflow's default: then MLflow (a second to import) is not imported while the
    options are read, and a command starts its work (tracking/new_store.py's child) a second sooner."""
    if value or os.environ.get("MLFLOW_ENABLE_SYSTEM_METRICS_LOGGING") is not None:  # MLflow's own switch
        from gradacc.tracking.system_metrics import switch
        switch(value)
    return value


def system_metrics_option(func):
    """The commands whose runs measure (micro, update, converge, sweep, ddp): MLflow's system metrics on their runs."""
    return click.option("--system-metrics", type=click.BOOL, is_flag=False, flag_value=True, default=False,
                        callback=_switch_system_metrics,
                        help="MLflow's system metrics on each measuring run (system/cpu_utilization_percentage, "
                             "memory, disk, network; GPU with nvidia-ml-py), sampled every 2 s on a thread of "
                             "their own. Needs psutil: pip install -e '.[system-metrics]'.")(func)
