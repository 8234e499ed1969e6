r"""Time to reach 98.5 / 99.0 / 99.5% test accuracy, and inference speed, in one markdown table.

    DIGITLAB_DATA=../shared/data/mnist .venv/bin/python bench/accuracy_speed.py
    DIGITLAB_DATA=../shared/data/mnist .venv/bin/python bench/accuracy_speed.py \
        --recipes fast --skip-examples
    # smoke test (seconds, numbers meaningless):
    DIGITLAB_DATA=../shared/data/mnist .venv/bin/python bench/accuracy_speed.py \
        --max-epochs 1 --examples-max-epochs 1 --subset 2000 --seconds-per-throughput 0.2

Rows: digitlab's recipes (trained with `train`, each for its own number of epochs) and a faithful
re-implementation of the pytorch/examples MNIST recipe (`mnist/main.py`: its `Net`, Adadelta
lr 1.0, StepLR step 1 gamma 0.7, shuffled batches of 64, test batch 1000, inputs normalised with
mean 0.1307 / std 0.3081), trained until 99.0% test accuracy or `--examples-max-epochs`. Its
loop here feeds digitlab's in-memory batches instead of a DataLoader; the math is the same. The
normalisation is done inside the model, as digitlab's models do, so every model takes [0, 1]
pixels and exports the same way.

"Time to X%" is the cumulative training + test-evaluation wall time (checkpoint writing excluded)
at the end of the first epoch whose test accuracy reaches X; "—" if none did. "training s" is that
time for all epochs run, "CPU s" the process's CPU time over the same span (all threads; about
twice the wall time when both cores are busy). The `best` row is one model at its final epoch;
ensembles are left out (time one with `bench/recipes.py --recipes ensemble`). The pytorch/examples
row stops at 99.0%, so it shows "—" at 99.5% unless that epoch got there too. Training uses
torch's default threads (the `seed` recipe: one thread, as `train` chooses for its batch of 10).
Inference is timed with one thread each, PyTorch and ONNX Runtime, for a fixed number of seconds
over the real test digits.
"""

import argparse
import datetime
import itertools
import os
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from machine import cpu_name  # bench/machine.py, beside this script
from torch import nn

from digitlab.config import RECIPES, make_config
from digitlab.data import MNIST, iterate_batches, load_mnist, to_float
from digitlab.evaluation import predict_log_probs
from digitlab.export import OnnxModel, onnx_bytes
from digitlab.models import MNIST_MEAN, MNIST_STD, count_parameters
from digitlab.training import train

TARGETS = (0.985, 0.990, 0.995)
EXAMPLES_TARGET = 0.990  # pytorch/examples is run until it reaches this
THROUGHPUT_BATCHES = (1, 1024)


@dataclass
class Row:
    name: str
    model: nn.Module
    accuracies: list[float]  # test accuracy after each epoch
    seconds: list[float]  # training + evaluation seconds of each epoch
    cpu_seconds: float = 0.0  # process CPU time (all threads) of the whole training


# --------------------------------------------------------------------------------------------
# Training


def train_recipe(recipe: str, mnist: MNIST, max_epochs: int | None, subset: int | None) -> Row:
    epochs = min(RECIPES[recipe].epochs, max_epochs) if max_epochs else None
    config = make_config(recipe, epochs=epochs, subset=subset)
    cpu_started = time.process_time()
    with tempfile.TemporaryDirectory(prefix=f"accuracy-speed-{recipe}-") as run_dir:
        result = train(config, mnist, Path(run_dir))
    return Row(
        name=recipe,
        model=result.model,
        accuracies=[h.test_accuracy for h in result.history],
        seconds=[h.seconds for h in result.history],
        cpu_seconds=time.process_time() - cpu_started,
    )


class ExamplesNet(nn.Module):
    """pytorch/examples `mnist/main.py`'s `Net`, with its input normalisation moved inside."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 32, 3, 1)
        self.conv2 = nn.Conv2d(32, 64, 3, 1)
        self.dropout1 = nn.Dropout(0.25)
        self.dropout2 = nn.Dropout(0.5)
        self.fc1 = nn.Linear(9216, 128)  # 64 channels × 12×12 after two convs and one pool
        self.fc2 = nn.Linear(128, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = (x - MNIST_MEAN) / MNIST_STD  # transforms.Normalize((0.1307,), (0.3081,))
        x = F.relu(self.conv1(x))  # (N, 32, 26, 26)
        x = F.relu(self.conv2(x))  # (N, 64, 24, 24)
        x = F.max_pool2d(x, 2)  # (N, 64, 12, 12)
        x = self.dropout1(x)
        x = torch.flatten(x, 1)  # (N, 9216)
        x = F.relu(self.fc1(x))
        x = self.dropout2(x)
        return F.log_softmax(self.fc2(x), dim=1)


def test_accuracy(model: nn.Module, mnist: MNIST) -> float:
    log_probs = predict_log_probs(model, mnist.test_images, batch_size=1000)
    return (log_probs.argmax(1) == mnist.test_labels).float().mean().item()


def train_examples(mnist: MNIST, max_epochs: int, subset: int | None) -> Row:
    """pytorch/examples' train/test loop (defaults: seed 1, batch 64, 14 epochs max)."""
    torch.manual_seed(1)
    model = ExamplesNet()
    optimizer = torch.optim.Adadelta(model.parameters(), lr=1.0)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=1, gamma=0.7)
    images, labels = mnist.train_images[:subset], mnist.train_labels[:subset]
    row = Row("pytorch/examples", model, accuracies=[], seconds=[])
    cpu_started = time.process_time()
    for _ in range(max_epochs):
        started = time.perf_counter()
        model.train()
        order = torch.randperm(len(images))  # the DataLoader's shuffle=True
        for x, y in iterate_batches(images, labels, 64, order=order):
            optimizer.zero_grad()
            loss = F.nll_loss(model(x), y)
            loss.backward()
            optimizer.step()
        accuracy = test_accuracy(model, mnist)
        scheduler.step()
        row.seconds.append(time.perf_counter() - started)
        row.accuracies.append(accuracy)
        if accuracy >= EXAMPLES_TARGET:
            break
    row.cpu_seconds = time.process_time() - cpu_started
    return row


def seconds_to(row: Row, target: float) -> float | None:
    """Cumulative seconds at the end of the first epoch reaching `target`, or None."""
    for accuracy, elapsed in zip(row.accuracies, itertools.accumulate(row.seconds), strict=True):
        if accuracy >= target:
            return elapsed
    return None


# --------------------------------------------------------------------------------------------
# Inference speed


def images_per_second(
    predict: Callable[[torch.Tensor], torch.Tensor],
    pixels: torch.Tensor,
    batch: int,
    seconds: float,
) -> float:
    """Run `predict` on consecutive test batches (wrapping around) for `seconds`."""
    starts = itertools.cycle(range(0, len(pixels) - batch + 1, batch))
    images = 0
    started = time.perf_counter()
    while time.perf_counter() - started < seconds:
        start = next(starts)
        predict(pixels[start : start + batch])
        images += batch
    return images / (time.perf_counter() - started)


def throughputs(model: nn.Module, mnist: MNIST, seconds: float) -> list[float]:
    """Images/s for PyTorch then ONNX Runtime, each at every batch size, with one thread."""
    pixels = to_float(mnist.test_images)  # (10000, 1, 28, 28) in [0, 1]
    model = model.eval()
    onnx_model = OnnxModel(onnx_bytes(model), threads=1)
    previous_threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with torch.inference_mode():
            return [
                images_per_second(runtime, pixels, batch, seconds)
                for runtime in (model, onnx_model)
                for batch in THROUGHPUT_BATCHES
            ]
    finally:
        torch.set_num_threads(previous_threads)


# --------------------------------------------------------------------------------------------
# Output


def machine_line() -> str:
    import onnxruntime

    cpu = cpu_name()
    date = datetime.date.today().isoformat()
    return (
        f"Machine: {cpu}, {os.cpu_count()} cores, torch {torch.__version__}, "
        f"onnxruntime {onnxruntime.__version__}, {date}"
    )


def format_seconds(seconds: float | None) -> str:
    return "—" if seconds is None else f"{seconds:.1f}"


def table_row(row: Row, speeds: list[float]) -> str:
    times = [format_seconds(seconds_to(row, target)) for target in TARGETS]
    cells = [row.name, f"{count_parameters(row.model):,}", *times, f"{row.accuracies[-1]:.2%}"]
    cells += [f"{sum(row.seconds):.1f}", f"{row.cpu_seconds:.0f}"]
    cells += [f"{speed:,.0f}" for speed in speeds]
    return "| " + " | ".join(cells) + " |"


def table_header() -> str:
    times = [f"s to {target:.1%}" for target in TARGETS]
    speeds = [
        f"{runtime} img/s, batch {batch}"
        for runtime in ("PyTorch", "ONNX RT")
        for batch in THROUGHPUT_BATCHES
    ]
    columns = ["recipe", "parameters", *times, "final test accuracy", "training s", "CPU s"]
    columns += speeds
    return "| " + " | ".join(columns) + " |\n| --- |" + " ---: |" * (len(columns) - 1)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--recipes", nargs="*", default=["seed", "default", "fast", "best"])
    parser.add_argument("--skip-examples", action="store_true", help="no pytorch/examples row")
    parser.add_argument("--seconds-per-throughput", type=float, default=2.0)
    parser.add_argument("--examples-max-epochs", type=int, default=14)
    parser.add_argument("--max-epochs", type=int, help="cap every recipe's epochs (smoke tests)")
    parser.add_argument("--subset", type=int, help="train on the first N images (smoke tests)")
    args = parser.parse_args()

    mnist = load_mnist()
    print(machine_line() + "\n")
    print(table_header())
    rows = []
    for recipe in args.recipes:
        rows.append(train_recipe(recipe, mnist, args.max_epochs, args.subset))
        print(table_row(rows[-1], throughputs(rows[-1].model, mnist, args.seconds_per_throughput)))
    if not args.skip_examples:
        rows.append(train_examples(mnist, args.examples_max_epochs, args.subset))
        print(table_row(rows[-1], throughputs(rows[-1].model, mnist, args.seconds_per_throughput)))

    by_name = {row.name: row for row in rows}
    if "pytorch/examples" in by_name and "fast" in by_name:
        examples_99 = seconds_to(by_name["pytorch/examples"], EXAMPLES_TARGET)
        fast_99 = seconds_to(by_name["fast"], EXAMPLES_TARGET)
        if examples_99 is not None and fast_99 is not None:
            ratio = examples_99 / fast_99
            print(f"\npytorch/examples time to 99% ÷ fast time to 99% = {ratio:.1f}×")


if __name__ == "__main__":
    main()
