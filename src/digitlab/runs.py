"""The run folder: where each file of a run lives, and how to find runs.

runs/<recipe>-<YYYYmmdd-HHMMSS>/
    model.safetensors   weights + metadata (the checkpoint)
    train_state.pt      what `--resume` needs (and a restart under torchrun)
    torchrun.json       which torchrun job started the run (only under torchrun)
    config.json         the full TrainConfig
    history.json        one entry per epoch
    metrics.json        the final evaluation
    report.md           config, per-epoch table and plots
    plots/*.png
    member-K/           an ensemble's member K (1-based): a run folder of its own
"""

import time
from dataclasses import dataclass
from pathlib import Path

from digitlab.errors import CheckpointError
from digitlab.pretrained import PACKAGED_MODEL

DEFAULT_RUNS_ROOT = Path("runs")


@dataclass(frozen=True)
class RunPaths:
    root: Path

    @property
    def model(self) -> Path:
        return self.root / "model.safetensors"

    @property
    def train_state(self) -> Path:
        return self.root / "train_state.pt"

    @property
    def config(self) -> Path:
        return self.root / "config.json"

    @property
    def history(self) -> Path:
        return self.root / "history.json"

    @property
    def metrics(self) -> Path:
        return self.root / "metrics.json"

    @property
    def report(self) -> Path:
        return self.root / "report.md"

    @property
    def plots(self) -> Path:
        return self.root / "plots"

    @property
    def torchrun_job(self) -> Path:
        return self.root / "torchrun.json"

    def holds_training(self) -> bool:
        """Whether a run has saved progress here: its training state or model, or an ensemble
        member's training state."""
        return (
            self.train_state.is_file()
            or self.model.is_file()
            or any(self.root.glob(f"member-*/{self.train_state.name}"))
        )

    def member(self, index: int) -> "RunPaths":
        """The run folder of ensemble member `index` (1-based)."""
        if index < 1:
            raise ValueError(f"members are numbered from 1, not {index}")
        return RunPaths(self.root / f"member-{index}")

    def members(self, count: int) -> list["RunPaths"]:
        """The folders of members 1..count."""
        return [self.member(index) for index in range(1, count + 1)]


def new_run_dir(recipe: str, runs_root: Path = DEFAULT_RUNS_ROOT) -> Path:
    """`runs/<recipe>-<timestamp>`, with a numeric suffix if that name is taken."""
    stem = f"{recipe}-{time.strftime('%Y%m%d-%H%M%S')}"
    candidate, n = runs_root / stem, 1
    while candidate.exists():
        n += 1
        candidate = runs_root / f"{stem}-{n}"
    return candidate


def latest_run(runs_root: Path = DEFAULT_RUNS_ROOT, task: str | None = None) -> Path:
    """The most recently written run folder that has a checkpoint (of a model of `task`,
    "digits" or "numbers", when given; see `models.task_of`)."""
    runs = sorted(
        (p.parent for p in runs_root.glob("*/model.safetensors")),
        key=lambda run: RunPaths(run).model.stat().st_mtime,
        reverse=True,
    )
    found = next((run for run in runs if task is None or task_of_run(run) == task), None)
    if found is None:
        what, train = ("number reader", " --recipe reader") if task == "numbers" else ("model", "")
        raise CheckpointError(
            f"no trained {what} found in {runs_root}/; train one with `digitlab train{train}` "
            "or pass --checkpoint RUN_DIR"
        )
    return found


def task_of_run(run: Path) -> str | None:
    """What the run's model does ("digits" or "numbers"), from its checkpoint's metadata
    alone (no tensor is read); None if that cannot be read."""
    import json

    from safetensors import safe_open

    from digitlab.checkpoint import METADATA_KEY
    from digitlab.models import task_of

    try:
        with safe_open(str(RunPaths(run).model), framework="pt") as f:
            metadata = json.loads((f.metadata() or {})[METADATA_KEY])
        return task_of(str(metadata["model"]))
    except Exception:  # damaged, not digitlab's, an unknown model: not a run of either task
        return None


def default_checkpoint(task: str = "digits", runs_root: Path = DEFAULT_RUNS_ROOT) -> Path:
    """The checkpoint used when none is given: the newest run of `task` ("digits": a digit
    classifier, "numbers": a number reader) under `runs_root` if there is one, else the model
    that ships with digitlab, which does both (so a fresh install can predict and read at
    once)."""
    try:
        return RunPaths(latest_run(runs_root, task)).model
    except CheckpointError:
        return PACKAGED_MODEL


def is_packaged(checkpoint: Path) -> bool:
    """Whether `checkpoint` is the model that ships with digitlab."""
    return checkpoint.resolve() == PACKAGED_MODEL.resolve()


def resolve_checkpoint(
    path: str | Path | None, runs_root: Path = DEFAULT_RUNS_ROOT, *, task: str = "digits"
) -> Path:
    """A run folder or a `.safetensors` file → the checkpoint file; None → the
    `default_checkpoint` of `task`."""
    if path is None:
        return default_checkpoint(task, runs_root)
    path = Path(path)
    if path.is_dir():
        model = RunPaths(path).model
        if not model.is_file():
            raise CheckpointError(f"{path} is not a run folder: it has no {model.name}")
        return model
    if not path.exists():
        raise CheckpointError(f"{path} does not exist; pass a run folder or a .safetensors file")
    return path
