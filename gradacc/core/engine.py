"""THE update: zero the gradients, K micro-steps of backward(loss / K), one optimizer step. Every part calls it."""
from __future__ import annotations

import functools

import torch
import torch.nn.functional as F

from gradacc.core.timing import NO_TIMER


def run_update(model: torch.nn.Module, optimizer: torch.optim.Optimizer, stream, k: int,
               micro_timer=NO_TIMER, step_timer=NO_TIMER, micro_steps: int | None = None,
               step: bool = True, after_backward=None) -> torch.Tensor:
    """One update of k micro-batches; returns the sum of the unscaled micro-batch losses, on the device.

    Fetching a micro-batch stays outside `micro_timer`, the optimizer step inside `step_timer`. Part 1 ends a
    phase that is not a multiple of k with `micro_steps < k` and `step=False`: the loss is still divided by k
    (the gradient is a partial sum of the update's mean), and nothing is stepped. `after_backward(i)`, if
    given, is called after micro-step i's backward, outside `micro_timer` (the noise scale reads `.grad` there)."""
    optimizer.zero_grad(set_to_none=True)
    loss_sum = torch.zeros((), device=next(model.parameters()).device)
    for i in range(k if micro_steps is None else micro_steps):
        images, labels = stream.next_batch()
        with micro_timer:
            loss = F.cross_entropy(model(images), labels)
            (loss / k).backward()
        loss_sum += loss.detach()
        if after_backward is not None:
            after_backward(i)
    if step:
        with step_timer:
            optimizer.step()
    return loss_sum


def make_update(model: torch.nn.Module, optimizer: torch.optim.Optimizer, stream, k: int, micro_batch: int,
                cuda_graphs: bool = False, after_backward=None, micro_timer=NO_TIMER, step_timer=NO_TIMER):
    """A callable running one whole update, returning its loss sum: `run_update`, or the same update captured
    once as a CUDA graph and replayed (gradacc/core/graphs.py; no micro-step to call `after_backward` at there)."""
    if cuda_graphs:
        from gradacc.core.graphs import GraphedUpdate
        if after_backward is not None:
            raise ValueError("a CUDA-graph update has no micro-step hook")
        return GraphedUpdate(model, optimizer, stream, k, micro_batch)
    return functools.partial(run_update, model, optimizer, stream, k, micro_timer, step_timer,
                             after_backward=after_backward)


@torch.no_grad()
def evaluate(model: torch.nn.Module, images: torch.Tensor, labels: torch.Tensor, batch: int) -> float:
    """Top-1 accuracy in % on normalised images already on the device; eval mode, restored afterwards."""
    was_training = model.training
    model.eval()
    correct = torch.zeros((), dtype=torch.long, device=images.device)
    for start in range(0, len(labels), batch):
        logits = model(images[start: start + batch])
        correct += (logits.argmax(dim=1) == labels[start: start + batch]).sum()
    model.train(was_training)
    return 100.0 * correct.item() / len(labels)
