"""`train(config, mnist, run_dir)`: a digit classifier, an ensemble of them, or a number reader.

The run reports through optional callbacks (`on_step`, `on_epoch`, `on_member`, `on_resume`)
that the CLI turns into a progress bar and a table; nothing here prints. After the last epoch
the model is calibrated on data held out from training, and the calibration is stored in its
checkpoint: a classifier's temperature and "not a digit" threshold (`calibrate.calibrate_run`),
a reader's string temperature and "not a number" threshold (`reading.calibrate_reader`).
"""

import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import torch
from torch import nn

from digitlab import distributed
from digitlab.checkpoint import add_metadata, read_json, write_json
from digitlab.config import TrainConfig
from digitlab.data import MNIST
from digitlab.errors import DigitlabError
from digitlab.models import task_of
from digitlab.resume import Resumed, should_resume
from digitlab.runs import RunPaths
from digitlab.training import ensemble, setup
from digitlab.training.loop import EpochStats, StepProgress, Training, TrainingInterrupted


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
    # `model`'s log-probabilities (10000, 10) on the test set, when this process computed them
    # (the report reuses them rather than evaluating the model again); None otherwise.
    test_log_probs: torch.Tensor | None = None

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


def train(
    config: TrainConfig,
    mnist: MNIST,
    run_dir: Path | str,
    *,
    resume: bool = False,
    on_step: Callable[[StepProgress], None] | None = None,
    on_epoch: Callable[[EpochStats], None] | None = None,
    on_member: Callable[[int, int], None] | None = None,
    on_resume: Callable[[Resumed], None] | None = None,
) -> RunResult:
    """Train `config` on `mnist` (one model, `config.members` averaged, or a number reader on
    numbers generated from MNIST's training digits), writing checkpoints to `run_dir`;
    continue an interrupted run there if `resume`, or if torchrun restarted this job and the
    run in `run_dir` is its own (a fresh start into a folder holding a run is refused).
    `on_member(k, n)` is called before member k of n starts training, `on_resume` when a run
    (or member) continues from its state.

    Inside `distributed.launched()` under torchrun, one model trains data-parallel on every
    process, and an ensemble's members are dealt round-robin to the processes; every process
    returns the same result, and only rank 0 writes the run's files."""
    started = time.perf_counter()
    paths = RunPaths(Path(run_dir))
    session = distributed.current()
    requested = resume
    resume = _decided_by_main(lambda: should_resume(paths, config, requested=requested), session)
    train_one = partial(
        _train_model, mnist=mnist, on_step=on_step, on_epoch=on_epoch, on_resume=on_resume
    )
    held_out_log_probs = None
    if config.members == 1:
        run = train_one(config, paths, resume, session=session)
        model, histories = run.final_model, [run.history]
        test_loss, test_accuracy = run.history[-1].test_loss, run.history[-1].test_accuracy
        final = run.final_scores
        test_log_probs = final.test_log_probs if final else None
        held_out_log_probs = final.val_log_probs if final else None
    else:
        if not resume and session.is_main:
            write_json(paths.config, config.to_dict())
        one_process = partial(train_one, session=distributed.Session())
        ensemble.train_members(config, paths, resume, session, one_process, on_member)
        members, histories = ensemble.finished_members(config, paths)
        model, test_loss, test_accuracy, test_log_probs = ensemble.save_ensemble(
            config, members, mnist, paths, session
        )
    # Training is over and `model` is final: post-training steps belong here.
    if session.is_main:
        _calibrate(config, mnist, paths, model, held_out_log_probs)
    return RunResult(
        run_dir=paths.root,
        config=config,
        model=model,
        member_histories=histories,
        test_accuracy=test_accuracy,
        test_loss=test_loss,
        wall_seconds=time.perf_counter() - started,
        test_log_probs=test_log_probs,
    )


def _train_model(
    config: TrainConfig,
    paths: RunPaths,
    resume: bool,
    *,
    mnist: MNIST,
    session: distributed.Session,
    on_step: Callable[[StepProgress], None] | None,
    on_epoch: Callable[[EpochStats], None] | None,
    on_resume: Callable[[Resumed], None] | None,
) -> Training:
    """Train one model to its last epoch (or until Ctrl-C, which raises TrainingInterrupted),
    data-parallel over the session's processes."""
    run = Training.start(config, partial(_make_task, config, mnist), paths, session)
    if resume:
        resumed = run.restore()
        if on_resume is not None:
            on_resume(resumed)
    elif session.is_main:
        write_json(paths.config, config.to_dict())
    with setup.cpu_threads(config, session), setup.stop_requested_on_sigint() as stop_requested:
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


def _make_task(
    config: TrainConfig, mnist: MNIST, device: torch.device, session: distributed.Session
) -> Any:
    """What the model learns from: MNIST's images, or numbers generated from them."""
    if task_of(config.model) == "numbers":
        from digitlab.training.reading import ReaderTask  # imports the generators

        return ReaderTask(config, mnist, device, session)
    from digitlab.training.digits import DigitTask

    return DigitTask(config, mnist, device, session)


def _calibrate(
    config: TrainConfig,
    mnist: MNIST,
    paths: RunPaths,
    model: nn.Module,
    held_out_log_probs: torch.Tensor | None,
) -> None:
    """Calibrate the final `model`; `held_out_log_probs`, its log-probabilities on the held-out
    images when training has just computed them, spare a classifier's second pass over them."""
    device = next(model.parameters()).device
    if task_of(config.model) == "numbers":
        from digitlab.training.reading import reader_calibration

        add_metadata(paths.model, {"reader": reader_calibration(config, mnist, model, device)})
        return
    from digitlab.calibrate import calibrate_run  # temperature and "not a digit" detector

    calibrate_run(config, mnist, paths.model, model, device, held_out_log_probs=held_out_log_probs)


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


def load_run_config(run_dir: Path) -> TrainConfig:
    """The config a run was started with, for `--resume`."""
    return TrainConfig.from_dict(read_json(RunPaths(run_dir).config))
