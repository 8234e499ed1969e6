"""Benchmark the training recipes on real MNIST and print a markdown table.

    DIGITLAB_DATA=../shared/data/mnist .venv/bin/python bench/recipes.py
    .venv/bin/python bench/recipes.py --recipes default fast --repeats 3

Each recipe runs in a fresh process, so its peak RSS is its own. Two wall times: the whole
process (starting Python, importing torch — about 2 s here — loading MNIST, training with a test
evaluation after every epoch), and from loading the data to the end of training. With
`--repeats N` each recipe runs with its own seed plus 0..N-1 and times are medians. "CPU s" is the
process's user + system CPU time (2 cores busy → about twice the wall time); "s / epoch" is per
model-epoch, so an ensemble's counts each member's epochs. An ensemble's members' own final
accuracies are listed under the table.

A second table times the seed notebook's data path (a DataLoader over per-sample PIL → ToTensor
conversion, batch 10) against digitlab's in-memory batches: the same network, the same math.
"""

import argparse
import json
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from digitlab.config import RECIPES
from digitlab.models import model_label


def run_recipe(recipe: str, seed: int | None) -> dict:
    """Train one recipe in a child process; wall time is measured from outside."""
    with tempfile.TemporaryDirectory() as out:
        command = [sys.executable, __file__, "--child", recipe, "--out", out]
        if seed is not None:
            command += ["--seed", str(seed)]
        started = time.perf_counter()
        result = subprocess.run(command, capture_output=True, text=True)
        wall = time.perf_counter() - started
    if result.returncode != 0:
        raise SystemExit(f"{recipe} failed:\n{result.stderr}")
    return json.loads(result.stdout.splitlines()[-1]) | {"process_wall_seconds": wall}


def child(recipe: str, out: str, seed: int | None) -> None:
    from digitlab.config import make_config
    from digitlab.data import load_mnist
    from digitlab.training import train

    started = time.perf_counter()
    mnist = load_mnist()
    config = make_config(recipe, seed=seed)
    result = train(config, mnist, Path(out))
    histories = result.member_histories
    usage = resource.getrusage(resource.RUSAGE_SELF)
    summary = result.to_dict() | {
        "train_seconds": sum(h.seconds for history in histories for h in history),
        "model_epochs": sum(len(history) for history in histories),
        "member_accuracies": [history[-1].test_accuracy for history in histories],
        "in_process_seconds": time.perf_counter() - started,
        "cpu_seconds": usage.ru_utime + usage.ru_stime,
        "peak_rss_mib": usage.ru_maxrss / 1024,
    }
    print(json.dumps(summary))


def recipe_table(recipes: list[str], repeats: int) -> str:
    rows = [
        "| recipe | model | epochs | wall s, process | wall s, data load + training | s / epoch "
        "| CPU s | test accuracy | peak RSS MiB |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    members = []
    for recipe in recipes:
        own_seed = RECIPES[recipe].seed
        runs = [run_recipe(recipe, own_seed + k) for k in range(repeats)]
        wall = statistics.median(r["process_wall_seconds"] for r in runs)
        in_process = statistics.median(r["in_process_seconds"] for r in runs)
        per_epoch = statistics.median(r["train_seconds"] / r["model_epochs"] for r in runs)
        cpu = statistics.median(r["cpu_seconds"] for r in runs)
        accuracies = ", ".join(f"{r['test_accuracy']:.2%}" for r in runs)
        rss = max(r["peak_rss_mib"] for r in runs)
        model = model_label(runs[0]["model"], runs[0].get("members", 1))
        rows.append(
            f"| {recipe} | {model} | {runs[0]['epochs']} | {wall:.1f} | {in_process:.1f} "
            f"| {per_epoch:.1f} | {cpu:.0f} | {accuracies} | {rss:.0f} |"
        )
        members += [
            f"{recipe} (seed {own_seed + k}) members: "
            + ", ".join(f"{a:.2%}" for a in r["member_accuracies"])
            for k, r in enumerate(runs)
            if len(r["member_accuracies"]) > 1
        ]
    return "\n".join(rows + ([""] if members else []) + members)


def notebook_data_path_table(epochs: int) -> str:
    """Train lenet as the notebook did, feeding it two ways; same seed, same math."""
    import numpy as np
    from PIL import Image

    from digitlab.data import iterate_batches, load_mnist
    from digitlab.models import create_model

    mnist = load_mnist()
    torch.set_num_threads(1)  # as `train` does for batches this small; the same for both paths

    class PerSampleDataset(torch.utils.data.Dataset):
        """What torchvision's MNIST + ToTensor does per sample: uint8 → PIL → float tensor."""

        def __len__(self) -> int:
            return len(mnist.train_images)

        def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
            image = Image.fromarray(mnist.train_images[i].numpy(), mode="L")
            pixels = torch.from_numpy(np.array(image)).float().div(255).unsqueeze(0)
            return pixels, int(mnist.train_labels[i])

    def notebook_batches():
        return torch.utils.data.DataLoader(PerSampleDataset(), batch_size=10, shuffle=False)

    def in_memory_batches():
        return iterate_batches(mnist.train_images, mnist.train_labels, 10)

    rows = [
        f"| data path ({epochs} epochs, lenet, batch 10, Adam 0.02) | seconds | final weights |",
        "| --- | ---: | --- |",
    ]
    reference = None
    for name, batches in (
        ("notebook: DataLoader + per-sample ToTensor", notebook_batches),
        ("digitlab: in-memory uint8, per-batch float", in_memory_batches),
    ):
        torch.manual_seed(41)
        model = create_model("lenet")
        optimizer = torch.optim.Adam(model.parameters(), lr=0.02)
        started = time.perf_counter()
        for _ in range(epochs):
            for x, y in batches():
                loss = torch.nn.functional.cross_entropy(model(x), y)
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
        seconds = time.perf_counter() - started
        weights = torch.cat([p.detach().flatten() for p in model.parameters()])
        same = "reference" if reference is None else f"identical: {torch.equal(weights, reference)}"
        reference = weights if reference is None else reference
        rows.append(f"| {name} | {seconds:.1f} | {same} |")
    return "\n".join(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipes", nargs="*", default=["seed", "default", "fast"])
    parser.add_argument("--repeats", type=int, default=1, help="seeds per recipe (median time)")
    parser.add_argument("--notebook-epochs", type=int, default=5, help="0 skips that table")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    parser.add_argument("--seed", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return child(args.child, args.out, args.seed)

    cpu = platform.processor() or platform.machine()
    print(f"Machine: {cpu}, {torch.get_num_threads()} threads, torch {torch.__version__}\n")
    if args.recipes:
        print(recipe_table(args.recipes, args.repeats))
    if args.notebook_epochs:
        print()
        print(notebook_data_path_table(args.notebook_epochs))


if __name__ == "__main__":
    main()
