"""The `digitlab` command: a parser made from the list of commands, errors turned into exit codes.

    digitlab data download           # fetch MNIST (or set DIGITLAB_DATA to a folder that has it)
    digitlab train --recipe default  # train, evaluate, write runs/<recipe>-<time>/
    digitlab evaluate runs/default-20261129-101500
    digitlab predict --index 100     # with the newest run
    digitlab read meter.jpg          # the number in a photo, e.g. 2026

Each command is a module of digitlab.cli.commands with `register(subparsers)`, which adds its
parser, and `run(args) -> int`, which calls the library and prints. Adding a command is one new
module and one entry in `COMMANDS`. Only this package reads arguments, prints or exits: every
error a user can cause arrives here as a `DigitlabError` and leaves as one line on stderr.
"""

import argparse
import gc
import os
import sys
from collections.abc import Sequence

from digitlab import __version__
from digitlab.cli.commands import (
    data,
    evaluate,
    explain,
    export,
    models,
    predict,
    read,
    recipes,
    serve,
    train,
)
from digitlab.cli.options import EXIT_ERROR, EXIT_INTERRUPTED, HelpFormatter, Parser
from digitlab.errors import DigitlabError

COMMANDS = [data, train, evaluate, predict, read, explain, serve, export, models, recipes]


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog="digitlab",
        description="Train, evaluate and use handwritten-digit recognizers (MNIST).",
        formatter_class=HelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"digitlab {__version__}")
    subparsers = parser.add_subparsers(title="commands", required=True, metavar="COMMAND")
    for command in COMMANDS:
        command.register(subparsers).set_defaults(run=command.run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    if argv is None:  # the `digitlab` program itself, not a caller's function call
        # Large tensors, such as the "not a digit" detector's activations for 2,000 images
        # (100 MB), get fresh memory from the OS for every batch, page-faulted in 4 kB at a
        # time. With this set, PyTorch's CPU allocator backs its allocations of 2 MB and more
        # with transparent huge pages: the detector's share of `digitlab train --recipe fast`
        # 3.75 → 2.49 s here (one thread, busy machine). Set before torch allocates anything:
        # it reads the variable once.
        os.environ.setdefault("THP_MEM_ALLOC_ENABLE", "1")
    code = _main(argv)
    if argv is None:  # and the program now ends
        # torch, matplotlib and the rest leave millions of objects, and the interpreter's last
        # garbage collection at exit walks them all: a few tenths of a second after a
        # training run, for nothing. Frozen objects are skipped; the OS frees the memory.
        gc.freeze()
    return code


def _main(argv: Sequence[str] | None) -> int:
    args = build_parser().parse_args(argv)
    try:
        _choose_default_checkpoint(args)
        return int(args.run(args) or 0)
    except DigitlabError as err:
        from digitlab.distributed import is_main_process
        from digitlab.training import TrainingInterrupted

        interrupted = isinstance(err, TrainingInterrupted)
        if is_main_process() or not interrupted:  # under torchrun, say it once
            print(f"digitlab: {err}", file=sys.stderr)
        return EXIT_INTERRUPTED if interrupted else EXIT_ERROR
    except KeyboardInterrupt:
        print("digitlab: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED


def _choose_default_checkpoint(args: argparse.Namespace) -> None:
    """Every command that takes a checkpoint and was given none (predict, read, explain,
    evaluate, serve, ...) uses the newest run of its task under ./runs (a classifier's, or for
    `read` a number reader's), else the packaged model; the choice is made here, once for all
    of them, and said in one line on stderr."""
    if getattr(args, "checkpoint", True) is not None:  # no such option, or one was given
        return
    from digitlab.checkpoint import read_model_file
    from digitlab.runs import default_checkpoint, is_packaged

    task = getattr(args, "checkpoint_task", "digits")
    args.checkpoint = default_checkpoint(task)
    if not is_packaged(args.checkpoint):
        kind = "reader run" if task == "numbers" else "run"
        print(
            f"digitlab: using the newest {kind}, {args.checkpoint.parent} "
            "(--checkpoint RUN_DIR to choose another)",
            file=sys.stderr,
        )
        return
    _, metadata = read_model_file(args.checkpoint)
    if task == "numbers":
        reader = metadata.get("reader") or {}
        read_whole = (reader.get("metrics") or {}).get("test_accuracy")
        scored = f", {read_whole:.1%} of its test pictures read whole" if read_whole else ""
        print(
            f"digitlab: using the packaged model's number reader ({reader.get('model')}"
            f"{scored}); no reader run in ./runs — train one with "
            "`digitlab train --recipe reader`",
            file=sys.stderr,
        )
        return
    accuracy = metadata.get("metrics", {}).get("test_accuracy")
    scored = f", {accuracy:.2%} on the MNIST test set" if accuracy is not None else ""
    print(
        f"digitlab: using the packaged model ({metadata['model']}{scored}); "
        "no run in ./runs — train your own with `digitlab train`",
        file=sys.stderr,
    )
