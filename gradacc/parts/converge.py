"""Part 3: convergence under the fixed epoch budget: epoch losses, per-update losses, test accuracy.

Its updates are the ones an update run of the same seed makes, so it also times each one whole (as Part 2
does) and a study gets Part 2's figures without a second pass over the data. For K >= 2 it also measures the
gradient noise scale (gradacc/core/noise.py): that adds work after every micro-step's backward, timed on its
own and subtracted from the update's time (`gradacc bench`'s `noise` line checks that the figures agree with a
run that does not measure it)."""
from __future__ import annotations

import math
import time

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

LIVE_EVERY_S = 30.0  # the longest a long epoch goes without handing its progress to the live writer
PROGRESS = ("epoch", "images_seen", "lr")  # per update, so that the UI can put every K on one axis


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
    and never synchronises the device: such a run logs no timings. `live` (Result.live) gets each epoch's points
    when it ends, and the progress points of a long epoch every LIVE_EVERY_S, each stamped with the wall-clock
    time its update ended: never inside the timed block, and the call only queues them.

    `parallel` is the switch for real synchronous SGD (gradacc/distributed/rank.py's DataParallel): this process is
    one rank of N, trains its micro-batch of each update on the DDP-wrapped model, whose backward all-reduces the
    gradients, and sums the epoch's losses over the ranks; the epochs, the evaluation and the records are these."""

    def __init__(self, protocol: Protocol, ctx: Context, timed: bool = True, live=lambda _points: None,
                 parallel=None):
        self.protocol, self.parallel = protocol, parallel
        self.model = build_model(protocol.seed, ctx.runtime.device)
        self.optimizer = build_optimizer(self.model, protocol)
        self.stream = ctx.stream(protocol)
        self.test_images, self.test_labels = ctx.test_set(protocol)
        self.record = EpochRecord()
        # the noise scale needs each micro-step's gradient: none under a graph, nor under DDP (one micro-step a rank)
        measure = measures(protocol.noise_scale, protocol.k) and not protocol.cuda_graphs and parallel is None
        self.snapshots = gradient_snapshots(self.model, protocol.k, timed) if measure else None
        self.noise = NoiseRecord(protocol.micro_batch, protocol.k)
        self.timer = Timer(ctx.runtime.device) if timed else None
        self.model.train()
        trained, micro_steps, timers = self.model, protocol.k, {}
        if parallel is not None:
            trained, micro_steps = parallel.wrap(self.model), parallel.micro_steps(protocol.k)
            self.stream = parallel.rank_stream(self.stream)
            timers = dict(micro_timer=parallel.backward_timer, step_timer=parallel.step_timer)
        self.update = make_update(trained, self.optimizer, self.stream, micro_steps, protocol.micro_batch,
                                  protocol.cuda_graphs, after_backward=self.snapshots, **timers)
        self.sums: list[torch.Tensor] = []  # the epoch's loss sums stay on the device: one host read per epoch
        self.live = live
        self.ended_ms: list[int] = []  # when each update ended (wall clock), its lr
        self.lrs: list[float] = []
        self.progress_sent = self.losses_sent = 0  # updates whose points were handed to `live`
        self.last_sent = time.monotonic()

    def step(self) -> None:
        """One update (timed whole, synchronised at both ends as in Part 2, unless `timed=False`)."""
        if self.protocol.warmup_updates > 0:
            set_lr(self.optimizer, self.protocol.lr_at(len(self.record.update_loss) + len(self.sums)))
        self.lrs.append(self.optimizer.param_groups[0]["lr"])
        if self.timer is None:
            self.sums.append(self.update())
        else:
            with self.timer:
                self.sums.append(self.update())
        if self.parallel is not None:
            self.parallel.updated()
        self.ended_ms.append(time.time_ns() // 1_000_000)
        if time.monotonic() - self.last_sent >= LIVE_EVERY_S:
            self.live(self.progress_points())

    def progress(self, u: int) -> dict[str, float]:
        """Where update u (0-based) leaves the run on each PROGRESS axis: epochs (fractional), images done, its lr."""
        return {"epoch": (u + 1) / self.protocol.updates_per_epoch,
                "images_seen": (u + 1) * self.protocol.effective_batch, "lr": self.lrs[u]}

    def progress_points(self) -> list[tuple]:
        """epoch, images_seen and lr of the updates not handed on yet."""
        points = [(key, value, self.ended_ms[u], u) for u in range(self.progress_sent, len(self.ended_ms))
                  for key, value in self.progress(u).items()]
        self.progress_sent, self.last_sent = len(self.ended_ms), time.monotonic()
        return points

    def loss_points(self) -> list[tuple]:
        """The per-update losses read from the device and not handed on yet (with the update's time where it has
        no snapshots to subtract)."""
        done = min(len(self.record.update_loss), len(self.ended_ms))  # an interrupt may fall between the two
        points = [("train_loss_update", self.record.update_loss[u], self.ended_ms[u], u)
                  for u in range(self.losses_sent, done)]
        if self.timer is not None and self.snapshots is None:
            seconds = self.timer.seconds()
            points += [("update_time_s", seconds[u], self.ended_ms[u], u) for u in range(self.losses_sent, done)]
        self.losses_sent = done
        return points

    def end_epoch(self, epoch: int) -> None:
        """The epoch's losses read once (raises Diverged), its noise-scale snapshots, the test accuracy when due."""
        if self.snapshots is not None:
            self.noise.add_epoch(*self.snapshots.read())
        losses, self.sums = torch.stack(self.sums), []
        if self.parallel is not None:  # every rank's sums, so that the loss is accumulation's over K micro-batches
            losses = self.parallel.end_epoch(losses, self.protocol.updates_per_epoch)
        self.record.end_epoch(epoch, losses, self.protocol.k)
        points = self.progress_points() + self.loss_points()
        evaluates = self.parallel is None or self.parallel.evaluates
        if evaluates and (self.protocol.eval_every_epoch or epoch == self.protocol.epochs):
            self.record.epoch_acc.append(evaluate(self.model, self.test_images, self.test_labels,
                                                  self.protocol.eval_batch))
            points.append(("test_accuracy_epoch", self.record.epoch_acc[-1], time.time_ns() // 1_000_000, epoch))
        # the epoch's mean last: where it is in the store, the whole epoch is
        self.live(points + [("train_loss", self.record.epoch_loss[-1], self.ended_ms[-1], epoch)])

    def close(self, result: Result) -> None:
        """Whatever was measured into `result`, also after a failure or an interrupt; the stream closed."""
        self.stream.close()
        if self.snapshots is not None:
            self.snapshots.close()
        if self.parallel is None:  # a DDP rank's sums of a cut epoch are its own micro-batches only, never summed
            self.record.keep_partial(self.sums, self.protocol.k)
        self.live(self.progress_points() + self.loss_points())  # an epoch cut short: its updates, their times
        result.series.update(self.record.series())
        done = [self.progress(u) for u in range(len(self.ended_ms))]
        result.series.update({key: series_from([point[key] for point in done]) for key in PROGRESS})
        if self.parallel is not None:
            self.parallel.close(result)
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
        result.summaries["final_train_loss"] = self.record.epoch_loss[-1]
        if self.record.epoch_acc:  # a DDP rank other than 0 evaluates nothing
            result.summaries["test_accuracy"] = self.record.epoch_acc[-1]
        if self.parallel is not None:
            self.parallel.summarize(result)


def run_converge(protocol: Protocol, ctx: Context, result: Result, progress=noop, parallel=None) -> None:
    """Part 3's training, in this process or (`parallel`) as one rank of a DDP job."""
    training = Training(protocol, ctx, live=result.live, parallel=parallel)
    try:
        for epoch in range(1, protocol.epochs + 1):
            for _ in range(protocol.updates_per_epoch):
                training.step()
                progress(1)
            training.end_epoch(epoch)
    finally:
        training.close(result)
    training.summarize(result)
    if result.keep_model:
        result.model = training.model
