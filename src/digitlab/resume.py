"""Where a run starts: afresh in a folder with no run, or from the training state saved in it.

By hand, `digitlab train --resume RUN` continues a run stopped by Ctrl-C, a crash or `kill -9`.
Under torchrun with `--max-restarts`, torchrun restarts every process with the same command when
one dies (TORCHELASTIC_RESTART_COUNT > 0); the restarted `digitlab train --out RUN` finds the
state its own job saved in RUN and continues from it (TorchElastic's rule: a script loads its
latest checkpoint when it starts).

A run never starts afresh over another. A folder holding one is refused, and so is a restart into
a folder holding another job's run or a run of other settings: two runs are never mixed.
"""

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from digitlab import distributed
from digitlab.checkpoint import read_json, write_json
from digitlab.config import TrainConfig
from digitlab.errors import CheckpointError
from digitlab.runs import RunPaths


@dataclass(frozen=True)
class Resumed:
    """Where a resumed run went on. Recorded in its training state, its checkpoint's metadata
    and metrics.json (`record()`), and said on the command line (`str()`)."""

    run_dir: Path
    epoch: int  # 1-based: the epoch it went on in
    step: int  # steps of that epoch done before (0: it went on at the epoch's start)
    torchrun_restart: int  # torchrun's restart count; 0 when resumed by hand

    def record(self) -> dict[str, int]:
        return {k: v for k, v in asdict(self).items() if k != "run_dir"}

    def __str__(self) -> str:
        return f"resuming {self.run_dir} {describe(self.record())}"


def describe(record: dict[str, Any]) -> str:
    """A resume record in words: "in epoch 3 after step 40 (torchrun restart 1)"."""
    epoch, step, restart = record["epoch"], record["step"], record["torchrun_restart"]
    where = f"in epoch {epoch} after step {step}" if step else f"after epoch {epoch - 1}"
    return where + (f" (torchrun restart {restart})" if restart else " (by hand)")


def should_resume(paths: RunPaths, config: TrainConfig, *, requested: bool) -> bool:
    """Whether the run in `paths` continues from its state (`requested`: `--resume`), or starts
    afresh; a CheckpointError saying what to do when it may do neither. Decided by rank 0 alone
    (it writes `torchrun.json` for a fresh start under torchrun)."""
    if requested:
        return True  # the state itself is checked when it is loaded
    root = paths.root
    if not paths.holds_training():
        job = distributed.job_id()
        if job is not None:  # so that a restart of this job, and no other, continues it
            write_json(paths.torchrun_job, {"job_id": job})
        return False
    advice = f"continue it with `digitlab train --resume {root}`, or pass another --out"
    restart = distributed.restart_count()
    if restart == 0:
        raise CheckpointError(f"{root} already holds a training run; {advice}")
    saved_job = read_json(paths.torchrun_job)["job_id"] if paths.torchrun_job.is_file() else None
    if saved_job != distributed.job_id():
        raise CheckpointError(
            f"torchrun restarted this job (restart {restart}), but {root} holds a run that "
            f"another job started; {advice}"
        )
    differences = config.result_differences(TrainConfig.from_dict(read_json(paths.config)))
    if differences:
        raise CheckpointError(
            f"{root} holds a run with other settings ({', '.join(differences)}); {advice}"
        )
    return True
