"""`train(config, mnist, run_dir)`: train a model or an ensemble, checkpoint, resume.

The loop prints nothing; it reports through optional callbacks (`on_step`, `on_epoch`,
`on_member`) that the CLI turns into a progress bar and a table. On the CPU a run is bitwise
reproducible: the same seed gives the same weights, and a run interrupted with Ctrl-C (SIGINT) and
resumed ends with exactly the weights of an uninterrupted one, because everything random — the
global RNG, the shuffling generator, the position inside the epoch — is saved with the optimizer
state.

The state is saved at every epoch's end and, inside an epoch, every `config.checkpoint_every`
minutes, so a run killed outright (`kill -9`, a lost machine) loses minutes, not its epoch, and
continues bitwise as if it had not been: by hand with `resume`, or by itself when torchrun
restarts it (see `resume.py`).

An ensemble (`config.members > 1`) is trained member by member, each an ordinary run in its own
folder (see `ensemble.py`); resuming it skips the members that are complete, resumes the one that
was interrupted and starts the rest.
"""

import math
import signal
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

from digitlab import distributed
from digitlab.augment import AugmentConfig, random_affine
from digitlab.calibrate import calibrate_run
from digitlab.checkpoint import (
    checkpoint_metadata,
    load_training_state,
    read_json,
    remove_leftovers,
    save_model,
    save_training_state,
    write_json,
)
from digitlab.config import TrainConfig
from digitlab.data import MNIST, iterate_batches, split_validation, to_float
from digitlab.device import select_device
from digitlab.ensemble import finished_member, member_config, members_of_rank
from digitlab.errors import CheckpointError, DigitlabError
from digitlab.evaluate import loss_and_accuracy, predict_log_probs
from digitlab.models import Ensemble, create_model
from digitlab.resume import Resumed, should_resume
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


@dataclass(frozen=True)
class RunResult:
    """What `train` made: the model (an `Ensemble` when `config.members > 1`) and how it went."""

    run_dir: Path
    config: TrainConfig
    model: nn.Module
    member_histories: list[list[EpochStats]]  # one per member; one for a single model
    test_accuracy: float  # of `model`: for an ensemble, of the averaged members
    test_loss: float
    wall_seconds: float  # this call's time; a resumed run counts only its remaining part

    @property
    def history(self) -> list[EpochStats]:
        """The epochs of a single model (of member 1 for an ensemble)."""
        return self.member_histories[0]

    def to_dict(self) -> dict[str, Any]:
        last = self.history[-1]
        single = self.config.members == 1
        return {
            "test_accuracy": self.test_accuracy,
            "test_loss": self.test_loss,
            "train_accuracy": last.train_accuracy if single else None,
            "train_loss": last.train_loss if single else None,
            "val_accuracy": last.val_accuracy if single else None,
            "val_loss": last.val_loss if single else None,
            "epochs": len(self.history),
            "members": self.config.members,
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


def train(
    config: TrainConfig,
    mnist: MNIST,
    run_dir: Path,
    *,
    resume: bool = False,
    on_step: Callable[[StepProgress], None] | None = None,
    on_epoch: Callable[[EpochStats], None] | None = None,
    on_member: Callable[[int, int], None] | None = None,
    on_resume: Callable[[Resumed], None] | None = None,
) -> RunResult:
    """Train `config` on `mnist` (one model, or `config.members` averaged), writing checkpoints
    to `run_dir`; continue an interrupted run there if `resume`, or if torchrun restarted this
    job and the run in `run_dir` is its own (a fresh start into a folder holding a run is
    refused). `on_member(k, n)` is called before member k of n starts training, `on_resume`
    when a run (or member) continues from its state.

    Inside `distributed.launched()` under torchrun, one model trains data-parallel on every
    process, and an ensemble's members are dealt round-robin to the processes; every process
    returns the same result, and only rank 0 writes the run's files."""
    started = time.perf_counter()
    paths = RunPaths(Path(run_dir))
    session = distributed.current()
    requested = resume
    resume = _decided_by_main(lambda: should_resume(paths, config, requested=requested), session)
    if config.members == 1:
        run = _train_model(config, mnist, paths, resume, session, on_step, on_epoch, on_resume)
        model, histories = run.final_model, [run.history]
        test_loss, test_accuracy = run.history[-1].test_loss, run.history[-1].test_accuracy
    else:
        if not resume and session.is_main:
            write_json(paths.config, config.to_dict())
        _train_members(
            config, mnist, paths, resume, session, on_step, on_epoch, on_member, on_resume
        )
        members, histories = _finished_members(config, paths)
        model, test_loss, test_accuracy = _save_ensemble(config, members, mnist, paths, session)
    # Training is over and `model` is final: post-training steps belong here.
    if session.is_main:  # temperature and "not a digit" detector into the checkpoint
        device = next(model.parameters()).device
        calibrate_run(config, mnist, paths.model, model, device)
    return RunResult(
        run_dir=paths.root,
        config=config,
        model=model,
        member_histories=histories,
        test_accuracy=test_accuracy,
        test_loss=test_loss,
        wall_seconds=time.perf_counter() - started,
    )


def _train_model(
    config: TrainConfig,
    mnist: MNIST,
    paths: RunPaths,
    resume: bool,
    session: distributed.Session,
    on_step: Callable[[StepProgress], None] | None,
    on_epoch: Callable[[EpochStats], None] | None,
    on_resume: Callable[[Resumed], None] | None,
) -> "_Training":
    """Train one model to its last epoch (or until Ctrl-C, which raises TrainingInterrupted),
    data-parallel over the session's processes."""
    run = _Training.start(config, mnist, paths, session)
    if resume:
        resumed = run.restore()
        if on_resume is not None:
            on_resume(resumed)
    elif session.is_main:
        write_json(paths.config, config.to_dict())
    with _cpu_threads(config, session), _stop_requested_on_sigint() as stop_requested:
        while run.progress.epoch < config.epochs:
            run.train_epoch(stop_requested, on_step)
            stats = run.finish_epoch()
            if on_epoch is not None:
                on_epoch(stats)
            if run.stop_agreed(stop_requested) and run.progress.epoch < config.epochs:
                raise TrainingInterrupted(
                    f"interrupted after epoch {run.progress.epoch}; the run is saved. "
                    f"Continue it with: digitlab train --resume {paths.root}"
                )
    return run


def _decided_by_main(decide: Callable[[], bool], session: distributed.Session) -> bool:
    """Rank 0's answer (or error) on every rank: all start, resume or refuse together, as the
    ranks of a job that disagree would wait for each other forever."""
    if not session.is_distributed:
        return decide()
    answer: bool | DigitlabError | None = None
    if session.is_main:
        try:
            answer = decide()
        except DigitlabError as err:
            answer = err
    answer = distributed.broadcast_from_main(answer)
    if isinstance(answer, DigitlabError):
        raise answer
    return bool(answer)


def _train_members(
    config: TrainConfig,
    mnist: MNIST,
    paths: RunPaths,
    resume: bool,
    session: distributed.Session,
    on_step: Callable[[StepProgress], None] | None,
    on_epoch: Callable[[EpochStats], None] | None,
    on_member: Callable[[int, int], None] | None,
    on_resume: Callable[[Resumed], None] | None,
) -> None:
    """Train (or finish) this process's members of an ensemble, each alone in its folder,
    then wait for the other processes' members."""
    for index in members_of_rank(config.members, session.rank, session.world_size):
        folder = paths.member(index)
        if resume and finished_member(folder) is not None:
            continue
        if on_member is not None:
            on_member(index, config.members)
        try:
            _train_model(
                member_config(config, index),
                mnist,
                folder,
                resume and folder.train_state.is_file(),
                distributed.Session(),  # a member is trained by one process
                on_step,
                on_epoch,
                on_resume,
            )
        except TrainingInterrupted as err:
            raise TrainingInterrupted(
                f"interrupted while training member {index} of {config.members}; the run is "
                f"saved. Continue it with: digitlab train --resume {paths.root}"
            ) from err
    distributed.barrier()


def _finished_members(
    config: TrainConfig, paths: RunPaths
) -> tuple[list[nn.Module], list[list[EpochStats]]]:
    """Every member's final model and history, read back from its folder (whichever process
    trained it)."""
    models, histories = [], []
    for index, folder in enumerate(paths.members(config.members), 1):
        model = finished_member(folder)
        if model is None:
            raise CheckpointError(f"member {index} in {folder.root} did not finish training")
        models.append(model)
        histories.append([EpochStats(**h) for h in read_json(folder.history)])
    return models, histories


def _save_ensemble(
    config: TrainConfig,
    members: list[nn.Module],
    mnist: MNIST,
    paths: RunPaths,
    session: distributed.Session,
) -> tuple[nn.Module, float, float]:
    """Average the members; rank 0 scores the average on the test set and saves it as the
    run's model."""
    device = select_device(config.device)
    ensemble = Ensemble(members).to(device).eval()
    scores = None
    if session.is_main:
        log_probs = predict_log_probs(
            ensemble, mnist.test_images, batch_size=config.eval_batch_size, device=device
        )
        scores = loss_and_accuracy(log_probs, mnist.test_labels)
        metrics = {"test_accuracy": scores[1], "test_loss": scores[0]}
        metadata = checkpoint_metadata(
            config,
            config.epochs,
            metrics,
            world_size=session.world_size,
            backend=session.backend,
        )
        save_model(paths.model, ensemble, metadata)
    test_loss, test_accuracy = distributed.broadcast_from_main(scores)
    return ensemble, test_loss, test_accuracy


@dataclass
class _Training:
    """The objects of one run and the few methods that move it forward.

    With `session.is_distributed` (torchrun, one model) every rank holds the same model wrapped
    in DistributedDataParallel, walks the same global batch order and trains on its share of
    each global batch; rank 0 evaluates and writes the checkpoints, the others wait for it.
    Rank 0's clock alone says when a checkpoint is due inside an epoch, and the step's
    all-reduce tells the others, so every rank saves after the same step.
    """

    config: TrainConfig
    mnist: MNIST
    paths: RunPaths
    session: distributed.Session  # the processes training this model (one of one when alone)
    device: torch.device
    model: nn.Module  # the network itself (what is saved)
    step_model: nn.Module  # what the optimizer step runs: the network, or its DDP wrapper
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
    resumed: list[dict[str, int]] = field(default_factory=list)  # Resumed.record()s, in order
    saved_at: float = field(default_factory=time.monotonic)  # when the state was last saved

    @classmethod
    def start(
        cls,
        config: TrainConfig,
        mnist: MNIST,
        paths: RunPaths,
        session: distributed.Session | None = None,
    ) -> "_Training":
        session = session or distributed.Session()
        device = select_device(config.device)
        torch.manual_seed(config.seed)  # before building the model: it fixes the initial weights
        model = create_model(config.model).to(device)
        if config.channels_last or device.type == "cuda":  # tensor cores want NHWC
            model = model.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
        (train_images, train_labels), (val_images, val_labels) = split_validation(
            mnist.train_images[: config.subset],
            mnist.train_labels[: config.subset],
            config.validation,
        )
        step_model = _data_parallel(model, device) if session.is_distributed else model
        optimizer = _make_optimizer(config, model)
        steps = _steps_per_epoch(len(train_images), config.batch_size)
        return cls(
            config=config,
            mnist=mnist,
            paths=paths,
            session=session,
            device=device,
            model=model,
            step_model=step_model,
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
        for batch in self.batches(order.to(self.device), start_batch=progress.step):
            loss, correct, any_rank_stopping, checkpoint = self.train_step(
                batch, stop_requested.is_set(), self.checkpoint_due()
            )
            progress.step += 1
            progress.loss_sum += loss * batch.size
            progress.correct += correct
            progress.seen += batch.size
            if on_step is not None:
                mean_loss = progress.loss_sum / progress.seen
                on_step(
                    StepProgress(progress.epoch + 1, progress.step, self.steps_per_epoch, mean_loss)
                )
            # Alone, a Ctrl-C that arrives during on_step still stops at this step; under DDP
            # every rank must stop at the same step, so the flags summed in it decide.
            stop = any_rank_stopping if self.session.is_distributed else stop_requested.is_set()
            if (stop or checkpoint) and progress.step < self.steps_per_epoch:  # else: epoch end
                progress.seconds = time.perf_counter() - self.epoch_started
                self.save(epoch_end=False)
            if stop and progress.step < self.steps_per_epoch:
                raise TrainingInterrupted(
                    f"interrupted at epoch {progress.epoch + 1}, step {progress.step}; the run "
                    f"is saved. Continue it with: digitlab train --resume {self.paths.root}"
                )

    def batches(self, order: torch.Tensor, start_batch: int) -> Iterator["_Batch"]:
        """The epoch's batches from `start_batch` on. Alone, whole batches (as
        `iterate_batches`); under DDP, this rank's share of each global batch."""
        if not self.session.is_distributed:
            for x, y in iterate_batches(
                self.train_images,
                self.train_labels,
                self.config.batch_size,
                order=order,
                start_batch=start_batch,
                device=self.device,
            ):
                yield _Batch(x, y, size=len(y), rows=slice(None))
            return
        for global_batch in order.split(self.config.batch_size)[start_batch:]:
            rows = distributed.share_of_batch(len(global_batch), self.session)
            index = global_batch[rows]
            # Convert only this rank's share to float: the uint8 images stay where they are.
            x, y = to_float(self.train_images[index]), self.train_labels[index]
            yield _Batch(x, y, size=len(global_batch), rows=rows)

    @property
    def final_model(self) -> nn.Module:
        """What is evaluated and saved: the moving average when there is one."""
        return self.ema.module if self.ema is not None else self.model

    def checkpoint_due(self) -> bool:
        """Whether `config.checkpoint_every` minutes have passed since the last save, by this
        process's clock: rank 0's decides for every rank (see `train_step`)."""
        every = self.config.checkpoint_every
        elapsed = time.monotonic() - self.saved_at
        return self.session.is_main and every > 0 and elapsed >= every * 60

    def train_step(
        self, batch: "_Batch", stop_requested: bool, checkpoint_due: bool
    ) -> tuple[float, int, bool, bool]:
        """One optimizer step on `batch`; returns the (global) batch's mean loss, its number of
        right answers, whether any process asked to stop after this step and whether to save
        the state after it (rank 0's `checkpoint_due`)."""
        x, y = batch.images, batch.labels
        if self.augment is not None:
            x = random_affine(
                x, self.augment, self.augment_rng, rows=batch.rows, batch_size=batch.size
            )
        with _mixed_precision(self.device):
            log_probs = self.step_model(x)
        log_probs = log_probs.float()
        correct = (log_probs.argmax(1) == y).sum()
        if self.session.is_distributed:
            loss_sum = F.cross_entropy(
                log_probs, y, label_smoothing=self.config.label_smoothing, reduction="sum"
            )
            # DDP averages gradients over the ranks; scaling each rank's sum by
            # world_size / batch size makes that average the gradient of the global batch's
            # mean loss, however unevenly the batch was split.
            loss = loss_sum * (self.session.world_size / batch.size)
            # The flags travel with the sums: one all-reduce per step, and one answer for all.
            flags = torch.tensor([stop_requested, checkpoint_due], device=correct.device)
            totals = distributed.all_reduce_sum(
                torch.cat([torch.stack([loss_sum.detach(), correct]), flags]).to(torch.float64)
            ).tolist()
            loss_value, correct_count = totals[0] / batch.size, int(totals[1])
            stop, checkpoint = totals[2] > 0, totals[3] > 0
        else:
            loss = F.cross_entropy(log_probs, y, label_smoothing=self.config.label_smoothing)
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
        """Evaluate on the test (and validation) set, record the epoch and checkpoint it.
        Under DDP rank 0 evaluates and tells the others."""
        stats = self.evaluate_epoch() if self.session.is_main else None
        if self.session.is_distributed:
            stats = distributed.broadcast_from_main(stats)
        assert stats is not None
        self.history.append(stats)
        self.progress = _Progress(epoch=self.progress.epoch + 1)
        self.order_state = self.order_rng.get_state()
        self.save(epoch_end=True)
        return stats

    def evaluate_epoch(self) -> EpochStats:
        test_loss, test_accuracy = self.score(self.mnist.test_images, self.mnist.test_labels)
        val_loss, val_accuracy = (
            self.score(self.val_images, self.val_labels) if len(self.val_labels) else (None, None)
        )
        progress = self.progress
        return EpochStats(
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

    def score(self, images: torch.Tensor, labels: torch.Tensor) -> tuple[float, float]:
        """Mean loss and accuracy of the model being evaluated and saved."""
        log_probs = predict_log_probs(
            self.final_model, images, batch_size=self.config.eval_batch_size, device=self.device
        )
        return loss_and_accuracy(log_probs, labels)

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
                "order_rng": self.order_state,
                "augment_rng": self.augment_rng.get_state(),
            },
        )

    def write_epoch_files(self) -> None:
        """The checkpoint (`model.safetensors`) and `history.json` of the last finished epoch."""
        last = self.history[-1] if self.history else None
        metadata = checkpoint_metadata(
            self.config,
            len(self.history),
            _checkpoint_metrics(last),
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
            self.order_rng.set_state(state["order_rng"])
            self.augment_rng.set_state(state["augment_rng"])
            self.progress = _Progress(**state["progress"])
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


@dataclass(frozen=True)
class _Batch:
    """This process's images of one global batch."""

    images: torch.Tensor  # (n, 1, 28, 28) float
    labels: torch.Tensor  # (n,)
    size: int  # images in the global batch (n when training alone)
    rows: slice  # which rows of the global batch these are


def _mixed_precision(device: torch.device) -> AbstractContextManager[object]:
    """bf16 autocast on CUDA: matrix products on tensor cores at twice fp32's speed, with
    fp32's range (no loss scaling needed). The CPU keeps fp32, which keeps it bitwise
    reproducible."""
    if device.type != "cuda":
        return nullcontext()
    return torch.autocast("cuda", dtype=torch.bfloat16)


def _data_parallel(model: nn.Module, device: torch.device) -> nn.Module:
    """Wrap `model` for DDP. On CUDA, BatchNorm layers become SyncBatchNorm (statistics over the
    global batch); gloo has no SyncBatchNorm, so on the CPU each rank normalises with its own
    share's statistics."""
    from torch.nn.parallel import DistributedDataParallel

    if device.type == "cuda":
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
        return DistributedDataParallel(model, device_ids=[device.index])
    return DistributedDataParallel(model)


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
def _cpu_threads(config: TrainConfig, session: distributed.Session) -> Iterator[None]:
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
