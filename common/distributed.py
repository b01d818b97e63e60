"""Training on several processes (torchrun, PyTorch DDP's process groups), used by s04 and s07.

    torchrun --standalone --nproc_per_node=N s04_train_tower.py ...

Without torchrun's variables (RANK, WORLD_SIZE, ...) `setup()` returns None and nothing here runs:
a plain `python s04_train_tower.py` is one process, as before. Under torchrun each process trains
on its share of every batch and the gradients are averaged; rank 0 alone validates, chooses the
best epoch, writes files and logs to W&B, and broadcasts its decisions to the others.

The model is not wrapped in DistributedDataParallel: its word tables (per-word pooling weights,
and the word vectors with --train-emb) have sparse gradients (SparseAdam), which DDP's buckets
handle badly and for which NCCL has no all-reduce. Instead, after `loss.backward()`,
`reduce_gradients` does it by hand, with dense collectives only, so the same code runs on gloo
(CPU) and NCCL (CUDA):
- dense gradients: flattened into one buffer (with a flag per parameter saying which ranks had a
  gradient) and summed with one all_reduce;
- sparse gradients: each rank coalesces its own, then all ranks all_gather the (row indices,
  values) pairs, padded to the longest, and coalesce the union: the rows a batch touches (a few
  thousand), never the 400,000-row table (which --train-emb would make 600 MB a step).
Each rank's gradient is weighted by its share of the global batch (n_rank / n_batch), so the sum is
the gradient of the global batch's mean loss, as one process computes it (exactly so for the
triplet loss; the in-batch softmax sees only the rank's own passages as negatives).
"""
from __future__ import annotations

import contextlib
import datetime
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass
class Dist:
    rank: int
    world_size: int
    local_rank: int
    device: torch.device
    backend: str

    @property
    def main(self) -> bool:
        return self.rank == 0


def launched() -> bool:
    """Whether torchrun (or another launcher setting its variables) started this process."""
    return all(k in os.environ for k in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"))


def setup(device: torch.device) -> tuple[Dist | None, torch.device]:
    """Join the process group when launched by torchrun: NCCL on CUDA (each process on
    cuda:LOCAL_RANK; an explicit --device cuda:K only with one process per machine), gloo on the
    CPU. Returns (None, device) for a plain single process."""
    if not launched():
        return None, device
    local = int(os.environ["LOCAL_RANK"])
    if device.type == "cuda":
        one_here = int(os.environ.get("LOCAL_WORLD_SIZE", "0")) == 1
        device = torch.device("cuda", device.index if device.index is not None and one_here else local)
        torch.cuda.set_device(device)
        backend = "nccl"
    else:
        backend = "gloo"
    if not dist.is_initialized():
        # rank 0 validates while the others wait at the next collective: allow it time
        dist.init_process_group(backend, timeout=datetime.timedelta(hours=2))
    return Dist(dist.get_rank(), dist.get_world_size(), local, device, backend), device


def teardown(d: Dist | None):
    if d is not None and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


def local_batch(d: Dist | None, b):
    """(this rank's share of the global batch b, its weight in the batch's mean loss). The share is
    every world_size-th entry from the rank's own: the shares of a batch are disjoint and together
    are the whole batch (so every epoch is split too, as DistributedSampler splits it). One
    process: (b, 1.0). A rank left without a share (a last batch smaller than the world) computes
    on one entry with weight 0, to keep the collectives in step; reduce_gradients drops it."""
    if d is None:
        return b, 1.0
    mine = b[d.rank::d.world_size]
    if len(mine) == 0:
        return b[:1], 0.0
    return mine, len(mine) / len(b)


def broadcast_params(d: Dist | None, model: torch.nn.Module):
    """Every rank starts from rank 0's weights (they are built the same way: this makes sure)."""
    if d is None:
        return
    with torch.no_grad():
        for p in model.parameters():
            if p.requires_grad:
                dist.broadcast(p.data, 0)


def broadcast_floats(d: Dist | None, values: list[float]) -> list[float]:
    """Rank 0's values, on every rank."""
    if d is None:
        return values
    t = torch.tensor(values, dtype=torch.float64, device=d.device)
    dist.broadcast(t, 0)
    return t.tolist()


def sum_floats(d: Dist | None, values: list[float]) -> list[float]:
    if d is None:
        return values
    t = torch.tensor(values, dtype=torch.float64, device=d.device)
    dist.all_reduce(t)
    return t.tolist()


def reduce_gradients(d: Dist, dense: list[torch.Tensor], sparse: list[torch.Tensor], weight: float):
    """Replace each parameter's gradient by the sum over ranks of weight x gradient (see the
    module's docstring). A parameter no rank has a gradient for keeps None (the optimisers skip
    it, as they do in one process); a rank without one (an empty share) contributes zeros."""
    # dense: one buffer, [grads ..., has-grad flags]
    dev = d.device
    parts, flags = [], []
    for p in dense:
        has = p.grad is not None and weight > 0
        parts.append((p.grad * weight).reshape(-1) if has else torch.zeros(p.numel(), device=dev))
        flags.append(1.0 if has else 0.0)
    if dense:
        buf = torch.cat(parts + [torch.tensor(flags, device=dev)])
        dist.all_reduce(buf)
        o, had = 0, buf[-len(dense):].tolist()
        for p, h in zip(dense, had):
            n = p.numel()
            p.grad = buf[o:o + n].view_as(p).clone() if h > 0 else None
            o += n
    for p in sparse:
        p.grad = _gather_sparse(d, p, weight)


def _gather_sparse(d: Dist, p: torch.Tensor, weight: float) -> torch.Tensor | None:
    """The sum over ranks of weight x p.grad for a row-sparse gradient (an embedding table's), by
    all_gather of each rank's coalesced (rows, values), padded to the longest."""
    dev = d.device
    tail = tuple(p.shape[1:])
    if p.grad is not None and weight > 0:
        g = p.grad.coalesce()
        idx, val = g.indices()[0], g.values() * weight
    else:
        idx = torch.zeros(0, dtype=torch.long, device=dev)
        val = torch.zeros((0, *tail), dtype=p.dtype, device=dev)
    n = torch.tensor([idx.numel()], dtype=torch.long, device=dev)
    counts = [torch.zeros_like(n) for _ in range(d.world_size)]
    dist.all_gather(counts, n)
    counts = [int(c.item()) for c in counts]
    m = max(counts)
    if m == 0:
        return None
    pad_i = torch.zeros(m, dtype=torch.long, device=dev)
    pad_v = torch.zeros((m, *tail), dtype=val.dtype, device=dev)
    pad_i[:len(idx)] = idx
    pad_v[:len(idx)] = val
    all_i = [torch.empty_like(pad_i) for _ in range(d.world_size)]
    all_v = [torch.empty_like(pad_v) for _ in range(d.world_size)]
    dist.all_gather(all_i, pad_i)
    dist.all_gather(all_v, pad_v)
    rows = torch.cat([i[:c] for i, c in zip(all_i, counts)])
    vals = torch.cat([v[:c] for v, c in zip(all_v, counts)])
    return torch.sparse_coo_tensor(rows[None, :], vals, p.shape, check_invariants=False).coalesce()


@contextlib.contextmanager
def main_first(d: Dist | None):
    """Rank 0 runs the block first (filling a cache, e.g. data/teacher/), then the others (reading it)."""
    if d is not None and not d.main:
        dist.barrier()
    yield
    if d is not None and d.main:
        dist.barrier()
