"""Part 3: convergence under the fixed epoch budget: epoch losses, per-update losses, test accuracy.

Its updates are the ones an update run of the same seed makes, so it also times each one whole (as Part 2
does) and a study gets Part 2's figures without a second pass over the data. For K >= 2 it also measures the
gradient noise scale (gradacc/core/noise.py): that adds work after every micro-step's backward, timed on its
own and subtracted from the update's time (`gradacc bench`'s `noise` line checks that the figures agree with a
run that does not measure it)."""
from __future__ import annotations

import math

import numpy as np
import torch

from gradacc.core.config import Protocol
from gradacc.core.engine import evaluate, make_update
from gradacc.core.errors import Diverged
from gradacc.core.model import build_model, build_optimizer, set_lr
from gradacc.core.noise import NoiseRecord, measures
from gradacc.core.snapshots import gradient_snapshots
from gradacc.core.timing import Timer, middle_window
from gradacc.parts.context import Context, Result, noop, series_from
from gradacc.parts.update import update_summaries


class EpochRecord:
    """The losses of a training run: each update's loss sum stays on the device until the epoch ends, then one
    host read gives the per-update means and the epoch's mean (a NaN or infinite mean stops the run); the test
    accuracy after the epochs that are evaluated. Shared by Part 3 and the DDP rank's loop."""

    def __init__(self):
        self.update_loss: list[float] = []
        self.epoch_loss: list[float] = []
        self.epoch_acc: list[float] = []

    def end_epoch(self, epoch: int, losses: torch.Tensor, divisor: int) -> None:
        """`losses`: the epoch's stacked loss sums, each over `divisor` micro-batches. Raises Diverged."""
        per_update = (losses / divisor).cpu().tolist()
        self.update_loss += per_update
        self.epoch_loss.append(sum(per_update) / len(per_update))
        if not math.isfinite(self.epoch_loss[-1]):
            raise Diverged(f"training loss is {self.epoch_loss[-1]} in epoch {epoch}")

    def keep_partial(self, losses: list[torch.Tensor], divisor: int) -> None:
        """The per-update losses of an epoch that did not end (an interrupt, an error): kept, with no epoch mean."""
        if not losses:
            return
        try:
            self.update_loss += (torch.stack(losses) / divisor).cpu().tolist()
        except RuntimeError:  # a device that failed cannot be read; the run's own error says why
            pass

    def series(self) -> dict[str, tuple[list[int], list[float]]]:
        # evaluated epochs are every epoch or the last: each accuracy at the epoch it was measured after
        first_evaluated = len(self.epoch_loss) - len(self.epoch_acc) + 1
        return {"train_loss": series_from(self.epoch_loss, first_step=1),
                "train_loss_update": series_from(self.update_loss),
                "test_accuracy_epoch": series_from(self.epoch_acc, first_step=first_evaluated)}


def run_converge(protocol: Protocol, ctx: Context, result: Result, progress=noop) -> None:
    model = build_model(protocol.seed, ctx.runtime.device)
    optimizer = build_optimizer(model, protocol)
    stream = ctx.stream(protocol)
    test_images, test_labels = ctx.test_set(protocol)
    record = EpochRecord()
    measure = measures(protocol.noise_scale, protocol.k) and not protocol.cuda_graphs  # graphs: no micro-steps
    snapshots = gradient_snapshots(model, protocol.k) if measure else None
    noise = NoiseRecord(protocol.micro_batch, protocol.k)
    timer = Timer(ctx.runtime.device)
    scheduled = protocol.warmup_updates > 0
    model.train()
    update = make_update(model, optimizer, stream, protocol.k, protocol.micro_batch, protocol.cuda_graphs,
                         after_backward=snapshots)
    sums: list[torch.Tensor] = []  # the epoch's loss sums stay on the device: one host read per epoch
    try:
        for epoch in range(1, protocol.epochs + 1):
            for _ in range(protocol.updates_per_epoch):
                if scheduled:
                    set_lr(optimizer, protocol.lr_at(len(record.update_loss) + len(sums)))
                with timer:  # synchronised at both ends, as in Part 2
                    sums.append(update())
                progress(1)
            if snapshots is not None:
                noise.add_epoch(*snapshots.read())
            losses, sums = torch.stack(sums), []
            record.end_epoch(epoch, losses, protocol.k)
            if protocol.eval_every_epoch or epoch == protocol.epochs:
                record.epoch_acc.append(evaluate(model, test_images, test_labels, protocol.eval_batch))
    finally:
        stream.close()
        if snapshots is not None:
            snapshots.close()
        record.keep_partial(sums, protocol.k)
        result.series.update(record.series())
        update_s = np.array(timer.seconds())
        if snapshots is not None:
            result.series.update(noise.series())
            result.summaries.update(noise.summaries())
            snapshot_s = np.array(snapshots.spans.seconds())[:len(update_s)]
            update_s = update_s[:len(snapshot_s)] - snapshot_s  # an update cut short has no whole time
            result.series["noise_snapshot_s"] = series_from(snapshot_s)
        result.series["update_time_s"] = series_from(update_s)
    result.summaries.update(update_summaries(update_s, protocol.effective_batch))
    if snapshots is not None:
        result.summaries["noise_snapshot_s_mean"] = float(middle_window(snapshot_s).mean())
    result.summaries.update(test_accuracy=record.epoch_acc[-1], final_train_loss=record.epoch_loss[-1])
