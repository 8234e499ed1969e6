"""`fit_ensemble(config, mnist, run_dir)`: train `config.members` models and average them.

Each member is an ordinary run in `run_dir/member-K` with its own seed (`config.seed + K - 1`),
so it has its own initial weights, batch order and augmentation, and its own checkpoint and
history. When all are trained, `run_dir/model.safetensors` holds the `Ensemble` of their final
weights (no member is picked or dropped by any score). Resuming an ensemble skips the members
that are complete, resumes the one that was interrupted and starts the rest; without `resume`,
every member is trained afresh.
"""

import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from torch import nn

from digitlab.calibrate import calibrate_run
from digitlab.checkpoint import load_model, save_model, write_json
from digitlab.config import TrainConfig
from digitlab.data import MNIST
from digitlab.device import select_device
from digitlab.evaluate import loss_and_accuracy, predict_log_probs
from digitlab.models import Ensemble
from digitlab.runs import RunPaths
from digitlab.train import (
    EpochStats,
    StepProgress,
    TrainingInterrupted,
    checkpoint_metadata,
    fit,
)


@dataclass
class EnsembleResult:
    run_dir: Path
    config: TrainConfig
    member_dirs: list[Path]
    test_accuracy: float
    test_loss: float
    wall_seconds: float  # this call's time; resumed members count only their remaining part
    model: nn.Module

    def to_dict(self) -> dict[str, Any]:
        return {
            "test_accuracy": self.test_accuracy,
            "test_loss": self.test_loss,
            "members": len(self.member_dirs),
            "epochs": self.config.epochs,
            "wall_seconds": self.wall_seconds,
            "run_dir": str(self.run_dir),
            "recipe": self.config.recipe,
            "model": self.config.model,
        }


def member_dir(run_dir: Path, index: int) -> Path:
    """The run folder of member `index` (1-based)."""
    return Path(run_dir) / f"member-{index}"


def member_config(config: TrainConfig, index: int) -> TrainConfig:
    """Member `index` (1-based): one model, with a seed of its own."""
    return replace(config, members=1, seed=config.seed + index - 1)


def fit_ensemble(
    config: TrainConfig,
    mnist: MNIST,
    run_dir: Path,
    *,
    resume: bool = False,
    on_member: Callable[[int, int], None] | None = None,
    on_step: Callable[[StepProgress], None] | None = None,
    on_epoch: Callable[[EpochStats], None] | None = None,
) -> EnsembleResult:
    """Train (or finish) every member, then save their average as the run's model."""
    started = time.perf_counter()
    paths = RunPaths(Path(run_dir))
    if not resume:
        write_json(paths.config, config.to_dict())
    members = []
    for index in range(1, config.members + 1):
        folder = member_dir(run_dir, index)
        finished = _finished_model(folder) if resume else None
        if finished is not None:
            members.append(finished)
            continue
        if on_member is not None:
            on_member(index, config.members)
        try:
            result = fit(
                member_config(config, index),
                mnist,
                folder,
                resume=resume and RunPaths(folder).train_state.is_file(),
                on_step=on_step,
                on_epoch=on_epoch,
            )
        except TrainingInterrupted as err:
            raise TrainingInterrupted(
                f"interrupted while training member {index} of {config.members}; the run is "
                f"saved. Continue it with: digitlab train --resume {run_dir}"
            ) from err
        members.append(result.model)
    device = select_device(config.device)
    ensemble = Ensemble(members).to(device).eval()
    test_loss, test_accuracy = loss_and_accuracy(
        predict_log_probs(
            ensemble, mnist.test_images, batch_size=config.eval_batch_size, device=device
        ),
        mnist.test_labels,
    )
    metrics = {"test_accuracy": test_accuracy, "test_loss": test_loss}
    save_model(paths.model, ensemble, checkpoint_metadata(config, config.epochs, metrics))
    calibrate_run(config, mnist, paths.model, ensemble, device)  # as the averaged model
    return EnsembleResult(
        run_dir=Path(run_dir),
        config=config,
        member_dirs=[member_dir(run_dir, i) for i in range(1, config.members + 1)],
        test_accuracy=test_accuracy,
        test_loss=test_loss,
        wall_seconds=time.perf_counter() - started,
        model=ensemble,
    )


def _finished_model(folder: Path) -> nn.Module | None:
    """The member's final model if its run completed, else None."""
    path = RunPaths(folder).model
    if not path.is_file():
        return None
    model, metadata = load_model(path)
    return model if metadata.get("complete") else None
