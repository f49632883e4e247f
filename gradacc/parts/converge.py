"""Part 3: convergence under the fixed epoch budget: epoch losses, per-update losses, test accuracy; for K >= 2
also the gradient noise scale (gradacc/noise.py), in which case the run records no timings."""
from __future__ import annotations

import math

import torch

from ..config import Protocol
from ..engine import evaluate, run_update
from ..errors import Diverged
from ..model import build_model, build_optimizer, set_lr
from ..noise import GradientSnapshots, NoiseRecord, measures
from . import Context, Result, noop, series_from


def run_converge(protocol: Protocol, ctx: Context, result: Result, progress=noop) -> None:
    model = build_model(protocol.seed, ctx.runtime.device)
    optimizer = build_optimizer(model, protocol)
    stream = ctx.stream(protocol)
    test_images, test_labels = ctx.test_set(protocol)
    epoch_loss, update_loss, epoch_acc = [], [], []
    # The snapshots add device work to every micro-step: a run that measures the noise scale times nothing.
    snapshots = GradientSnapshots(model, protocol.k) if measures(protocol.noise_scale, protocol.k) else None
    noise = NoiseRecord(protocol.micro_batch, protocol.k)
    scheduled = protocol.warmup_updates > 0
    model.train()
    try:
        for epoch in range(1, protocol.epochs + 1):
            sums = []  # loss sums stay on the device: one host read per epoch
            for _ in range(protocol.updates_per_epoch):
                if scheduled:
                    set_lr(optimizer, protocol.lr_at(len(update_loss) + len(sums)))
                sums.append(run_update(model, optimizer, stream, protocol.k, after_backward=snapshots))
                progress(1)
            per_update = (torch.stack(sums) / protocol.k).cpu().tolist()
            update_loss += per_update
            epoch_loss.append(sum(per_update) / len(per_update))
            if snapshots is not None:
                noise.add_epoch(*snapshots.read())
            if not math.isfinite(epoch_loss[-1]):
                raise Diverged(f"training loss is {epoch_loss[-1]} in epoch {epoch}")
            epoch_acc.append(evaluate(model, test_images, test_labels, protocol.eval_batch))
    finally:
        stream.close()
        result.series.update(train_loss=series_from(epoch_loss, first_step=1),
                             train_loss_update=series_from(update_loss),
                             test_accuracy_epoch=series_from(epoch_acc, first_step=1))
        if snapshots is not None:
            result.series.update(noise.series())
            result.summaries.update(noise.summaries())
    result.summaries.update(test_accuracy=epoch_acc[-1], final_train_loss=epoch_loss[-1])
