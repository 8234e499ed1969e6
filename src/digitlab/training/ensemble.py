"""Ensembles: `config.members` models with seeds of their own, trained one by one, averaged.

Member K is an ordinary run in `RunPaths(run_dir).member(K)` with seed `config.seed + K - 1`,
so each has its own initial weights, batch order and augmentation, its own checkpoint and
history. Their final weights, averaged by `models.Ensemble` (no member picked or dropped by any
score), are the run's model. Under torchrun the members are dealt round-robin to the
processes. Resuming skips the members that are complete, resumes the one that was interrupted
and starts the rest.
"""

from collections.abc import Callable
from dataclasses import replace

import torch
from torch import nn

from digitlab import distributed
from digitlab.checkpoint import checkpoint_metadata, load_model, read_json, save_model
from digitlab.config import TrainConfig
from digitlab.data import MNIST
from digitlab.device import select_device
from digitlab.errors import CheckpointError
from digitlab.evaluation import loss_and_accuracy, predict_log_probs
from digitlab.models import Ensemble
from digitlab.runs import RunPaths
from digitlab.training.loop import EpochStats, TrainingInterrupted


def member_config(config: TrainConfig, index: int) -> TrainConfig:
    """Member `index` (1-based): one model, with a seed of its own."""
    return replace(config, members=1, seed=config.seed + index - 1)


def members_of_rank(members: int, rank: int, world_size: int) -> list[int]:
    """The members (1-based) process `rank` of `world_size` trains: round-robin, so 5 members
    on 2 processes are 1, 3, 5 and 2, 4."""
    return list(range(rank + 1, members + 1, world_size))


def finished_member(paths: RunPaths) -> nn.Module | None:
    """The member's final model if its run completed, else None."""
    if not paths.model.is_file():
        return None
    model, metadata = load_model(paths.model)
    return model if metadata.get("complete") else None


def train_members(
    config: TrainConfig,
    paths: RunPaths,
    resume: bool,
    session: distributed.Session,
    train_one: Callable[[TrainConfig, RunPaths, bool], object],
    on_member: Callable[[int, int], None] | None,
) -> None:
    """Train (or finish) this process's members, each alone in its folder with
    `train_one(config, folder, resume)`, then wait for the other processes' members."""
    for index in members_of_rank(config.members, session.rank, session.world_size):
        folder = paths.member(index)
        if resume and finished_member(folder) is not None:
            continue
        if on_member is not None:
            on_member(index, config.members)
        try:
            train_one(member_config(config, index), folder, resume and folder.train_state.is_file())
        except TrainingInterrupted as err:
            raise TrainingInterrupted(
                f"interrupted while training member {index} of {config.members}; the run is "
                f"saved. Continue it with: digitlab train --resume {paths.root}"
            ) from err
    distributed.barrier()


def finished_members(
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


def save_ensemble(
    config: TrainConfig,
    members: list[nn.Module],
    mnist: MNIST,
    paths: RunPaths,
    session: distributed.Session,
) -> tuple[nn.Module, float, float, torch.Tensor | None]:
    """Average the members; rank 0 scores the average on the test set and saves it as the
    run's model. Returns it, its test loss and accuracy, and (on rank 0) its test
    log-probabilities."""
    device = select_device(config.device)
    ensemble = Ensemble(members).to(device).eval()
    scores, log_probs = None, None
    if session.is_main:
        log_probs = predict_log_probs(
            ensemble, mnist.test_images, batch_size=config.eval_batch_size, device=device
        )
        scores = loss_and_accuracy(log_probs, mnist.test_labels)
        metrics = {"test_accuracy": scores[1], "test_loss": scores[0]}
        metadata = checkpoint_metadata(
            config, config.epochs, metrics, world_size=session.world_size, backend=session.backend
        )
        save_model(paths.model, ensemble, metadata)
    test_loss, test_accuracy = distributed.broadcast_from_main(scores)
    return ensemble, test_loss, test_accuracy, log_probs
