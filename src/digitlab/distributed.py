"""Everything torchrun / torch.distributed in one place.

    torchrun --standalone --nproc_per_node=2 -m digitlab train --recipe default
    torchrun --nnodes=2 --nproc_per_node=4 --rdzv-backend=c10d \\
        --rdzv-endpoint=HOST:29500 --rdzv-id=mnist -m digitlab train --recipe best

torchrun starts one process per rank and tells each who it is through environment variables
(`RANK`, `WORLD_SIZE`, `LOCAL_RANK`, `LOCAL_WORLD_SIZE`, `MASTER_ADDR`, `MASTER_PORT`).
`launched()` joins the process group they describe — gloo on the CPU, NCCL on CUDA — and leaves
it at the end; without torchrun it does nothing and everything runs as one process of one.
The rest of digitlab asks `current()` where it stands, so the training loop and the reader have
one code path for one process and for many.

With `--max-restarts`, torchrun restarts every process when one dies; `restart_count()` says
which attempt this is and `job_id()` which torchrun job, so that a restarted run can go on from
its own checkpoint (see `resume.py`).
"""

import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, TypeVar

import torch
import torch.distributed as dist

T = TypeVar("T")

TORCHRUN_VARIABLES = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")


@dataclass(frozen=True)
class Session:
    """This process's place among the processes torchrun started (one of one without it)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0  # rank on this machine: which GPU to use
    local_world_size: int = 1  # processes on this machine: how to share its CPU cores
    backend: str | None = None  # "gloo" or "nccl"; None for a single process

    @property
    def is_main(self) -> bool:
        """Rank 0: the one process that prints and writes files."""
        return self.rank == 0

    @property
    def is_distributed(self) -> bool:
        return self.world_size > 1


def launched_by_torchrun() -> bool:
    return all(name in os.environ for name in TORCHRUN_VARIABLES)


def is_main_process() -> bool:
    """Rank 0, or not under torchrun; answers before joining and after leaving the group."""
    return os.environ.get("RANK", "0") == "0"


def current() -> Session:
    """Where this process stands: from the process group if one is joined, else one of one."""
    if not (dist.is_available() and dist.is_initialized()):
        return Session()
    return Session(
        rank=dist.get_rank(),
        world_size=dist.get_world_size(),
        local_rank=int(os.environ.get("LOCAL_RANK", 0)),
        local_world_size=int(os.environ.get("LOCAL_WORLD_SIZE", 1)),
        backend=str(dist.get_backend()),
    )


@contextmanager
def launched(device: str = "auto") -> Iterator[Session]:
    """Join torchrun's process group for the block (a no-op without torchrun), then leave it.

    `device` is the config's device: CUDA ranks each take GPU `LOCAL_RANK` and talk over NCCL,
    CPU ranks over gloo."""
    if not launched_by_torchrun() or dist.is_initialized():
        yield current()
        return
    local_rank = int(os.environ["LOCAL_RANK"])
    use_cuda = device.startswith("cuda") or (device == "auto" and torch.cuda.is_available())
    if use_cuda:
        torch.cuda.set_device(local_rank)
    backend = "nccl" if use_cuda else "gloo"
    _join(backend)
    try:
        yield current()
    finally:
        dist.destroy_process_group()


_joins = 0  # process groups this process has joined: every rank joins in the same order


def _join(backend: str) -> None:
    """`init_process_group` from torchrun's environment, in a store namespace of its own.

    Why not plain `init_process_group(backend)`: torchrun (torch 2.13) keeps one TCPStore for
    the whole job and hands it to the processes of every restart, and the keys a process group
    leaves there (each rank's gloo address; NCCL's id) are the same names every time. A restarted
    rank may read the dead attempt's address of its peer before the peer has written its new
    one: gloo then fails with "connectFullMesh failed … Connection refused", or both ranks wait
    for a connection that never comes (hung at 0% CPU). So each attempt's group, and each group
    a process joins, gets its own prefix — the isolation torch itself used up to 2.4
    (pytorch/pytorch#135712). Without a shared store (TORCH_DISABLE_SHARE_RDZV_TCP_STORE=1)
    every attempt has a fresh store anyway."""
    global _joins
    store, rank, world_size = next(dist.rendezvous("env://"))
    namespace = f"digitlab/join-{_joins}"
    if os.environ.get("TORCHELASTIC_USE_AGENT_STORE") == "True":
        # The restart count is the same on every rank of one machine; across machines torchrun
        # does not keep it in step (pytorch/pytorch#108158): there, turn the sharing off.
        namespace = f"digitlab/restart-{restart_count()}/join-{_joins}"
    _joins += 1
    dist.init_process_group(
        backend, store=dist.PrefixStore(namespace, store), rank=rank, world_size=world_size
    )


def restart_count() -> int:
    """How many times torchrun has restarted this job's processes (0: first attempt, or no
    torchrun)."""
    return int(os.environ.get("TORCHELASTIC_RESTART_COUNT", "0"))


def job_id() -> str | None:
    """The torchrun job this process belongs to (`--rdzv-id`; a fresh id for every
    `--standalone` launch), or None without torchrun."""
    return os.environ.get("TORCHELASTIC_RUN_ID")


def threads_per_rank(session: Session) -> int:
    """This machine's cores shared evenly among its ranks (at least one each). torchrun sets
    OMP_NUM_THREADS=1, which would leave cores idle when there are fewer ranks than cores."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return max(1, (cores or 1) // session.local_world_size)


def share_of_batch(size: int, session: Session) -> slice:
    """The rows of a global batch of `size` that this rank trains on: contiguous, in rank
    order, sizes differing by at most one (as `torch.tensor_split`)."""
    base, extra = divmod(size, session.world_size)
    start = session.rank * base + min(session.rank, extra)
    return slice(start, start + base + (1 if session.rank < extra else 0))


def shard(items: list[T], session: Session) -> list[T]:
    """Every `world_size`-th item from this rank's: rank r of n gets items r, r+n, r+2n…"""
    return items[session.rank :: session.world_size]


def barrier() -> None:
    """Wait until every rank gets here (nothing to wait for in a single process)."""
    if current().is_distributed:
        dist.barrier()


@contextmanager
def main_process_first() -> Iterator[None]:
    """Run the block on rank 0 first, then on the other ranks at once: e.g. rank 0 downloads
    MNIST if it is missing while the others wait, then they read it. A no-op for one process.

    If rank 0 raises in the block, the others stay at the barrier until torchrun ends them."""
    is_main = current().is_main
    if not is_main:
        barrier()  # wait for rank 0 to finish the block
    yield
    if is_main:
        barrier()  # let the others start it


def all_reduce_sum(values: torch.Tensor) -> torch.Tensor:
    """The element-wise sum of `values` over every rank (the tensor itself when alone)."""
    if current().is_distributed:
        dist.all_reduce(values, op=dist.ReduceOp.SUM)
    return values


def broadcast_from_main(value: Any) -> Any:
    """Rank 0's `value` on every rank (any picklable object)."""
    if not current().is_distributed:
        return value
    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]
