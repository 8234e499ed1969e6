"""`digitlab train`: a recipe, with any field overridden, trained, evaluated and reported.

digitlab train --recipe fast --epochs 3
torchrun --standalone --nproc_per_node=2 -m digitlab train --recipe default
digitlab train --resume runs/default-20261129-101500   # after Ctrl-C
"""

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from digitlab.cli import options
from digitlab.cli.output import TrainingDisplay, download_bar


def register(subparsers: Any) -> argparse.ArgumentParser:
    from digitlab.config import RECIPES

    parser = options.add_command(
        subparsers, "train", "train a model, evaluate it and write a run folder"
    )
    parser.add_argument(
        "--recipe", default="default", choices=list(RECIPES), help="named set of settings"
    )
    options.add_training_overrides(parser)
    parser.add_argument("--out", type=Path, help="run folder (default: runs/<recipe>-<timestamp>)")
    parser.add_argument(
        "--resume", type=Path, metavar="RUN_DIR", help="continue an interrupted run"
    )
    parser.add_argument("--quiet", action="store_true", help="no progress bar or epoch table")
    options.add_json(parser, "the final result")
    options.add_data_dir(parser)
    return parser


def run(args: argparse.Namespace) -> int:
    from digitlab import distributed
    from digitlab.config import make_config
    from digitlab.errors import ConfigError
    from digitlab.training import load_run_config

    overrides = options.training_overrides(args)
    if args.resume is not None:
        if overrides or args.out is not None:
            raise ConfigError(
                "--resume continues a run with its saved settings; drop the other flags"
            )
        config = load_run_config(args.resume)
    else:
        config = make_config(args.recipe, **overrides)
    # Under torchrun every process runs this; rank 0 alone prints and writes the report.
    with distributed.launched(config.device) as session:
        return _train_and_report(args, config, session)


def _train_and_report(args: argparse.Namespace, config: Any, session: Any) -> int:
    from digitlab import distributed
    from digitlab.data import load_mnist
    from digitlab.models import model_label
    from digitlab.report import write_run_report
    from digitlab.runs import new_run_dir
    from digitlab.training import train

    run_dir = args.resume or distributed.broadcast_from_main(
        args.out or new_run_dir(config.recipe)  # rank 0's choice: the names hold a time
    )
    verbose = not (args.quiet or args.json) and session.is_main
    with distributed.main_process_first():  # rank 0 downloads MNIST if it is missing
        on_progress = download_bar() if verbose else None
        mnist = load_mnist(args.data_dir, download=True, on_progress=on_progress)
    if verbose:
        what = model_label(config.model, config.members)
        processes = f" on {session.world_size} processes" if session.is_distributed else ""
        print(f"training {what} with recipe {config.recipe!r}{processes} → {run_dir}")
    resume = args.resume is not None
    say_resumed = _say_resumed if session.is_main else None
    with TrainingDisplay(verbose, validation=config.validation > 0) as display:
        result = train(
            config, mnist, run_dir, resume=resume, on_resume=say_resumed, **display.callbacks()
        )
    with distributed.main_process_first():  # the others wait for rank 0's report
        evaluation = (
            write_run_report(
                run_dir, mnist, model=result.model, test_log_probs=result.test_log_probs
            )
            if session.is_main
            else None
        )
    if evaluation is None:
        return 0
    summary = result.to_dict() | {
        "test_accuracy": evaluation.accuracy,
        "test_loss": evaluation.loss,
        "world_size": session.world_size,
    }
    if args.json:
        print(json.dumps(summary))
    elif not args.quiet:
        from digitlab.models import task_of

        reader = task_of(config.model) == "numbers"
        averaged = f", {config.members} models averaged" if config.members > 1 else ""
        score = f"test accuracy {evaluation.accuracy:.2%}"
        if reader:  # scored on pictures of numbers, whole texts right
            score = f"{evaluation.accuracy:.1%} of the test pictures read right (whole text)"
        print(
            f"{score} after {summary['epochs']} epochs{averaged}, in "
            f"{summary['wall_seconds']:.1f} s; report: {run_dir / 'report.md'}"
        )
        print(next_commands(run_dir, reader=reader))
    return 0


def _say_resumed(resumed: Any) -> None:
    print(f"digitlab: {resumed}", file=sys.stderr)  # e.g. "resuming runs/x after epoch 2"


def next_commands(run_dir: Path, *, reader: bool = False) -> str:
    """What to try with a model just trained (`make run` ends with this)."""
    from digitlab.runs import RunPaths, default_checkpoint

    is_default = default_checkpoint().resolve() == RunPaths(run_dir).model.resolve()
    checkpoint = "" if is_default else f" --checkpoint {run_dir}"
    if reader:
        return (
            f"next, try:\n  digitlab read number.jpg --checkpoint {run_dir}"
            "  # the numbers in a photo or scan of your own"
        )
    commands = [
        (f"digitlab predict --index 100{checkpoint}", "a test digit, drawn in the terminal"),
        (f"digitlab predict my-digit.jpg{checkpoint}", "a photo or scan of your own"),
        (f"digitlab serve{checkpoint}", "the draw-a-digit page on http://127.0.0.1:8000/"),
    ]
    width = max(len(command) for command, _ in commands)
    lines = [f"  {command:{width}}  # {what}" for command, what in commands]
    return "\n".join(["next, try:", *lines])
