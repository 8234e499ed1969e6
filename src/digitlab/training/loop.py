"""The training loop of one model: steps, epochs, checkpoints, Ctrl-C, resume, data parallel.

What is trained on and how it is scored belong to a `Task` (`digits.DigitTask`: MNIST's
images; `reading.ReaderTask`: generated numbers); this loop only moves the run forward. On the
CPU a run is bitwise reproducible: the same seed gives the same weights, and a run stopped by
Ctrl-C or killed outright and resumed ends with exactly the weights of an uninterrupted one,
because everything random — the global RNG, the task's generators, the position inside the
epoch — is saved with the optimizer state. The state is saved at every epoch's end and, inside
an epoch, every `config.checkpoint_every` minutes.

With `session.is_distributed` (torchrun) every rank holds the same model wrapped in
DistributedDataParallel and trains on its share of each global batch; rank 0 evaluates and
writes the checkpoints, the others wait for it. Rank 0's clock alone says when a checkpoint is
due inside an epoch, and the step's all-reduce tells the others, so every rank saves after the
same step.
"""

import math
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

import torch
from torch import nn
from torch.optim.swa_utils import AveragedModel

from digitlab import distributed
from digitlab.checkpoint import (
    checkpoint_metadata,
    load_training_state,
    remove_leftovers,
    save_model,
    save_training_state,
    write_json,
)
from digitlab.config import TrainConfig
from digitlab.device import select_device
from digitlab.errors import CheckpointError, DigitlabError
from digitlab.models import create_model
from digitlab.resume import Resumed
from digitlab.runs import RunPaths
from digitlab.training import setup


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


@dataclass(frozen=True)
class Scores:
    """An epoch's evaluation: loss and accuracy on the test set and the held-out one."""

    test_loss: float
    test_accuracy: float
    val_loss: float | None = None
    val_accuracy: float | None = None
    # The log-probabilities (N, 10) behind the scores, when the task keeps them: the last
    # epoch's are the final model's, which the calibration (held-out images) and the report
    # (test set) reuse instead of evaluating the same model on the same images again.
    test_log_probs: torch.Tensor | None = None
    val_log_probs: torch.Tensor | None = None


class Batch(Protocol):
    size: int  # samples in the global batch (this process may hold fewer)


class Task(Protocol):
    """What a model learns from and how it is scored (see digits.py and reading.py)."""

    steps_per_epoch: int
    clip_norm: float | None  # clip the gradient's norm to this, or not at all

    def begin_epoch(self, epoch: int) -> None: ...
    def end_epoch(self) -> None: ...
    def batches(self, start_step: int) -> Iterator[Any]: ...
    def losses(
        self, model: nn.Module, batch: Any, distributed: bool
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]: ...
    def evaluate(self, model: nn.Module) -> Scores: ...
    def state_dict(self) -> dict[str, Any]: ...
    def load_state_dict(self, state: dict[str, Any]) -> None: ...


@dataclass
class Progress:
    """Where training stands; saved in `train_state.pt` so a resumed run continues exactly."""

    epoch: int = 0  # 0-based epoch in progress
    step: int = 0  # steps already done in this epoch
    loss_sum: float = 0.0  # sum of per-sample losses so far this epoch
    correct: int = 0
    seen: int = 0
    seconds: float = 0.0  # training time spent in this epoch so far


@dataclass
class Training:
    """The objects of one run and the few methods that move it forward."""

    config: TrainConfig
    task: Task
    paths: RunPaths
    session: distributed.Session  # the processes training this model (one of one when alone)
    device: torch.device
    model: nn.Module  # the network itself (what is saved)
    step_model: nn.Module  # what the optimizer step runs: the network, or its DDP wrapper
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler | None
    ema: AveragedModel | None  # moving average of the weights, when the config asks for one
    progress: Progress = field(default_factory=Progress)
    history: list[EpochStats] = field(default_factory=list)
    epoch_started: float = 0.0
    resumed: list[dict[str, int]] = field(default_factory=list)  # Resumed.record()s, in order
    saved_at: float = field(default_factory=time.monotonic)  # when the state was last saved
    last_scores: Scores | None = None  # of the last epoch evaluated by this process

    @classmethod
    def start(
        cls,
        config: TrainConfig,
        make_task: Callable[[torch.device, distributed.Session], Task],
        paths: RunPaths,
        session: distributed.Session | None = None,
    ) -> "Training":
        session = session or distributed.Session()
        device = select_device(config.device)
        torch.manual_seed(config.seed)  # before building the model: it fixes the initial weights
        model = create_model(config.model).to(device)
        if config.channels_last or device.type == "cuda":  # tensor cores want NHWC
            model = model.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
        task = make_task(device, session)
        optimizer = setup.make_optimizer(config, model)
        return cls(
            config=config,
            task=task,
            paths=paths,
            session=session,
            device=device,
            model=model,
            step_model=setup.data_parallel(model, device) if session.is_distributed else model,
            optimizer=optimizer,
            scheduler=setup.make_scheduler(config, optimizer, task.steps_per_epoch),
            ema=setup.make_ema(config, model),
        )

    @property
    def final_model(self) -> nn.Module:
        """What is evaluated and saved: the moving average when there is one."""
        return self.ema.module if self.ema is not None else self.model

    @property
    def final_scores(self) -> Scores | None:
        """The final model's scores, if this process evaluated it after the last epoch (not
        when the run was already complete before it resumed, nor on ranks other than 0)."""
        finished = len(self.history) == self.config.epochs and self.progress.step == 0
        return self.last_scores if finished else None

    def train_epoch(
        self, stop_requested: threading.Event, on_step: Callable[[StepProgress], None] | None
    ) -> None:
        progress, steps = self.progress, self.task.steps_per_epoch
        self.task.begin_epoch(progress.epoch)
        self.epoch_started = time.perf_counter() - progress.seconds
        self.model.train()
        for batch in self.task.batches(progress.step):
            loss, correct, any_rank_stopping, checkpoint = self.train_step(
                batch, stop_requested.is_set(), self.checkpoint_due()
            )
            progress.step += 1
            progress.loss_sum += loss * batch.size
            progress.correct += correct
            progress.seen += batch.size
            if on_step is not None:
                mean_loss = progress.loss_sum / progress.seen
                on_step(StepProgress(progress.epoch + 1, progress.step, steps, mean_loss))
            # Alone, a Ctrl-C that arrives during on_step still stops at this step; under DDP
            # every rank must stop at the same step, so the flags summed in it decide.
            stop = any_rank_stopping if self.session.is_distributed else stop_requested.is_set()
            if (stop or checkpoint) and progress.step < steps:  # else: the epoch's end saves
                progress.seconds = time.perf_counter() - self.epoch_started
                self.save(epoch_end=False)
            if stop and progress.step < steps:
                raise TrainingInterrupted(
                    f"interrupted at epoch {progress.epoch + 1}, step {progress.step}; the run "
                    f"is saved. Continue it with: digitlab train --resume {self.paths.root}"
                )
            if progress.step == steps:
                break  # a generated stream does not end by itself

    def checkpoint_due(self) -> bool:
        """Whether `config.checkpoint_every` minutes have passed since the last save, by this
        process's clock: rank 0's decides for every rank (see `train_step`)."""
        every = self.config.checkpoint_every
        elapsed = time.monotonic() - self.saved_at
        return self.session.is_main and every > 0 and elapsed >= every * 60

    def train_step(
        self, batch: Any, stop_requested: bool, checkpoint_due: bool
    ) -> tuple[float, int, bool, bool]:
        """One optimizer step on `batch`; returns the (global) batch's mean loss, its number of
        right answers, whether any process asked to stop after this step and whether to save
        the state after it (rank 0's `checkpoint_due`)."""
        loss, loss_sum, correct = self.task.losses(
            self.step_model, batch, self.session.is_distributed
        )
        if self.session.is_distributed:
            # The flags travel with the sums: one all-reduce per step, and one answer for all.
            flags = torch.tensor([stop_requested, checkpoint_due], device=correct.device)
            totals = distributed.all_reduce_sum(
                torch.cat([torch.stack([loss_sum.detach(), correct]), flags]).to(torch.float64)
            ).tolist()
            loss_value, correct_count = totals[0] / batch.size, int(totals[1])
            stop, checkpoint = totals[2] > 0, totals[3] > 0
        else:
            loss_value, correct_count = loss.item(), int(correct)
            stop, checkpoint = stop_requested, checkpoint_due
        if not math.isfinite(loss_value):
            raise NonFiniteLossError(
                f"the training loss became {loss_value} at epoch {self.progress.epoch + 1}, "
                f"step {self.progress.step + 1}; training stopped. The last good checkpoint "
                f"(epoch {len(self.history)}) is kept in {self.paths.root}. Try a lower --lr."
            )
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if self.task.clip_norm is not None:
            nn.utils.clip_grad_norm_(self.model.parameters(), self.task.clip_norm)
        self.optimizer.step()
        if self.scheduler is not None:
            self.scheduler.step()
        if self.ema is not None:
            self.ema.update_parameters(self.model)
        return loss_value, correct_count, stop, checkpoint

    def stop_agreed(self, stop_requested: threading.Event) -> bool:
        """Whether to stop at an epoch's end: asked by any process (all must agree)."""
        if not self.session.is_distributed:
            return stop_requested.is_set()
        flag = torch.tensor([float(stop_requested.is_set())], device=self.device)
        return bool(distributed.all_reduce_sum(flag).item() > 0)

    def finish_epoch(self) -> EpochStats:
        """Evaluate, record the epoch and checkpoint it. Under DDP rank 0 evaluates and tells
        the others."""
        stats = self.evaluate_epoch() if self.session.is_main else None
        if self.session.is_distributed:
            stats = distributed.broadcast_from_main(stats)
        assert stats is not None
        self.history.append(stats)
        self.progress = Progress(epoch=self.progress.epoch + 1)
        self.task.end_epoch()
        self.save(epoch_end=True)
        return stats

    def evaluate_epoch(self) -> EpochStats:
        scores = self.last_scores = self.task.evaluate(self.final_model)
        progress = self.progress
        return EpochStats(
            epoch=progress.epoch + 1,
            train_loss=progress.loss_sum / progress.seen,
            train_accuracy=progress.correct / progress.seen,
            test_loss=scores.test_loss,
            test_accuracy=scores.test_accuracy,
            seconds=time.perf_counter() - self.epoch_started,
            lr=self.optimizer.param_groups[0]["lr"],
            val_loss=scores.val_loss,
            val_accuracy=scores.val_accuracy,
        )

    def save(self, *, epoch_end: bool) -> None:
        """Save the training state (rank 0 only; the others wait until it is on disk). At an
        epoch's end also the model and the history, which say what that epoch scored; inside
        an epoch the state alone, as nothing there has been evaluated."""
        if self.session.is_main:
            self.write_state()
            if epoch_end:
                self.write_epoch_files()
        if self.session.is_distributed:
            distributed.barrier()
        self.saved_at = time.monotonic()

    def write_state(self) -> None:
        """`train_state.pt`: everything a resumed run needs, and all it reads. Written before
        the model, so a kill between the two leaves a state that is at least as new."""
        save_training_state(
            self.paths.train_state,
            {
                "config": self.config.to_dict(),
                "model": self.model.state_dict(),
                "optimizer": self.optimizer.state_dict(),
                "scheduler": self.scheduler.state_dict() if self.scheduler else None,
                "progress": asdict(self.progress),
                "history": [asdict(h) for h in self.history],
                "resumed": self.resumed,
                "ema": self.ema.state_dict() if self.ema is not None else None,
                "rng": torch.get_rng_state(),
                **self.task.state_dict(),
            },
        )

    def write_epoch_files(self) -> None:
        """The checkpoint (`model.safetensors`) and `history.json` of the last finished epoch."""
        last = self.history[-1] if self.history else None
        metadata = checkpoint_metadata(
            self.config,
            len(self.history),
            checkpoint_metrics(last),
            world_size=self.session.world_size,
            backend=self.session.backend,
            resumed=self.resumed,
        )
        save_model(self.paths.model, self.final_model, metadata)
        write_json(self.paths.history, [asdict(h) for h in self.history])

    def restore(self) -> Resumed:
        """Continue from `train_state.pt`; refuses (CheckpointError, nothing written) a state
        that is damaged, not a digitlab state, or another run's."""
        state = load_training_state(self.paths.train_state)
        saved_config = state.get("config")  # absent from states written before it was saved
        if isinstance(saved_config, dict):
            differences = self.config.result_differences(TrainConfig.from_dict(saved_config))
            if differences:
                raise CheckpointError(
                    f"{self.paths.train_state} is the state of another run (it differs in: "
                    f"{', '.join(differences)}); resume the run it belongs to, or train afresh "
                    "in another folder"
                )
        try:
            self.model.load_state_dict(state["model"])
            self.optimizer.load_state_dict(state["optimizer"])
            if self.scheduler is not None:
                self.scheduler.load_state_dict(state["scheduler"])
            if self.ema is not None:
                self.ema.load_state_dict(state["ema"])
            torch.set_rng_state(state["rng"])
            self.task.load_state_dict(state)
            self.progress = Progress(**state["progress"])
            self.history = [EpochStats(**h) for h in state["history"]]
            self.resumed = list(state.get("resumed", []))
        except (KeyError, TypeError, ValueError, RuntimeError) as err:
            first_line = str(err).strip().splitlines()[0] if str(err).strip() else repr(err)
            raise CheckpointError(
                f"{self.paths.train_state} does not match this run: {first_line}"
            ) from err
        resumed = Resumed(
            self.paths.root,
            epoch=self.progress.epoch + 1,
            step=self.progress.step,
            torchrun_restart=distributed.restart_count(),
        )
        self.resumed.append(resumed.record())
        if self.session.is_main:
            remove_leftovers(self.paths.root)
            if self.progress.step == 0:  # at an epoch's end: the model file may predate the state
                self.write_epoch_files()
        return resumed


def checkpoint_metrics(last: EpochStats | None) -> dict[str, float]:
    if last is None:
        return {}
    metrics = {"test_accuracy": last.test_accuracy, "test_loss": last.test_loss}
    if last.val_accuracy is not None and last.val_loss is not None:
        metrics |= {"val_accuracy": last.val_accuracy, "val_loss": last.val_loss}
    return metrics
