r"""Issue 16's speed targets, each measured against its reference in the same run.

    cd bench && DIGITLAB_DATA=../../shared/data/mnist ../.venv/bin/python speed.py
    # a busy machine: every process and reference on one thread, and only some rows
    ../.venv/bin/python speed.py --threads 1 --rows fast seed
    # plumbing only (a minute; the numbers mean nothing)
    ../.venv/bin/python speed.py --smoke

It prints one markdown table, the issue's, with the machine, its load average and the date:

1. `digitlab train --recipe fast`, the whole command in a child process (wall time: Python,
   imports, data, training, calibration, report and plots), against pytorch/examples'
   `mnist/main.py` recipe trained in this process on in-memory tensors for 3 epochs, its time to
   99.0% in the issue (training plus its test pass each, stopping sooner at 99.0%;
   `accuracy_speed.train_examples`: its net, Adadelta lr 1.0, StepLR 0.7, batch 64).
2. The recipe for 99.5% in a minute (QUICK_995), whole commands for seeds 0, 1 and 2.
3. `digitlab train --recipe seed`, the whole command, against a replica of the seed notebook's
   own loop run in this process: torchvision's MNIST + ToTensor read item by item through a
   DataLoader (uint8 → PIL image → float tensor; `--notebook-data tensors` converts once up
   front instead), batches of 10 in file order, the notebook's network and seed 41, Adam 0.02,
   CrossEntropyLoss, its per-batch count of right answers, and its test pass after every
   epoch (batches of 10); no prints or plots. Its weights are compared with seed's: equal when
   both ran the same arithmetic.

`--threads N` runs the references on N torch threads and the children with OMP_NUM_THREADS=N
(default: torch's, all cores). On a machine shared with other jobs, two threads per process
can be several times slower than one; timings there are only comparable within one run.
"""

import argparse
import datetime
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from accuracy_speed import EXAMPLES_TARGET, train_examples
from machine import cpu_name
from PIL import Image
from torch import nn

from digitlab.checkpoint import read_model_file
from digitlab.config import RECIPES
from digitlab.data import MNIST, load_mnist
from digitlab.models import ConvolutionalNetwork

EXAMPLES_EPOCHS = 3  # pytorch/examples' epochs to 99.0% in the issue's measurement
QUICK_995 = "quick99.5"  # the recipe of row 2
SEEDS_995 = (0, 1, 2)
NOTEBOOK_SEED, NOTEBOOK_EPOCHS, NOTEBOOK_BATCH, NOTEBOOK_LR = 41, 5, 10, 0.02


# --------------------------------------------------------------------------------------------
# The commands


def run_digitlab(recipe: str, threads: int | None, *extra: str) -> dict:
    """`digitlab train --recipe RECIPE --json` in a child process; its JSON summary, its wall
    time from outside and its final weights."""
    with tempfile.TemporaryDirectory(prefix=f"speed-{recipe}-") as out:
        command = [sys.executable, "-m", "digitlab", "train", "--recipe", recipe, "--json"]
        command += ["--out", str(Path(out) / "run"), *extra]
        env = os.environ | ({"OMP_NUM_THREADS": str(threads)} if threads else {})
        started = time.perf_counter()
        result = subprocess.run(command, capture_output=True, text=True, env=env)
        wall = time.perf_counter() - started
        if result.returncode != 0:
            raise SystemExit(f"{' '.join(command)} failed:\n{result.stderr}")
        weights, _ = read_model_file(Path(out) / "run" / "model.safetensors")
    summary = json.loads(result.stdout.splitlines()[-1])
    return summary | {"process_seconds": wall, "weights": weights}


# --------------------------------------------------------------------------------------------
# The seed notebook's loop


class NotebookMNIST(torch.utils.data.Dataset[tuple[torch.Tensor, int]]):
    """torchvision's `datasets.MNIST(..., transform=transforms.ToTensor())`, item by item: the
    uint8 image as a PIL image, then ToTensor's float tensor (1, 28, 28) / 255."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor) -> None:
        self.images, self.labels = images, labels

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        image = Image.fromarray(self.images[index].numpy(), mode="L")
        pixels = torch.from_numpy(np.array(image)).unsqueeze(0).float().div(255)  # ToTensor
        return pixels, int(self.labels[index])


def notebook_data(
    images: torch.Tensor, labels: torch.Tensor, kind: str
) -> torch.utils.data.Dataset:
    """The notebook's dataset ("pil"), or the same floats made once ("tensors")."""
    if kind == "pil":
        return NotebookMNIST(images, labels)
    return torch.utils.data.TensorDataset(images.unsqueeze(1).float().div(255), labels)


def notebook_loop(mnist: MNIST, epochs: int, data: str, subset: int | None) -> dict:
    """The notebook's training loop, as it was written, timed from its first batch."""
    train_data = notebook_data(mnist.train_images[:subset], mnist.train_labels[:subset], data)
    test_data = notebook_data(mnist.test_images, mnist.test_labels, data)
    torch.manual_seed(NOTEBOOK_SEED)
    model = ConvolutionalNetwork()  # the notebook's class, layer for layer
    criterion = nn.CrossEntropyLoss()
    optimizer = torch.optim.Adam(model.parameters(), lr=NOTEBOOK_LR)
    train_loader = torch.utils.data.DataLoader(train_data, batch_size=NOTEBOOK_BATCH, shuffle=False)
    test_loader = torch.utils.data.DataLoader(test_data, batch_size=NOTEBOOK_BATCH, shuffle=False)
    started = time.perf_counter()
    for _ in range(epochs):
        trn_corr, tst_corr = 0, 0
        for x_train, y_train in train_loader:
            y_pred = model(x_train)
            loss = criterion(y_pred, y_train)
            predicted = torch.max(y_pred.data, 1)[1]
            trn_corr += (predicted == y_train).sum()
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        with torch.no_grad():
            for x_test, y_test in test_loader:
                y_val = model(x_test)
                predicted = torch.max(y_val.data, 1)[1]
                tst_corr += (predicted == y_test).sum()
    return {
        "seconds": time.perf_counter() - started,
        "test_accuracy": int(tst_corr) / len(test_data),
        "weights": {name: t.detach().clone() for name, t in model.state_dict().items()},
    }


# --------------------------------------------------------------------------------------------
# The rows


def fast_row(mnist: MNIST, threads: int | None, smoke: bool) -> str:
    extra = ["--subset", "3000"] if smoke else []
    fast = run_digitlab("fast", threads, *extra)
    # Its 3 epochs (its time to 99.0% in the issue), or fewer if it gets there sooner.
    examples = train_examples(mnist, max_epochs=1 if smoke else EXAMPLES_EPOCHS,
                              subset=3000 if smoke else None)  # fmt: skip
    reference, epochs = sum(examples.seconds), len(examples.seconds)
    ratio = reference / fast["process_seconds"]
    return (
        f"| `digitlab train --recipe fast`, whole process, vs {epochs} epoch"
        f"{'s' * (epochs != 1)} of pytorch/examples `mnist/main.py` (its time to "
        f"{EXAMPLES_TARGET:.1%}, timed on in-memory tensors in the same run; it reached "
        f"{examples.accuracies[-1]:.2%}) "
        f"| {fast['test_accuracy']:.2%} in {fast['process_seconds']:.1f} s = **{ratio:.1f}×** "
        f"({epochs} × {reference / epochs:.1f} s) "
        f"| ≥ 99.0% at **≥ 20×** |"
    )


def quick_995_row(threads: int | None, smoke: bool) -> str:
    extra = ["--subset", "3000", "--epochs", "1"] if smoke else []
    runs = [run_digitlab(QUICK_995, threads, "--seed", str(seed), *extra) for seed in SEEDS_995]
    accuracies = ", ".join(f"{run['test_accuracy']:.2%}" for run in runs)
    seconds = ", ".join(f"{run['process_seconds']:.1f}" for run in runs)
    worst = max(run["process_seconds"] for run in runs)
    return (
        f"| fastest route to 99.5% test accuracy, whole process | `{QUICK_995}` recipe, seeds "
        f"{', '.join(map(str, SEEDS_995))}: {accuracies} in {seconds} s (slowest "
        f"**{worst:.1f} s**) | **≤ 60 s** |"
    )


def seed_row(mnist: MNIST, threads: int | None, data: str, smoke: bool) -> str:
    subset, epochs = (3000, 1) if smoke else (None, NOTEBOOK_EPOCHS)
    extra = ["--subset", "3000", "--epochs", "1"] if smoke else []
    seed = run_digitlab("seed", threads, *extra)
    notebook = notebook_loop(mnist, epochs, data, subset)
    same = all(torch.equal(seed["weights"][k], v) for k, v in notebook["weights"].items())
    ratio = seed["process_seconds"] / notebook["seconds"]
    return (
        f"| `digitlab train --recipe seed` vs a lean replica of the notebook's own loop "
        f"({'PIL → ToTensor item by item' if data == 'pil' else 'tensors made once'}, "
        f"{torch.get_num_threads()} thread{'s' * (torch.get_num_threads() > 1)}), same run "
        f"| {seed['process_seconds']:.1f} s vs {notebook['seconds']:.1f} s = **{ratio:.2f}×**; "
        f"{seed['test_accuracy']:.2%} vs {notebook['test_accuracy']:.2%}, final weights "
        f"{'bitwise equal' if same else 'differ'} "
        f"| **≤ 0.5×**, same network, initialisation, batch order and hyperparameters |"
    )


def machine_line(threads: int | None) -> str:
    one, five, fifteen = os.getloadavg()
    return (
        f"{cpu_name()}, {os.cpu_count()} cores, torch {torch.__version__}, "
        f"{threads or 'default'} thread{'s' * (threads != 1)} per process, load average "
        f"{one:.2f} / {five:.2f} / {fifteen:.2f}, {datetime.datetime.now():%Y-%m-%d %H:%M}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--rows", nargs="*", default=["fast", "995", "seed"])
    parser.add_argument("--threads", type=int, help="torch threads of every process")
    parser.add_argument("--notebook-data", choices=["pil", "tensors"], default="pil")
    parser.add_argument("--smoke", action="store_true", help="tiny runs: plumbing only")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    mnist = load_mnist()
    if QUICK_995 not in RECIPES:
        raise SystemExit(f"no recipe {QUICK_995!r}")
    print(f"Machine: {machine_line(args.threads)}\n")
    print("| measure | today | target |\n| --- | ---: | ---: |")
    if "fast" in args.rows:
        print(fast_row(mnist, args.threads, args.smoke), flush=True)
    if "995" in args.rows:
        print(quick_995_row(args.threads, args.smoke), flush=True)
    if "seed" in args.rows:
        print(seed_row(mnist, args.threads, args.notebook_data, args.smoke), flush=True)
    print(f"\nAt the end: {machine_line(args.threads)}")


if __name__ == "__main__":
    main()
