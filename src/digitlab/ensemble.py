"""What an ensemble is made of: members with seeds of their own, and who trains which.

An ensemble of `config.members` models is trained by `train.train` as that many ordinary runs,
member K in `RunPaths(run_dir).member(K)` with seed `config.seed + K - 1`, so each has its own
initial weights, batch order and augmentation, and its own checkpoint and history. Their final
weights, averaged by `models.Ensemble` (no member picked or dropped by any score), are the run's
model. This module holds the rules; the training loop stays in `train.py`.
"""

from dataclasses import replace

from torch import nn

from digitlab.checkpoint import load_model
from digitlab.config import TrainConfig
from digitlab.runs import RunPaths


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
