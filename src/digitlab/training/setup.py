"""What a run is built from: optimizer, schedule, moving average, DDP wrapper, threads, Ctrl-C."""

import signal
import threading
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext

import torch
from torch import nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

from digitlab import distributed
from digitlab.config import TrainConfig

SMALL_BATCH = 64  # below this, a step is too small to split across CPU threads


def make_optimizer(config: TrainConfig, model: nn.Module) -> torch.optim.Optimizer:
    # foreach: one multi-tensor kernel per update instead of a Python loop over parameters;
    # a third faster at batch 10 on the CPU, and bitwise the same as the loop.
    params, lr, decay = model.parameters(), config.lr, config.weight_decay
    if config.optimizer == "adam":
        return torch.optim.Adam(params, lr=lr, weight_decay=decay, foreach=True)
    if config.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=lr, weight_decay=decay, foreach=True)
    return torch.optim.SGD(
        params, lr=lr, momentum=0.9, nesterov=True, weight_decay=decay, foreach=True
    )


def make_scheduler(
    config: TrainConfig, optimizer: torch.optim.Optimizer, steps_per_epoch: int
) -> torch.optim.lr_scheduler.LRScheduler | None:
    if config.schedule == "onecycle":
        return torch.optim.lr_scheduler.OneCycleLR(
            optimizer, max_lr=config.lr, total_steps=config.epochs * steps_per_epoch
        )
    return None


def make_ema(config: TrainConfig, model: nn.Module) -> AveragedModel | None:
    if config.ema is None:
        return None
    # use_buffers: average BatchNorm's running statistics too, so they match the weights.
    return AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(config.ema), use_buffers=True)


def data_parallel(model: nn.Module, device: torch.device) -> nn.Module:
    """Wrap `model` for DDP. On CUDA, BatchNorm layers become SyncBatchNorm (statistics over the
    global batch); gloo has no SyncBatchNorm, so on the CPU each rank normalises with its own
    share's statistics."""
    from torch.nn.parallel import DistributedDataParallel

    if device.type == "cuda":
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
        return DistributedDataParallel(model, device_ids=[device.index])
    return DistributedDataParallel(model)


def mixed_precision(device: torch.device) -> AbstractContextManager[object]:
    """bf16 autocast on CUDA: matrix products on tensor cores at twice fp32's speed, with
    fp32's range (no loss scaling needed). The CPU keeps fp32, which keeps it bitwise
    reproducible."""
    if device.type != "cuda":
        return nullcontext()
    return torch.autocast("cuda", dtype=torch.bfloat16)


@contextmanager
def cpu_threads(config: TrainConfig, session: distributed.Session) -> Iterator[None]:
    """Set torch's CPU threads for the run (and restore them after): the config's number, or
    one thread for small batches, whose tiny operations lose more to thread hand-offs than
    they gain (the seed recipe's batch of 10 trains faster on one core than on two). Under
    torchrun (which sets OMP_NUM_THREADS=1) each process gets its share of the machine's cores."""
    previous = torch.get_num_threads()
    default = distributed.threads_per_rank(session) if session.is_distributed else previous
    threads = config.threads or (1 if config.batch_size < SMALL_BATCH else default)
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


@contextmanager
def stop_requested_on_sigint() -> Iterator[threading.Event]:
    """Turn the first Ctrl-C into a flag the loop checks after each step (so the optimizer
    never stops half-way); a second Ctrl-C interrupts at once.

    SIGTERM keeps its default, ending the process at once: torchrun sends it to the ranks still
    alive when one has died, before it restarts them all, and the restart resumes from the last
    saved state. A handler that saved first would wait on the dead rank instead."""
    stop = threading.Event()
    if threading.current_thread() is not threading.main_thread():
        yield stop  # signal handlers can only be set from the main thread
        return

    def request_stop(signum: int, frame: object) -> None:
        stop.set()
        signal.signal(signal.SIGINT, previous)

    previous = signal.signal(signal.SIGINT, request_stop)
    try:
        yield stop
    finally:
        signal.signal(signal.SIGINT, previous)
