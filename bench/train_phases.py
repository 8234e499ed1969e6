r"""Where the seconds of one `digitlab train` go: a markdown table of its phases.

    cd bench && DIGITLAB_DATA=../../shared/data/mnist ../.venv/bin/python train_phases.py
    ../.venv/bin/python train_phases.py --repeats 3 -- --recipe fast --epochs 2
    # another checkout's code, same measurement (e.g. before a change):
    git archive 8a4d621 src | tar -x -C /tmp/old && PYTHONPATH=/tmp/old/src ../.venv/bin/python \
        train_phases.py

Each repeat runs `digitlab train ARGS --quiet` in a child process that wraps the functions
`digitlab train` goes through (data loading, the hold-out split, building the model and
optimizer, training steps, per-epoch evaluation, saving, calibration, the report's test
evaluation, "not a digit" figures and plots) with timers, and reports their seconds; the child's
wall time is measured from outside, so "start, imports, exit" is what no phase covers. Nested
phases are shown indented and counted once in their parent. Functions a checkout lacks are
skipped. With --repeats N, the median of each phase.
"""

import argparse
import datetime
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from machine import cpu_name

# (label, module, attribute, class or None, depth): depth 1 phases are inside a depth 0 phase.
PHASES = [
    ("MNIST: read, decompress, check", "digitlab.data", "load_mnist", None, 0),
    ("training (`train`)", "digitlab.training.run", "train", None, 0),
    ("hold-out split", "digitlab.data", "split_validation", None, 1),
    ("model and optimizer", "digitlab.training.loop", "start", "Training", 1),
    ("training steps", "digitlab.training.loop", "train_epoch", "Training", 1),
    ("evaluation after each epoch (test and held-out images)", "digitlab.training.loop",
     "evaluate_epoch", "Training", 1),
    ("checkpoints", "digitlab.training.loop", "save", "Training", 1),
    ("calibration (`calibrate_run`)", "digitlab.calibrate", "calibrate_run", None, 1),
    ("not-a-digit threshold: detector on the held-out images", "digitlab.reject",
     "run_rejection", None, 2),
    ("report (`write_run_report`)", "digitlab.report", "write_run_report", None, 0),
    ("test-set figures (`evaluate_checkpoint`)", "digitlab.calibrate", "evaluate_checkpoint",
     None, 1),
    ("not-a-digit figures: detector on the test set and on non-digits", "digitlab.reject",
     "rejection_report", None, 2),
    ("reading the 1,000 frozen non-digits", "digitlab.reject", "load_nondigits", None, 3),
    ("plots", "digitlab.report", "write_run_plots", None, 1),
]  # fmt: skip

CHILD = r"""
import functools, importlib, json, sys, time
seconds = {}
def timed(label, owner, name):
    function = getattr(owner, name)
    @functools.wraps(function)
    def wrapper(*args, **kwargs):
        started = time.perf_counter()
        try:
            return function(*args, **kwargs)
        finally:
            seconds[label] = seconds.get(label, 0.0) + time.perf_counter() - started
    return wrapper
# Import first what imports these functions by name, so the loop below reaches them too.
for module in ("digitlab.training.run", "digitlab.training.digits", "digitlab.calibrate",
               "digitlab.report", "digitlab.reject", "digitlab.cli.commands.train"):
    importlib.import_module(module)
patched = {}
for label, module, name, cls, _ in json.loads(sys.argv[1]):
    try:
        owner = importlib.import_module(module)
        owner = getattr(owner, cls) if cls else owner
        patched[(module, cls, name)] = getattr(owner, name)
        setattr(owner, name, timed(label, owner, name))
    except (ImportError, AttributeError):
        pass
# Modules that imported a wrapped function by name get the wrapper too.
for module in list(sys.modules.values()):
    for (source, cls, name), original in patched.items():
        if cls is None and getattr(module, name, None) is original:
            setattr(module, name, getattr(importlib.import_module(source), name))
from digitlab.cli import main
sys.argv = ["digitlab", *sys.argv[2:]]
code = main()  # as the `digitlab` program runs it
print(json.dumps(seconds), file=sys.stderr)
sys.exit(code)
"""


def run_once(train_args: list[str]) -> dict[str, float]:
    with tempfile.TemporaryDirectory(prefix="train-phases-") as out:
        argv = ["train", *train_args, "--quiet", "--out", str(Path(out) / "run")]
        command = [sys.executable, "-c", CHILD, json.dumps(PHASES), *argv]
        started = time.perf_counter()
        result = subprocess.run(command, capture_output=True, text=True)
        wall = time.perf_counter() - started
    if result.returncode != 0:
        raise SystemExit(f"digitlab {' '.join(argv)} failed:\n{result.stderr}")
    return json.loads(result.stderr.strip().splitlines()[-1]) | {"whole process": wall}


def table(runs: list[dict[str, float]]) -> str:
    def median(label: str) -> float | None:
        values = [run[label] for run in runs if label in run]
        return statistics.median(values) if values else None

    whole = median("whole process") or 0.0
    top = sum(median(label) or 0.0 for label, *_, depth in PHASES if depth == 0)
    rows = ["| phase | seconds | share |", "| --- | ---: | ---: |"]
    for label, *_, depth in PHASES:
        value = median(label)
        if value is not None:
            name = ("&nbsp;&nbsp;&nbsp;&nbsp;" * depth) + label
            rows.append(f"| {name} | {value:.2f} | {value / whole:.0%} |")
    rest = whole - top
    other = "Python start, imports, argument parsing, exit"
    rows.append(f"| {other} | {rest:.2f} | {rest / whole:.0%} |")
    rows.append(f"| **whole process** | **{whole:.2f}** | 100% |")
    return "\n".join(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("train_args", nargs="*", help="after --: `digitlab train` arguments")
    args = parser.parse_args()
    train_args = args.train_args or ["--recipe", "fast"]
    load_before = os.getloadavg()
    runs = [run_once(train_args) for _ in range(args.repeats)]
    load_after = os.getloadavg()
    threads = os.environ.get("OMP_NUM_THREADS", "torch's default")
    print(
        f"`digitlab train {' '.join(train_args)}`, {args.repeats} run(s), median; {cpu_name()}, "
        f"{os.cpu_count()} cores, threads: {threads}; load average {load_before[0]:.2f} before, "
        f"{load_after[0]:.2f} after; {datetime.datetime.now():%Y-%m-%d %H:%M}\n"
    )
    print(table(runs))


if __name__ == "__main__":
    main()
