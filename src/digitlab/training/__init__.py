"""Training: `train(config, mnist, run_dir)` for digit classifiers, ensembles and number readers.

- `run`: the entry point, `train`, and what it returns (`RunResult`);
- `loop`: one model's steps and epochs, checkpoints, Ctrl-C, resume, data parallel;
- `digits` / `reading`: what a classifier / a number reader learns from and how it is scored;
- `ensemble`: members with seeds of their own, averaged;
- `setup`: optimizer, schedule, moving average, threads, the Ctrl-C flag.
"""

from digitlab.training.loop import (
    EpochStats,
    NonFiniteLossError,
    StepProgress,
    TrainingInterrupted,
)
from digitlab.training.run import RunResult, load_run_config, train

__all__ = [
    "EpochStats",
    "NonFiniteLossError",
    "RunResult",
    "StepProgress",
    "TrainingInterrupted",
    "load_run_config",
    "train",
]
