"""The critical-batch part: one K trained with the protocol's update (parts/converge.py's Training) until a loss
target is reached or the epoch cap (`protocol.epochs`), for the fit in gradacc/analysis/critical.py.

The target is measured on a fixed slice of the training subset (its first TARGET_IMAGES images, normalised, no
augmentation) in eval mode. McCandlish et al.'s trade-off is about optimisation, the training loss, not
generalisation: the test accuracy would add the generalisation gap of each batch size, and it moves in steps of
1/2048. The per-update training loss is no use either: it is a single batch's, noisier at small B, and taken
before the step. A fixed slice in eval mode gives every K the same deterministic measure of the same model.

It is evaluated every max(1, EVAL_EVERY_IMAGES // B) updates, so the crossing is located within one evaluation:
updates_to_target is the first evaluated update at or under the target (an upper bound at most that many updates
late). A run that does not reach it logs target_reached 0 and updates_to_target = the updates it ran, a lower
bound. B_simple (K >= 2) is the ratio of the mean |G|^2 and tr(Sigma) estimates over every update up to the
target (core/noise.py's b_simple_of), the span whose trade-off it predicts."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from gradacc.core.config import Protocol
from gradacc.core.noise import b_simple_of
from gradacc.core.streams import normalize, to_nchw
from gradacc.parts.context import Context, Result, noop
from gradacc.parts.converge import Training

TARGET_IMAGES = 512  # the slice: at K=1 an evaluation costs about a sixth of the 16 updates between two
EVAL_EVERY_IMAGES = 1024


def eval_every(protocol: Protocol) -> int:
    return max(1, EVAL_EVERY_IMAGES // protocol.effective_batch)


@torch.no_grad()
def slice_loss(model: torch.nn.Module, images: torch.Tensor, labels: torch.Tensor, batch: int) -> float:
    """Mean cross-entropy over the slice in eval mode, the training mode restored afterwards."""
    was_training = model.training
    model.eval()
    total = torch.zeros((), device=images.device)
    for start in range(0, len(labels), batch):
        total += F.cross_entropy(model(images[start:start + batch]), labels[start:start + batch], reduction="sum")
    model.train(was_training)
    return total.item() / len(labels)


def target_slice(protocol: Protocol, ctx: Context) -> tuple[torch.Tensor, torch.Tensor]:
    n = min(TARGET_IMAGES, protocol.train_size)
    device = ctx.runtime.device
    return (normalize(to_nchw(ctx.subset.train_images[:n], device)),
            torch.from_numpy(ctx.subset.train_labels[:n]).to(device))


def run_critical(protocol: Protocol, ctx: Context, result: Result, target: float, progress=noop) -> None:
    """Trains until the slice loss is <= `target` or `protocol.epochs` epochs have run; fills `result`."""
    training = Training(protocol, ctx)
    images, labels = target_slice(protocol, ctx)
    every, done, reached = eval_every(protocol), 0, False
    steps, losses = [], []
    try:
        for epoch in range(1, protocol.epochs + 1):
            for index in range(protocol.updates_per_epoch):
                training.step()
                done += 1
                progress(1)
                last = epoch == protocol.epochs and index == protocol.updates_per_epoch - 1
                if done % every == 0 or last:
                    steps.append(done)
                    losses.append(slice_loss(training.model, images, labels, protocol.eval_batch))
                    reached = losses[-1] <= target
                    if reached:
                        break
            training.end_epoch(epoch)  # an epoch cut short by the target: its updates' mean, its noise snapshots
            if reached:
                break
    finally:
        training.close(result)
        result.series["target_loss"] = (steps, losses)
    progress(protocol.total_updates - done)  # the bar ends full: the updates left are not needed
    result.summaries.update(target=target, target_reached=float(reached), updates_to_target=float(done),
                            images_to_target=float(done * protocol.effective_batch),
                            eval_every_updates=float(every))
    if training.snapshots is not None:
        b_simple = b_simple_of(training.noise.g2, training.noise.trace)
        if b_simple == b_simple:
            result.summaries["noise_scale_simple_to_target"] = b_simple
