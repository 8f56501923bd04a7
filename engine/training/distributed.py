"""Training on several GPUs (or CPU processes) with ``torchrun`` and DistributedDataParallel.

``torchrun --nproc_per_node=N -m engine train …`` starts N copies of the command; each reads the scene,
the scene is cut into a multiple of N windows, and every optimizer step takes N of them, one per process,
whose gradients DDP averages. One process computes the same with ``--windows-per-step N`` (gradient
accumulation over N windows): for MambaHSI the same weights (a test checks this); CSSMamba's EMA
prototypes follow rank 0's windows, as DDP broadcasts rank 0's buffers. Cutting the scene costs the
whole-scene validation shortcut (validation runs tiled), so the speed-up over one GPU is less than N;
it is not measured yet. Rank 0 chooses the model size, plans the windows, validates, assesses, writes
the model file and the report and prints; the others only train. A cancel on any rank (Ctrl-C,
SIGTERM) stops every rank at the same step; an error on one rank ends its process, and torchrun then
stops the others (also for errors before or after the training loop).

CUDA runs use NCCL with one GPU per process (``LOCAL_RANK``); CPU runs use gloo (what CI tests).
No GDAL here.
"""

from __future__ import annotations

import contextlib
import logging
import os
import warnings
from dataclasses import dataclass
from typing import Any, Iterator, List, Optional

import torch
import torch.distributed as dist
from torch import nn

__all__ = ["Group", "current", "session", "is_main", "any_rank", "sum_over_ranks", "broadcast_object", "wrap"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Group:
    """This process's place in a torchrun job."""

    rank: int
    world_size: int
    local_rank: int

    def device(self, device: torch.device) -> torch.device:
        """The device of this rank: its own GPU (LOCAL_RANK) on CUDA, the CPU otherwise."""
        return torch.device("cuda", self.local_rank) if device.type == "cuda" else device


def _from_environment() -> Optional[Group]:
    """The Group torchrun describes in the environment, None outside torchrun or with one process."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return None
    return Group(int(os.environ["RANK"]), world, int(os.environ.get("LOCAL_RANK", os.environ["RANK"])))


def current() -> Optional[Group]:
    """The running job's Group once ``session`` started it, else None (a single process)."""
    if not (dist.is_available() and dist.is_initialized()):
        return None
    return _from_environment()


def is_main() -> bool:
    """True in a single process and on rank 0: the process that writes files and prints."""
    group = current()
    return group is None or group.rank == 0


@contextlib.contextmanager
def session(device: str) -> Iterator[Optional[Group]]:
    """Start the process group when torchrun launched this process (NCCL for CUDA, gloo for the CPU) and
    end it afterwards; yields the Group, or None for a single process (nothing to start). ``device``:
    the run's device choice ("auto", "cpu", "cuda")."""
    group = _from_environment()
    if group is None:
        yield None
        return
    cuda = device != "cpu" and torch.cuda.is_available()
    if cuda:
        torch.cuda.set_device(group.local_rank)
    dist.init_process_group(backend="nccl" if cuda else "gloo")
    engine_log = logging.getLogger(__name__.rsplit(".", 2)[0])   # "engine" (or "<plugin>.engine"), not engine.training
    level = engine_log.level
    if group.rank != 0:  # one log, one progress bar: rank 0's
        engine_log.setLevel(logging.WARNING)
    log.info("distributed training: %d processes (%s), this is rank %d", group.world_size,
             "NCCL, one GPU each" if cuda else "gloo on the CPU", group.rank)
    try:
        yield group
    finally:
        engine_log.setLevel(level)
        dist.destroy_process_group()


def any_rank(flag: bool, device: torch.device) -> bool:
    """True on every rank when ``flag`` is true on any (a cancel anywhere stops everyone at one step)."""
    value = torch.tensor([1.0 if flag else 0.0], device=device)
    dist.all_reduce(value, op=dist.ReduceOp.MAX)
    return bool(value.item() > 0)


def sum_over_ranks(values: List[float], device: torch.device) -> List[float]:
    """The element-wise sum of ``values`` over all ranks (the same list on every rank)."""
    tensor = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor.tolist()


def broadcast_object(value: Any) -> Any:
    """Rank 0's ``value`` on every rank (the window plan, a validation score)."""
    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def wrap(model: nn.Module, device: torch.device) -> nn.Module:
    """``model`` in DistributedDataParallel. Unused parameters are expected: a CSSMamba cluster that gets
    no token in a window leaves its local branch out of that step. DDP's note that a depthwise conv's
    gradient has other strides than its bucket is about speed, not correctness, and is not shown."""
    warnings.filterwarnings("ignore", message="Grad strides do not match bucket view strides")
    return nn.parallel.DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None,
                                               find_unused_parameters=True)
