"""Data-parallel training under ``torchrun``: one process per GPU (NCCL) or per CPU core group (gloo).

``torchrun --nproc_per_node N $(which toolkit) train RECIPE.yaml`` starts N copies of the same
command; torchrun sets ``WORLD_SIZE``, ``RANK``, ``LOCAL_RANK`` and ``LOCAL_WORLD_SIZE``, and
:func:`toolkit.train.loop.train` then runs data-parallel through this module:

- the recipe's ``batch_size`` is the GLOBAL batch: every rank draws the same task and the same global
  batch (same seed, same sampling), and processes its rows ``[rank::world]`` (:func:`shard`);
- gradients are averaged over the ranks after backward (:func:`average_gradients`), each rank's loss
  scaled so that the average equals the gradient of the mean loss over the whole global batch (every
  head's loss is a mean over sequences), so N processes train like one process up to float rounding
  (and dropout, whose random masks depend on the rows a process sees);
- rank 0 alone evaluates and writes (log, checkpoints, model folder, TensorBoard, summary) and
  broadcasts the outcome (:func:`broadcast_object`), so every rank stops at the same step.

Gradients are synchronised with one all-reduce per optimizer step instead of wrapping the model in
``DistributedDataParallel``: each step trains one sampled task (the other heads get no gradient)
and gradual unfreezing changes which encoder layers train, which DDP's fixed gradient buckets do
not follow; the result is the same averaged gradient.

Example:
    >>> from toolkit import distributed
    >>> distributed.world_size(), distributed.is_main(), distributed.shard([1, 2, 3])   # no torchrun
    (1, True, ([1, 2, 3], 1.0))
"""
from __future__ import annotations

import datetime
import logging
import os
from typing import Any, Callable, Iterable, Sequence, TypeVar

import torch

logger = logging.getLogger(__name__)

T = TypeVar("T")

# Rank 0 evaluates while the others wait at a collective: allow long evaluations.
TIMEOUT = datetime.timedelta(hours=2)
BUCKET = 2**24  # gradient elements per all-reduce


def launched() -> bool:
    """Whether this process is one of several started by ``torchrun`` (``WORLD_SIZE`` > 1)."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def world_size() -> int:
    """Number of training processes (1 without torchrun)."""
    return torch.distributed.get_world_size() if _active() else 1


def rank() -> int:
    """This process's rank (0 without torchrun)."""
    return torch.distributed.get_rank() if _active() else int(os.environ.get("RANK", "0"))


def is_main() -> bool:
    """Whether this process writes files and logs (rank 0; also true without torchrun)."""
    return rank() == 0


def _active() -> bool:
    return torch.distributed.is_available() and torch.distributed.is_initialized()


def device_for(device: str) -> str:
    """This rank's device: ``cuda`` becomes ``cuda:LOCAL_RANK`` (one GPU per process) under torchrun."""
    if launched() and device == "cuda":
        local = int(os.environ.get("LOCAL_RANK", "0"))
        torch.cuda.set_device(local)
        return f"cuda:{local}"
    return device


def default_threads() -> int:
    """CPU threads per process: the cores divided among the processes of this machine."""
    local_world = int(os.environ.get("LOCAL_WORLD_SIZE", os.environ.get("WORLD_SIZE", "1")))
    return max(1, (os.cpu_count() or 1) // max(local_world, 1))


def init(device: str) -> bool:
    """Join the process group torchrun set up (NCCL for a CUDA device, else gloo); returns whether
    this call created it (and :func:`teardown` should end it). Without torchrun it does nothing."""
    if not launched() or _active():
        return False
    from ..errors import ToolkitError

    if not torch.distributed.is_available():
        raise ToolkitError("torchrun started several processes but this torch build has no torch.distributed: "
                           "install a torch build with distributed support, or run without torchrun")
    backend = "nccl" if device.startswith("cuda") else "gloo"
    torch.distributed.init_process_group(backend, timeout=TIMEOUT)
    logger.info("distributed training: rank %d of %d (%s)", rank(), world_size(), backend)
    return True


def teardown() -> None:
    """Leave the process group (after a barrier, so no rank exits while another still talks)."""
    if _active():
        torch.distributed.barrier()
        torch.distributed.destroy_process_group()


def barrier() -> None:
    """Wait for every rank (no-op in a single process)."""
    if _active():
        torch.distributed.barrier()


def on_main(fn: Callable[[], T]) -> T:
    """Run ``fn`` on rank 0 alone and return its result on every rank. An exception on rank 0 is
    raised there and, as a :class:`~toolkit.errors.ToolkitError` quoting it, on the other ranks, so
    that no rank waits for rank 0 forever."""
    result, error = None, None
    if is_main():
        try:
            result = fn()
        except Exception as err:  # re-raised below, after the other ranks are told
            error = err
    result, failed = broadcast_object((result, None if error is None else f"{type(error).__name__}: {error}"))
    if error is not None:
        raise error
    if failed:
        from ..errors import ToolkitError

        raise ToolkitError(f"rank 0 failed (see its error): {failed}")
    return result


def shard(rows: Sequence[T]) -> tuple[list[T], float]:
    """This rank's rows ``[rank::world]`` of a global batch and the factor for its mean loss, so that
    the gradients averaged over the ranks are those of the mean loss over all ``rows``.

    A rank left without rows (a global batch smaller than the world) gets one row with factor 0: it
    still runs forward and backward, so every rank produces the same gradients to average.

    >>> shard(["a", "b", "c"])
    (['a', 'b', 'c'], 1.0)
    """
    world, me = world_size(), rank()
    if world == 1:
        return list(rows), 1.0
    mine = list(rows[me::world])
    if not mine:
        return list(rows[:1]), 0.0
    return mine, len(mine) * world / len(rows)


def all_reduce_mean(value: torch.Tensor) -> torch.Tensor:
    """Mean of ``value`` over the ranks (``value`` itself in a single process)."""
    if not _active():
        return value
    value = value.detach().clone()
    torch.distributed.all_reduce(value)
    return value / world_size()


def any_rank(flag: bool, device: str = "cpu") -> bool:
    """Whether ``flag`` is true on any rank (every rank gets the same answer)."""
    if not _active():
        return flag
    value = torch.tensor([1.0 if flag else 0.0], device=device)
    torch.distributed.all_reduce(value, op=torch.distributed.ReduceOp.MAX)
    return bool(value.item() > 0)


@torch.no_grad()
def average_gradients(parameters: Iterable[torch.nn.Parameter]) -> None:
    """Replace every gradient by its mean over the ranks (all-reduce of flattened buckets).

    Every rank must hold gradients for the same parameters, which holds when all ranks ran the same
    task on their shards (see :func:`shard`).
    """
    if not _active():
        return
    grads = [p.grad for p in parameters if p.grad is not None]
    world = world_size()
    start = 0
    while start < len(grads):
        bucket, size = [], 0
        while start < len(grads) and (not bucket or size + grads[start].numel() <= BUCKET):
            bucket.append(grads[start])
            size += grads[start].numel()
            start += 1
        flat = torch.cat([g.reshape(-1) for g in bucket])
        torch.distributed.all_reduce(flat)
        flat /= world
        offset = 0
        for g in bucket:
            g.copy_(flat[offset : offset + g.numel()].view_as(g))
            offset += g.numel()


def broadcast_object(obj: Any) -> Any:
    """Rank 0's ``obj`` on every rank (any picklable value; used for small trainer state)."""
    if not _active():
        return obj
    box = [obj if is_main() else None]
    torch.distributed.broadcast_object_list(box, src=0)
    return box[0]
