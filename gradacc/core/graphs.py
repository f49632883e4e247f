"""The update captured once as a CUDA graph and replayed (`--cuda-graphs`): the same kernels in the same order
as `engine.run_update`, launched without Python in between.

What the protocol asks stays: float32, the deterministic cuDNN algorithms, the same micro-batches, loss/K,
one SGD step. Capture needs a few warm-up updates; they run on scratch data and the model, BatchNorm statistics
and optimizer state are put back afterwards, so the run's updates are exactly the protocol's U."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from gradacc.core.errors import ConfigError

WARMUP_UPDATES = 3  # eager updates on a side stream before capture, as torch.cuda.graphs' docs require


def capture(step, warmups: int = WARMUP_UPDATES) -> torch.cuda.CUDAGraph:
    """`step(True)` run `warmups` times on a side stream, then `step(False)` captured once as a CUDA graph.

    The warm-up lets the caching allocator and cuDNN settle before capture, on a side stream as
    torch.cuda.graphs' docs require; replay the returned graph to run the captured kernels again."""
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        for _ in range(warmups):
            step(True)
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    # A workspace of the graph's own. cuBLAS keeps one per (handle, stream) and the capture bakes its address into
    # the graph; on torch.cuda.graph's one default capture stream, graphs captured one after another would share it
    # (a race where they replay side by side: seeds trained together), and destroying one graph frees that
    # stream's workspace under the others. So no workspace cached from before (the capture then allocates its own,
    # in the graph's private pool), freed only once nothing queued can still use it; and a capture stream other
    # than the shared one (torch hands out its streams from a pool in turn: the cleared cache is what matters).
    torch.cuda.synchronize()
    torch._C._cuda_clearCublasWorkspaces()
    with torch.cuda.graph(graph, stream=torch.cuda.Stream()):
        step(False)
    return graph


class GraphedUpdate:
    """Callable like `run_update(model, optimizer, stream, k)`: returns the sum of the K unscaled micro-batch
    losses on the device (a fresh tensor, so a caller may keep it)."""

    def __init__(self, model: torch.nn.Module, optimizer: torch.optim.SGD, stream, k: int, micro_batch: int):
        device = next(model.parameters()).device
        if device.type != "cuda":
            raise ConfigError("--cuda-graphs needs a CUDA device")
        self.model, self.optimizer, self.stream, self.k = model, optimizer, stream, k
        self.images = torch.zeros((k, micro_batch, 3, 32, 32), device=device)  # scratch data for the warm-up
        self.labels = torch.zeros((k, micro_batch), dtype=torch.long, device=device)
        self.loss_sum = torch.zeros((), device=device)
        saved = _snapshot(model, optimizer)
        # Inside the graph the gradients must keep their addresses: zeroed in place, not set to None.
        self.graph = capture(lambda warming_up: self._update(zero_grads_to_none=warming_up))
        _restore(model, optimizer, saved)

    def _update(self, zero_grads_to_none: bool) -> None:
        self.optimizer.zero_grad(set_to_none=zero_grads_to_none)
        self.loss_sum.zero_()
        for i in range(self.k):
            loss = F.cross_entropy(self.model(self.images[i]), self.labels[i])
            (loss / self.k).backward()
            self.loss_sum += loss.detach()
        self.optimizer.step()

    def __call__(self) -> torch.Tensor:
        for i in range(self.k):
            images, labels = self.stream.next_batch()
            self.images[i].copy_(images)
            self.labels[i].copy_(labels)
        self.graph.replay()
        return self.loss_sum.clone()


def _snapshot(model, optimizer) -> dict:
    return {"model": {k: v.detach().clone() for k, v in model.state_dict().items()}}


def _restore(model, optimizer, saved: dict) -> None:
    """Weights and BatchNorm buffers copied back in place (the graph holds their addresses). SGD's momentum
    buffers, created by the warm-up, are zeroed: a zero buffer gives exactly the first step's `buf = grad`."""
    with torch.no_grad():
        for key, value in model.state_dict().items():
            value.copy_(saved["model"][key])
        for group in optimizer.param_groups:
            for p in group["params"]:
                buf = optimizer.state.get(p, {}).get("momentum_buffer")
                if buf is not None:
                    buf.zero_()
