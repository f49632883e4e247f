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


class Training:
    """One converge run's model, optimizer, stream and records, advanced an update at a time: `run_converge` drives
    one; gradacc/parts/together.py drives several in lockstep. `timed=False` (seeds trained together) times nothing
    and never synchronises the device: such a run logs no timings."""

    def __init__(self, protocol: Protocol, ctx: Context, timed: bool = True):
        self.protocol = protocol
        self.model = build_model(protocol.seed, ctx.runtime.device)
        self.optimizer = build_optimizer(self.model, protocol)
        self.stream = ctx.stream(protocol)
        self.test_images, self.test_labels = ctx.test_set(protocol)
        self.record = EpochRecord()
        measure = measures(protocol.noise_scale, protocol.k) and not protocol.cuda_graphs  # graphs: no micro-steps
        self.snapshots = gradient_snapshots(self.model, protocol.k, timed) if measure else None
        self.noise = NoiseRecord(protocol.micro_batch, protocol.k)
        self.timer = Timer(ctx.runtime.device) if timed else None
        self.model.train()
        self.update = make_update(self.model, self.optimizer, self.stream, protocol.k, protocol.micro_batch,
                                  protocol.cuda_graphs, after_backward=self.snapshots)
        self.sums: list[torch.Tensor] = []  # the epoch's loss sums stay on the device: one host read per epoch

    def step(self) -> None:
        """One update (timed whole, synchronised at both ends as in Part 2, unless `timed=False`)."""
        if self.protocol.warmup_updates > 0:
            set_lr(self.optimizer, self.protocol.lr_at(len(self.record.update_loss) + len(self.sums)))
        if self.timer is None:
            self.sums.append(self.update())
            return
        with self.timer:
            self.sums.append(self.update())

    def end_epoch(self, epoch: int) -> None:
        """The epoch's losses read once (raises Diverged), its noise-scale snapshots, the test accuracy when due."""
        if self.snapshots is not None:
            self.noise.add_epoch(*self.snapshots.read())
        losses, self.sums = torch.stack(self.sums), []
        self.record.end_epoch(epoch, losses, self.protocol.k)
        if self.protocol.eval_every_epoch or epoch == self.protocol.epochs:
            self.record.epoch_acc.append(evaluate(self.model, self.test_images, self.test_labels,
                                                  self.protocol.eval_batch))

    def close(self, result: Result) -> None:
        """Whatever was measured into `result`, also after a failure or an interrupt; the stream closed."""
        self.stream.close()
        if self.snapshots is not None:
            self.snapshots.close()
        self.record.keep_partial(self.sums, self.protocol.k)
        result.series.update(self.record.series())
        if self.snapshots is not None:
            result.series.update(self.noise.series())
            result.summaries.update(self.noise.summaries())
        if self.timer is None:
            return
        update_s = np.array(self.timer.seconds())
        if self.snapshots is not None:
            snapshot_s = np.array(self.snapshots.spans.seconds())[:len(update_s)]
            update_s = update_s[:len(snapshot_s)] - snapshot_s  # an update cut short has no whole time
            result.series["noise_snapshot_s"] = series_from(snapshot_s)
        result.series["update_time_s"] = series_from(update_s)

    def summarize(self, result: Result) -> None:
        """The summaries of a run that ran every epoch (after `close`)."""
        if self.timer is not None:
            result.summaries.update(update_summaries(np.array(result.series["update_time_s"][1]),
                                                     self.protocol.effective_batch))
            if self.snapshots is not None:
                snapshot_s = np.array(result.series["noise_snapshot_s"][1])
                result.summaries["noise_snapshot_s_mean"] = float(middle_window(snapshot_s).mean())
        result.summaries.update(test_accuracy=self.record.epoch_acc[-1],
                                final_train_loss=self.record.epoch_loss[-1])


def run_converge(protocol: Protocol, ctx: Context, result: Result, progress=noop) -> None:
    training = Training(protocol, ctx)
    try:
        for epoch in range(1, protocol.epochs + 1):
            for _ in range(protocol.updates_per_epoch):
                training.step()
                progress(1)
            training.end_epoch(epoch)
    finally:
        training.close(result)
    training.summarize(result)
