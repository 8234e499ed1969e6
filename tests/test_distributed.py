"""torchrun: data-parallel training equals one process, ensembles side by side, Ctrl-C + resume,
restarts after a rank is killed.

Each test that needs several processes starts `python -m torch.distributed.run --standalone`
(torchrun) as a subprocess on loopback with two CPU ranks (gloo).
"""

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from digitlab import distributed
from digitlab.checkpoint import read_model_file
from digitlab.config import make_config
from digitlab.models import create_model
from digitlab.runs import RunPaths
from digitlab.training import train

WORKER = Path(__file__).with_name("torchrun_worker.py")
FAULT_WORKER = Path(__file__).with_name("fault_worker.py")

# lenet, 8 steps of a global batch of 75 (38 + 37 images per rank: uneven shares), SGD with
# momentum. SGD rather than Adam: Adam divides each update by the gradient's own size, which
# turns last-bit differences in near-zero gradients into visible ones.
EQUIVALENCE = make_config(
    "default",
    model="lenet",
    subset=600,
    batch_size=75,
    epochs=1,
    optimizer="sgd",
    schedule="constant",
    lr=0.05,
    threads=1,
)
# Two ranks sum each gradient in another order than one process (per-rank sums, then the
# all-reduce); after 8 steps the weights differ by a few float32 ulps (measured: 1.5e-8).
EQUIVALENCE_TOLERANCE = 1e-6
# Two lenets of 8 steps each, trained by two processes or one after the other.
ENSEMBLE = make_config("default", subset=600, batch_size=75, epochs=1, members=2, threads=1)
# Interrupted and resumed under torchrun: 3 epochs of 20 steps.
RESUMABLE = make_config("default", model="lenet", subset=2000, batch_size=100, epochs=3, threads=1)
# Killed and restarted by torchrun: EQUIVALENCE for 2 epochs (of 8 steps), by the command below.
RESTARTED = replace(EQUIVALENCE, epochs=2)
RESTARTED_ARGS = [
    "train", "--recipe", "default", "--model", "lenet", "--subset", "600", "--batch-size", "75",
    "--epochs", "2", "--optimizer", "sgd", "--schedule", "constant", "--lr", "0.05",
    "--threads", "1", "--quiet",
]  # fmt: skip


def torchrun(*args: str, processes: int = 2) -> list[str]:
    launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone"]
    return [*launcher, f"--nproc_per_node={processes}", *args]


def child_env() -> dict[str, str]:
    # PYTHONPATH carries the source under test; unbuffered so rank 0's lines arrive at once.
    return os.environ | {"PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"}


def saved(run_dir: Path) -> tuple[dict[str, torch.Tensor], dict]:
    return read_model_file(RunPaths(run_dir).model)


@pytest.fixture(scope="module")
def two_process_runs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One torchrun launch (2 ranks) trains the equivalence model, the ensemble and the
    uninterrupted references of the resume and restart tests."""
    out = tmp_path_factory.mktemp("torchrun")
    runs = {
        "equivalence": EQUIVALENCE.to_dict(),
        "ensemble": ENSEMBLE.to_dict(),
        "resumable": RESUMABLE.to_dict(),
        "restarted": RESTARTED.to_dict(),
    }
    command = torchrun(str(WORKER), str(out), json.dumps(runs))
    finished = subprocess.run(command, env=child_env(), capture_output=True, text=True)
    assert finished.returncode == 0, finished.stderr[-3000:]
    return out


def test_shares_of_a_batch_cover_it_in_order():
    for size, world in [(75, 2), (100, 3), (2, 4)]:
        shares = [
            distributed.share_of_batch(size, distributed.Session(r, world)) for r in range(world)
        ]
        rows = [i for share in shares for i in range(size)[share]]
        assert rows == list(range(size))
        lengths = [len(range(size)[share]) for share in shares]
        assert max(lengths) - min(lengths) <= 1


# Joins the process group as a torchrun worker would (torchrun's variables come from the test),
# twice, as a program that trains two runs in one process does; says when it got through.
JOIN = """
import torch
from digitlab import distributed
for _ in range(2):
    with distributed.launched("cpu"):
        assert distributed.all_reduce_sum(torch.ones(1)).item() == 2
print("joined", flush=True)
"""


def start_rank(rank: int, store_port: int, restart: int) -> subprocess.Popen:
    env = child_env() | {
        "RANK": str(rank), "LOCAL_RANK": str(rank), "WORLD_SIZE": "2", "LOCAL_WORLD_SIZE": "2",
        "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(store_port),
        "TORCHELASTIC_USE_AGENT_STORE": "True", "TORCHELASTIC_RESTART_COUNT": str(restart),
    }  # fmt: skip
    return subprocess.Popen(
        [sys.executable, "-c", JOIN], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True,
    )  # fmt: skip


@pytest.mark.slow
def test_restarted_ranks_join_though_the_store_holds_the_dead_attempts_addresses():
    """torchrun keeps one store for every attempt of a job. The ranks of attempt 0 leave their
    addresses in it and exit; in attempt 1 rank 0 starts alone and looks for rank 1's address.
    Reading attempt 0's (a closed port) made gloo fail ("connectFullMesh failed … Connection
    refused") or hang, depending on which rank got there first; it must wait for rank 1 of its
    own attempt instead. The old addresses are zeroed here, so that reading one fails every time
    rather than by chance."""
    from datetime import timedelta

    import torch.distributed as dist

    store = dist.TCPStore("127.0.0.1", 0, is_master=True, timeout=timedelta(seconds=60))
    first = [start_rank(rank, store.port, restart=0) for rank in (0, 1)]
    for process in first:
        assert process.communicate(timeout=120)[0] == "joined\n"
    for key in store.list_keys():
        store.set(key, bytes(len(store.get(key))))
    keys = store.num_keys()
    rank0 = start_rank(0, store.port, restart=1)
    # Rank 1 starts once rank 0 has published its new address (a key the first attempt did
    # not write) or has given up.
    deadline = time.monotonic() + 120
    while store.num_keys() == keys and rank0.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert rank0.poll() is None, f"rank 0 gave up: {rank0.communicate()[1][-2000:]}"
    rank1 = start_rank(1, store.port, restart=1)
    for process in (rank0, rank1):
        out, err = process.communicate(timeout=120)
        assert out == "joined\n", err[-2000:]


@pytest.mark.slow
def test_two_ranks_train_the_weights_of_one_process(two_process_runs, mnist, tmp_path):
    ranks_weights, metadata = saved(two_process_runs / "equivalence")
    assert metadata["world_size"] == 2 and metadata["backend"] == "gloo"
    alone = train(EQUIVALENCE, mnist, tmp_path).model.state_dict()
    torch.manual_seed(EQUIVALENCE.seed)
    untrained = create_model("lenet").state_dict()
    assert ranks_weights.keys() == alone.keys()
    for key, value in ranks_weights.items():
        torch.testing.assert_close(value, alone[key], rtol=0, atol=EQUIVALENCE_TOLERANCE)
    moved = max((ranks_weights[k] - untrained[k]).abs().max().item() for k in untrained)
    assert moved > 100 * EQUIVALENCE_TOLERANCE  # training did change the weights


@pytest.mark.slow
def test_ensemble_members_trained_side_by_side_equal_one_after_another(
    two_process_runs, mnist, tmp_path
):
    sequential = train(ENSEMBLE, mnist, tmp_path)
    parallel_weights, metadata = saved(two_process_runs / "ensemble")
    assert metadata["world_size"] == 2 and metadata["members"] == 2
    sequential_weights, _ = saved(tmp_path)
    assert parallel_weights.keys() == sequential_weights.keys()
    for key in parallel_weights:
        assert torch.equal(parallel_weights[key], sequential_weights[key]), key
    histories = [
        json.loads(p.history.read_text())
        for p in RunPaths(two_process_runs / "ensemble").members(2)
    ]
    accuracies = [[epoch["test_accuracy"] for epoch in history] for history in histories]
    assert accuracies == [[e.test_accuracy for e in h] for h in sequential.member_histories]


@pytest.mark.slow
def test_ctrl_c_under_torchrun_stops_every_rank_and_resumes_exactly(two_process_runs, tmp_path):
    run_dir = tmp_path / "run"
    args = ["-m", "digitlab", "train", "--out", str(run_dir), "--recipe", "default"]
    args += ["--model", "lenet", "--subset", "2000", "--batch-size", "100", "--epochs", "3"]
    args += ["--threads", "1"]
    launcher = subprocess.Popen(
        torchrun(*args), env=child_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    assert launcher.stdout is not None
    for line in launcher.stdout:  # the epoch table: press Ctrl-C once epoch 1 is reported
        if line.split()[:1] == ["1"]:
            launcher.send_signal(signal.SIGINT)  # what Ctrl-C does to torchrun
            break
    _, stderr = launcher.communicate(timeout=300)
    assert launcher.returncode != 0
    assert "interrupted" in stderr and f"--resume {run_dir}" in stderr
    weights, metadata = saved(run_dir)
    assert metadata["complete"] is False and metadata["world_size"] == 2

    resumed = subprocess.run(
        torchrun("-m", "digitlab", "train", "--resume", str(run_dir), "--quiet"),
        env=child_env(),
        capture_output=True,
        text=True,
    )
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    weights, metadata = saved(run_dir)
    reference, _ = saved(two_process_runs / "resumable")
    assert metadata["complete"] is True
    for key in reference:
        assert torch.equal(weights[key], reference[key]), key


# Three runs of RESTARTED in one torchrun job, each killed (SIGKILL, by tests/fault_worker.py) at
# another point of another attempt: name → (--checkpoint-every, fault, where it resumes).
KILLS = {
    # rank 1 in the middle of step 3 of epoch 2; a state was saved after every step
    "mid-step": (1e-6, {"rank": 1, "at": "step", "epoch": 2, "step": 3}, (2, 2)),
    # rank 1 right after epoch 1's checkpoint; none inside epochs
    "epoch-end": (0, {"rank": 1, "at": "epoch-end", "epoch": 1}, (2, 0)),
    # rank 0 (which evaluates, and writes the files) as it evaluates epoch 2, after its 8 steps
    "evaluation": (1e-6, {"rank": 0, "at": "evaluation", "epoch": 2}, (2, 7)),
}


@pytest.mark.slow
def test_torchrun_restarts_after_a_rank_is_killed_and_each_run_resumes_from_its_state(
    two_process_runs, tmp_path
):
    """Attempt 0 dies in "mid-step"; attempt 1 finishes it and dies in "epoch-end"; attempt 2
    finishes that and dies in "evaluation"; attempt 3 finishes. Every restarted process must join
    the others, find its run's state, go on from there, and end with the weights of the
    uninterrupted run."""
    commands, faults = [], []
    for restart, (name, (every, fault, _)) in enumerate(KILLS.items()):
        commands.append(
            [*RESTARTED_ARGS, "--checkpoint-every", str(every), "--out", str(tmp_path / name)]
        )
        faults.append(fault | {"restart": restart, "out": name})
    launched = subprocess.run(
        torchrun("--max-restarts=3", str(FAULT_WORKER), json.dumps(commands)),
        env=child_env() | {"DIGITLAB_TEST_FAULTS": json.dumps(faults)},
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert launched.returncode == 0, launched.stderr[-5000:]
    reference, _ = saved(two_process_runs / "restarted")
    for restart, (name, (_, _, (epoch, step))) in enumerate(KILLS.items(), 1):
        weights, metadata = saved(tmp_path / name)
        record = {"epoch": epoch, "step": step, "torchrun_restart": restart}
        assert metadata["complete"] and metadata["resumed"] == [record], name
        said = f"digitlab: resuming {tmp_path / name} "
        assert [line for line in launched.stderr.splitlines() if line.startswith(said)] == [
            said
            + ("in epoch 2 after step " + str(step) if step else "after epoch 1")
            + f" (torchrun restart {restart})"
        ]
        for key in reference:
            torch.testing.assert_close(
                weights[key], reference[key], rtol=0, atol=EQUIVALENCE_TOLERANCE
            )
