"""Surviving faults: a run killed outright resumes exactly, by hand or when torchrun restarts it;
what must not be resumed (a damaged or foreign state, another run's folder) is refused.

The kills are real: SIGKILL in a subprocess running the `digitlab` command at a point chosen by
tests/fault_worker.py. Restarts under torchrun itself are in test_distributed.py; here they are
simulated with the variables torchrun sets.
"""

import json
import os
import re
import signal
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from digitlab.checkpoint import load_training_state, read_model_file
from digitlab.cli import main
from digitlab.config import make_config
from digitlab.errors import CheckpointError
from digitlab.runs import RunPaths
from digitlab.training import TrainingInterrupted, train

WORKER = Path(__file__).with_name("fault_worker.py")

# 2 epochs of 10 steps (1,000 images in batches of 100; 200 held out), on one thread so that a
# subprocess and this process do the same float sums. 1e-6 minutes: a checkpoint after every step.
EVERY_STEP = 1e-6
KILLABLE = make_config(
    "default", model="lenet", subset=1200, validation=200, batch_size=100, epochs=2,
    threads=1, checkpoint_every=EVERY_STEP,
)  # fmt: skip
KILLABLE_ARGS = [
    "train", "--recipe", "default", "--model", "lenet", "--subset", "1200", "--validation",
    "200", "--batch-size", "100", "--epochs", "2", "--threads", "1", "--checkpoint-every",
    str(EVERY_STEP), "--quiet",
]  # fmt: skip


def weights(run_dir: Path) -> dict[str, torch.Tensor]:
    return read_model_file(RunPaths(run_dir).model)[0]


def assert_same_weights(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), f"{key} differs"


def files(folder: Path) -> dict[Path, bytes]:
    return {p: p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def uninterrupted(mnist, tmp_path_factory) -> Path:
    """KILLABLE trained without a stop, and without checkpoints inside its epochs: that saving
    the state (every step, in the runs compared with it) changes nothing is part of what the
    tests check."""
    run_dir = tmp_path_factory.mktemp("whole") / "run"
    config = replace(KILLABLE, checkpoint_every=0)
    train(config, mnist, run_dir)
    return run_dir


@pytest.mark.slow
@pytest.mark.parametrize(
    ("fault", "resumed_after"),
    [
        ({"at": "step", "epoch": 1, "step": 7}, 6),  # mid-step: the state of step 6 is the last
        ({"at": "write", "count": 3}, 2),  # while writing step 3's state: step 2's is intact
    ],
)
def test_a_run_killed_mid_epoch_resumes_to_the_weights_of_an_uninterrupted_one(
    uninterrupted, tmp_path, mnist_dir, capsys, fault, resumed_after
):
    run_dir = tmp_path / "run"
    killed = subprocess.run(
        [sys.executable, str(WORKER), json.dumps([[*KILLABLE_ARGS, "--out", str(run_dir)]])],
        env=os.environ | {"DIGITLAB_TEST_FAULTS": json.dumps([fault])},
        capture_output=True,
        text=True,
    )
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-3000:]
    state = load_training_state(RunPaths(run_dir).train_state)  # loads: the write was atomic
    assert state["progress"]["epoch"] == 0 and state["progress"]["step"] == resumed_after
    leftovers = list(run_dir.glob(".train_state.pt.*.tmp"))
    assert len(leftovers) == (1 if fault["at"] == "write" else 0)

    capsys.readouterr()
    assert main(["train", "--resume", str(run_dir), "--quiet", "--data-dir", str(mnist_dir)]) == 0
    said = f"digitlab: resuming {run_dir} in epoch 1 after step {resumed_after} (by hand)"
    assert said in capsys.readouterr().err.splitlines()
    assert_same_weights(weights(run_dir), weights(uninterrupted))
    record = {"epoch": 1, "step": resumed_after, "torchrun_restart": 0}
    assert json.loads(RunPaths(run_dir).metrics.read_text())["resumed"] == [record]
    report = RunPaths(run_dir).report.read_text()
    assert f"resumed once: in epoch 1 after step {resumed_after} (by hand)." in report
    assert not list(run_dir.glob(".*.tmp"))  # the killed write's leftover is gone


@pytest.fixture
def interrupted(mnist, tmp_path, monkeypatch) -> Path:
    """KILLABLE started by torchrun job "job-1" (simulated) and stopped in epoch 2, step 5."""
    monkeypatch.setenv("TORCHELASTIC_RUN_ID", "job-1")
    run_dir = tmp_path / "run"

    def ctrl_c(progress):
        if (progress.epoch, progress.step) == (2, 5):
            os.kill(os.getpid(), signal.SIGINT)

    with pytest.raises(TrainingInterrupted):
        train(KILLABLE, mnist, run_dir, on_step=ctrl_c)
    assert json.loads(RunPaths(run_dir).torchrun_job.read_text()) == {"job_id": "job-1"}
    return run_dir


def test_a_torchrun_restart_continues_its_jobs_run_with_settings_that_do_not_change_it(
    interrupted, uninterrupted, mnist, monkeypatch
):
    monkeypatch.setenv("TORCHELASTIC_RESTART_COUNT", "1")
    neutral = {"checkpoint_every": 0.5, "eval_batch_size": 500}  # how often, how fast
    config = replace(KILLABLE, **neutral)
    said = []
    train(config, mnist, interrupted, on_resume=said.append)  # no resume=True: found by itself
    assert [str(s) for s in said] == [
        f"resuming {interrupted} in epoch 2 after step 5 (torchrun restart 1)"
    ]
    assert_same_weights(weights(interrupted), weights(uninterrupted))
    _, metadata = read_model_file(RunPaths(interrupted).model)
    assert metadata["resumed"] == [{"epoch": 2, "step": 5, "torchrun_restart": 1}]


@pytest.mark.parametrize(
    ("variables", "changes", "refusal"),
    [
        ({}, {}, "already holds a training run; continue it with `digitlab train --resume"),
        ({"TORCHELASTIC_RESTART_COUNT": "1", "TORCHELASTIC_RUN_ID": "job-2"}, {},
         "torchrun restarted this job \\(restart 1\\), but .* holds a run that another job"),
        ({"TORCHELASTIC_RESTART_COUNT": "1"}, {"lr": 0.01, "seed": 3},
         "holds a run with other settings \\(lr, seed\\)"),
    ],
)  # fmt: skip
def test_a_start_into_a_folder_holding_a_run_is_refused_unless_its_own_restart(
    interrupted, mnist, monkeypatch, variables, changes, refusal
):
    for name, value in variables.items():
        monkeypatch.setenv(name, value)
    before = files(interrupted)
    config = replace(KILLABLE, **changes)
    with pytest.raises(CheckpointError, match=refusal):
        train(config, mnist, interrupted)
    assert files(interrupted) == before


@pytest.fixture(scope="module")
def one_epoch(mnist, tmp_path_factory) -> Path:
    run_dir = tmp_path_factory.mktemp("one-epoch") / "run"
    train(replace(KILLABLE, epochs=1), mnist, run_dir)
    return run_dir


def truncated(state: Path) -> None:
    state.write_bytes(state.read_bytes()[: state.stat().st_size // 2])


def foreign(state: Path) -> None:
    torch.save({"weights": torch.zeros(3)}, state)


def of_another_run(state: Path) -> None:
    saved = torch.load(state, weights_only=True)
    saved["config"]["model"] = "bncnn"
    torch.save(saved, state)


@pytest.mark.parametrize(
    ("damage", "said"),
    [
        (truncated, "refusing to load .*train_state.pt: it is damaged"),
        (foreign, ".*train_state.pt is not a digitlab training state"),
        (of_another_run, ".*train_state.pt is the state of another run .*differs in: model"),
    ],
)
def test_a_damaged_or_foreign_state_is_refused_in_one_line_and_nothing_is_written(
    one_epoch, tmp_path, mnist_dir, capsys, damage, said
):
    run_dir = tmp_path / "run"
    for path, data in files(one_epoch).items():
        (run_dir / path.relative_to(one_epoch)).parent.mkdir(parents=True, exist_ok=True)
        (run_dir / path.relative_to(one_epoch)).write_bytes(data)
    damage(RunPaths(run_dir).train_state)
    before = files(run_dir)
    code = main(["train", "--resume", str(run_dir), "--quiet", "--data-dir", str(mnist_dir)])
    err = capsys.readouterr().err
    assert code == 1
    assert len(err.splitlines()) == 1 and err.startswith("digitlab: ")
    assert re.match(f"digitlab: {said}", err), err
    assert files(run_dir) == before
