"""Runs `digitlab` commands and kills itself at a chosen point, for the tests of surviving that.

    python tests/fault_worker.py COMMANDS_JSON
    torchrun --standalone --nproc_per_node=2 --max-restarts=3 tests/fault_worker.py COMMANDS_JSON

COMMANDS_JSON is a list of `digitlab` argument lists, run in order by the real CLI in this one
process (under torchrun in one process group, as tests/torchrun_worker.py). A command whose
`--out` folder holds a report already is skipped, so a restarted worker goes on where its job
was; a command that fails ends the worker with its exit code.

DIGITLAB_TEST_FAULTS, a JSON list, says where to die. Each fault is one of

    {"at": "step", "epoch": E, "step": S}  mid-step: step S of epoch E after its forward pass
                                           and all-reduce, before the backward pass
    {"at": "evaluation", "epoch": E}       as rank 0 starts evaluating epoch E
    {"at": "epoch-end", "epoch": E}        just after epoch E's checkpoint is written
    {"at": "write", "count": N}            between writing the N-th train_state.pt and
                                           renaming it into place

with optional "rank" (default 0), "restart" (torchrun's restart count, default 0) and "out"
(the run folder's name; default: any). Dying is SIGKILL, as `kill -9` or a lost machine: no
Python cleanup runs. The points are found by wrapping digitlab's own functions here; the library
has no test hooks.
"""

import json
import os
import signal
import sys
from pathlib import Path
from typing import Any

from digitlab import checkpoint, distributed
from digitlab.cli import main as digitlab
from digitlab.runs import RunPaths
from digitlab.training.loop import Training


def die() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def install(faults: list[dict[str, Any]]) -> None:
    rank = int(os.environ.get("RANK", "0"))
    mine = [
        fault
        for fault in faults
        if fault.get("rank", 0) == rank and fault.get("restart", 0) == distributed.restart_count()
    ]

    def due(at: str, run: Any, **where: int) -> bool:
        return any(
            fault["at"] == at
            and fault.get("out", run.paths.root.name) == run.paths.root.name
            and all(fault[key] == value for key, value in where.items())
            for fault in mine
        )

    train_step, evaluate_epoch, finish_epoch = (
        Training.train_step,
        Training.evaluate_epoch,
        Training.finish_epoch,
    )

    def faulty_train_step(self: Any, *args: Any) -> Any:
        if due("step", self, epoch=self.progress.epoch + 1, step=self.progress.step + 1):
            self.optimizer.zero_grad = lambda **_: die()  # called between all-reduce and backward
        return train_step(self, *args)

    def faulty_evaluate_epoch(self: Any) -> Any:
        if due("evaluation", self, epoch=self.progress.epoch + 1):
            die()
        return evaluate_epoch(self)

    def faulty_finish_epoch(self: Any) -> Any:
        stats = finish_epoch(self)
        if due("epoch-end", self, epoch=self.progress.epoch):
            die()
        return stats

    Training.train_step = faulty_train_step
    Training.evaluate_epoch = faulty_evaluate_epoch
    Training.finish_epoch = faulty_finish_epoch

    writes = [fault["count"] for fault in mine if fault["at"] == "write"]
    replace, state_writes = os.replace, 0

    def faulty_replace(source: Any, target: Any) -> None:
        nonlocal state_writes
        if Path(target).name == "train_state.pt":
            state_writes += 1
            if state_writes in writes:
                die()
        replace(source, target)

    checkpoint.os.replace = faulty_replace  # type: ignore[attr-defined]


def run(commands: list[list[str]]) -> int:
    for argv in commands:
        out = Path(argv[argv.index("--out") + 1])
        if RunPaths(out).report.is_file():
            continue  # finished before a restart
        code = digitlab(argv)
        if code:
            return code
    return 0


def main() -> int:
    install(json.loads(os.environ.get("DIGITLAB_TEST_FAULTS", "[]")))
    with distributed.launched("cpu"):
        return run(json.loads(sys.argv[1]))


if __name__ == "__main__":
    raise SystemExit(main())
