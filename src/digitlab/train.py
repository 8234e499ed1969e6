"""`fit(config, mnist, run_dir)`: train a model, checkpoint every epoch, resume where it stopped.

The loop prints nothing; it reports through two optional callbacks (`on_step`, `on_epoch`) that
the CLI turns into a progress bar and a table. On the CPU a run is bitwise reproducible: the same
seed gives the same weights, and a run interrupted with Ctrl-C (SIGINT) and resumed ends with
exactly the weights of an uninterrupted one, because everything random — the global RNG, the
shuffling generator, the position inside the epoch — is saved with the optimizer state.
"""

import math
import signal
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

import digitlab
from digitlab.augment import AugmentConfig, random_affine
from digitlab.calibrate import calibrate_run
from digitlab.checkpoint import (
    load_training_state,
    read_json,
    save_model,
    save_training_state,
    write_json,
)
from digitlab.config import TrainConfig
from digitlab.data import DATA_CHECKSUM, MNIST, iterate_batches, split_validation
from digitlab.device import select_device
from digitlab.errors import CheckpointError, ConfigError, DigitlabError
from digitlab.evaluate import loss_and_accuracy, predict_log_probs
from digitlab.models import create_model
from digitlab.runs import RunPaths


class TrainingInterrupted(DigitlabError):
    """Ctrl-C: the state at the current step was saved and the run can be resumed."""


class NonFiniteLossError(DigitlabError):
    """The loss became NaN or infinite; the last good checkpoint is kept."""


@dataclass(frozen=True)
class EpochStats:
    epoch: int  # 1-based
    train_loss: float  # mean over every sample of the epoch
    train_accuracy: float
    test_loss: float
    test_accuracy: float
    seconds: float  # training plus evaluation time of this epoch
    lr: float  # learning rate at the end of the epoch
    val_loss: float | None = None  # on the held-out training images, when the config has some
    val_accuracy: float | None = None


@dataclass(frozen=True)
class StepProgress:
    epoch: int  # 1-based
    step: int  # 1-based, within the epoch
    steps: int  # steps per epoch
    loss: float  # mean training loss of the epoch so far


@dataclass
class RunResult:
    run_dir: Path
    config: TrainConfig
    history: list[EpochStats]
    wall_seconds: float
    model: nn.Module

    def to_dict(self) -> dict[str, Any]:
        last = self.history[-1]
        return {
            "test_accuracy": last.test_accuracy,
            "test_loss": last.test_loss,
            "train_accuracy": last.train_accuracy,
            "train_loss": last.train_loss,
            "val_accuracy": last.val_accuracy,
            "val_loss": last.val_loss,
            "epochs": len(self.history),
            "wall_seconds": self.wall_seconds,
            "run_dir": str(self.run_dir),
            "recipe": self.config.recipe,
            "model": self.config.model,
        }


@dataclass
class _Progress:
    """Where training stands; saved in `train_state.pt` so a resumed run continues exactly."""

    epoch: int = 0  # 0-based epoch in progress
    step: int = 0  # steps already done in this epoch
    loss_sum: float = 0.0  # sum of per-sample losses so far this epoch
    correct: int = 0
    seen: int = 0
    seconds: float = 0.0  # training time spent in this epoch so far


def fit(
    config: TrainConfig,
    mnist: MNIST,
    run_dir: Path,
    *,
    resume: bool = False,
    on_step: Callable[[StepProgress], None] | None = None,
    on_epoch: Callable[[EpochStats], None] | None = None,
) -> RunResult:
    """Train `config` on `mnist`, writing checkpoints to `run_dir`; resume from it if asked."""
    if config.members != 1:
        raise ConfigError(f"fit trains one model; train {config.members} with fit_ensemble")
    started = time.perf_counter()
    run = _Training.start(config, mnist, RunPaths(run_dir))
    if resume:
        run.restore()
    else:
        write_json(run.paths.config, config.to_dict())

    with _cpu_threads(config), _stop_requested_on_sigint() as stop_requested:
        while run.progress.epoch < config.epochs:
            run.train_epoch(stop_requested, on_step)
            stats = run.finish_epoch()
            if on_epoch is not None:
                on_epoch(stats)
            if stop_requested.is_set() and run.progress.epoch < config.epochs:
                raise TrainingInterrupted(
                    f"interrupted after epoch {run.progress.epoch}; the run is saved. "
                    f"Continue it with: digitlab train --resume {run_dir}"
                )
        calibrate_run(config, mnist, run.paths.model, run.final_model, run.device)
    return RunResult(run_dir, config, run.history, time.perf_counter() - started, run.final_model)


@dataclass
class _Training:
    """The objects of one run and the few methods that move it forward."""

    config: TrainConfig
    mnist: MNIST
    paths: RunPaths
    device: torch.device
    model: nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler | None
    order_rng: torch.Generator  # draws each epoch's shuffling order
    augment: AugmentConfig | None  # random affine for training batches, or None
    augment_rng: torch.Generator  # draws the random transforms of each batch
    ema: AveragedModel | None  # moving average of the weights, when the config asks for one
    train_images: torch.Tensor
    train_labels: torch.Tensor
    val_images: torch.Tensor  # (0, 28, 28) when the config holds out none
    val_labels: torch.Tensor
    progress: _Progress = field(default_factory=_Progress)
    history: list[EpochStats] = field(default_factory=list)
    epoch_started: float = 0.0
    order_state: torch.Tensor | None = None  # order_rng's state before this epoch's draw

    @classmethod
    def start(cls, config: TrainConfig, mnist: MNIST, paths: RunPaths) -> "_Training":
        device = select_device(config.device)
        torch.manual_seed(config.seed)  # before building the model: it fixes the initial weights
        model = create_model(config.model).to(device)
        if config.channels_last:
            model = model.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
        (train_images, train_labels), (val_images, val_labels) = split_validation(
            mnist.train_images[: config.subset],
            mnist.train_labels[: config.subset],
            config.validation,
        )
        optimizer = _make_optimizer(config, model)
        steps = _steps_per_epoch(len(train_images), config.batch_size)
        return cls(
            config=config,
            mnist=mnist,
            paths=paths,
            device=device,
            model=model,
            optimizer=optimizer,
            scheduler=_make_scheduler(config, optimizer, steps),
            order_rng=torch.Generator().manual_seed(config.seed),
            augment=_augment_config(config),
            augment_rng=torch.Generator().manual_seed(config.seed + 1),
            ema=_make_ema(config, model),
            train_images=train_images.to(device),
            train_labels=train_labels.to(device),
            val_images=val_images,
            val_labels=val_labels,
        )

    @property
    def steps_per_epoch(self) -> int:
        return _steps_per_epoch(len(self.train_images), self.config.batch_size)

    def train_epoch(
        self, stop_requested: threading.Event, on_step: Callable[[StepProgress], None] | None
    ) -> None:
        config, progress = self.config, self.progress
        self.order_state = self.order_rng.get_state()
        order = _epoch_order(len(self.train_images), config.shuffle, self.order_rng)
        self.epoch_started = time.perf_counter() - progress.seconds
        self.model.train()
        batches = iterate_batches(
            self.train_images,
            self.train_labels,
            config.batch_size,
            order=order.to(self.device),
            start_batch=progress.step,
            device=self.device,
        )
        for x, y in batches:
            loss, correct = self.train_step(x, y)
            progress.step += 1
            progress.loss_sum += loss * len(y)
            progress.correct += correct
            progress.seen += len(y)
            if on_step is not None:
                mean_loss = progress.loss_sum / progress.seen
                on_step(
                    StepProgress(progress.epoch + 1, progress.step, self.steps_per_epoch, mean_loss)
                )
            if stop_requested.is_set() and progress.step < self.steps_per_epoch:
                progress.seconds = time.perf_counter() - self.epoch_started
                self.save()
                raise TrainingInterrupted(
                    f"interrupted at epoch {progress.epoch + 1}, step {progress.step}; the run "
                    f"is saved. Continue it with: digitlab train --resume {self.paths.root}"
                )

    @property
    def final_model(self) -> nn.Module:
        """What is evaluated and saved: the moving average when there is one."""
        return self.ema.module if self.ema is not None else self.model

    def train_step(self, x: torch.Tensor, y: torch.Tensor) -> tuple[float, int]:
        """One optimizer step; returns the batch's mean loss and its number of right answers."""
        if self.augment is not None:
            x = random_affine(x, self.augment, self.augment_rng)
        log_probs = self.model(x)
        loss = F.cross_entropy(log_probs, y, label_smoothing=self.config.label_smoothing)
        loss_value = loss.item()
        if not math.isfinite(loss_value):
            raise NonFiniteLossError(
                f"the training loss became {loss_value} at epoch {self.progress.epoch + 1}, "
                f"step {self.progress.step + 1}; training stopped. The last good checkpoint "
                f"(epoch {len(self.history)}) is kept in {self.paths.root}. Try a lower --lr."
            )
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        if self.scheduler is not None:
            self.scheduler.step()
        if self.ema is not None:
            self.ema.update_parameters(self.model)
        return loss_value, int((log_probs.argmax(1) == y).sum())

    def finish_epoch(self) -> EpochStats:
        """Evaluate on the test (and validation) set, record the epoch and checkpoint it."""
        test_loss, test_accuracy = self.score(self.mnist.test_images, self.mnist.test_labels)
        val_loss, val_accuracy = (
            self.score(self.val_images, self.val_labels) if len(self.val_labels) else (None, None)
        )
        progress = self.progress
        stats = EpochStats(
            epoch=progress.epoch + 1,
            train_loss=progress.loss_sum / progress.seen,
            train_accuracy=progress.correct / progress.seen,
            test_loss=test_loss,
            test_accuracy=test_accuracy,
            seconds=time.perf_counter() - self.epoch_started,
            lr=self.optimizer.param_groups[0]["lr"],
            val_loss=val_loss,
            val_accuracy=val_accuracy,
        )
        self.history.append(stats)
        self.progress = _Progress(epoch=progress.epoch + 1)
        self.order_state = self.order_rng.get_state()
        self.save()
        return stats

    def score(self, images: torch.Tensor, labels: torch.Tensor) -> tuple[float, float]:
        """Mean loss and accuracy of the model being evaluated and saved."""
        log_probs = predict_log_probs(
            self.final_model, images, batch_size=self.config.eval_batch_size, device=self.device
        )
        return loss_and_accuracy(log_probs, labels)

    def save(self) -> None:
        last = self.history[-1] if self.history else None
        metadata = checkpoint_metadata(self.config, len(self.history), _checkpoint_metrics(last))
        save_model(self.paths.model, self.final_model, metadata)
        save_training_state(
            self.paths.train_state,
            {
                "model": self.model.state_dict(),
                "optimizer": self.optimizer.state_dict(),
                "scheduler": self.scheduler.state_dict() if self.scheduler else None,
                "progress": asdict(self.progress),
                "history": [asdict(h) for h in self.history],
                "ema": self.ema.state_dict() if self.ema is not None else None,
                "rng": torch.get_rng_state(),
                "order_rng": self.order_state,
                "augment_rng": self.augment_rng.get_state(),
            },
        )
        write_json(self.paths.history, [asdict(h) for h in self.history])

    def restore(self) -> None:
        state = load_training_state(self.paths.train_state)
        try:
            self.model.load_state_dict(state["model"])
            self.optimizer.load_state_dict(state["optimizer"])
            if self.scheduler is not None:
                self.scheduler.load_state_dict(state["scheduler"])
            if self.ema is not None:
                self.ema.load_state_dict(state["ema"])
            torch.set_rng_state(state["rng"])
            self.order_rng.set_state(state["order_rng"])
            self.augment_rng.set_state(state["augment_rng"])
            self.progress = _Progress(**state["progress"])
            self.history = [EpochStats(**h) for h in state["history"]]
        except (KeyError, TypeError, ValueError, RuntimeError) as err:
            raise CheckpointError(
                f"{self.paths.train_state} does not match this run: {err}"
            ) from err


def checkpoint_metadata(
    config: TrainConfig, epoch: int, metrics: dict[str, float]
) -> dict[str, Any]:
    """What a `model.safetensors` says about itself: how it was made and how far it got."""
    return {
        "model": config.model,
        "members": config.members,
        "config": config.to_dict(),
        "epoch": epoch,
        "complete": epoch == config.epochs,
        "metrics": metrics,
        "digitlab_version": digitlab.__version__,
        "torch_version": torch.__version__,
        "data_checksum": DATA_CHECKSUM,
    }


def _checkpoint_metrics(last: EpochStats | None) -> dict[str, float]:
    if last is None:
        return {}
    metrics = {"test_accuracy": last.test_accuracy, "test_loss": last.test_loss}
    if last.val_accuracy is not None and last.val_loss is not None:
        metrics |= {"val_accuracy": last.val_accuracy, "val_loss": last.val_loss}
    return metrics


def load_run_config(run_dir: Path) -> TrainConfig:
    """The config a run was started with, for `--resume`."""
    return TrainConfig.from_dict(read_json(RunPaths(run_dir).config))


def _make_optimizer(config: TrainConfig, model: nn.Module) -> torch.optim.Optimizer:
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


SMALL_BATCH = 64  # below this, a step is too small to split across CPU threads


@contextmanager
def _cpu_threads(config: TrainConfig) -> Iterator[None]:
    """Set torch's CPU threads for the run (and restore them after): the config's number, or
    one thread for small batches, whose tiny operations lose more to thread hand-offs than
    they gain (the seed recipe's batch of 10 trains faster on one core than on two)."""
    previous = torch.get_num_threads()
    threads = config.threads or (1 if config.batch_size < SMALL_BATCH else previous)
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def _make_scheduler(
    config: TrainConfig, optimizer: torch.optim.Optimizer, steps_per_epoch: int
) -> torch.optim.lr_scheduler.LRScheduler | None:
    if config.schedule == "onecycle":
        return torch.optim.lr_scheduler.OneCycleLR(
            optimizer, max_lr=config.lr, total_steps=config.epochs * steps_per_epoch
        )
    return None


def _make_ema(config: TrainConfig, model: nn.Module) -> AveragedModel | None:
    if config.ema is None:
        return None
    # use_buffers: average BatchNorm's running statistics too, so they match the weights.
    return AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(config.ema), use_buffers=True)


def _augment_config(config: TrainConfig) -> AugmentConfig | None:
    if not (config.rotation or config.scale or config.translate):
        return None
    return AugmentConfig(rotation=config.rotation, scale=config.scale, translate=config.translate)


def _steps_per_epoch(images: int, batch_size: int) -> int:
    return math.ceil(images / batch_size)  # the last batch may be short


def _epoch_order(n: int, shuffle: bool, generator: torch.Generator) -> torch.Tensor:
    return torch.randperm(n, generator=generator) if shuffle else torch.arange(n)


@contextmanager
def _stop_requested_on_sigint() -> Iterator[threading.Event]:
    """Turn the first Ctrl-C into a flag the loop checks after each step (so the optimizer
    never stops half-way); a second Ctrl-C interrupts at once."""
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
