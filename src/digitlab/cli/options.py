"""The command line's shape: exit codes, the parser, flags shared by commands, type checkers.

The training flags are made from `TrainConfig`'s fields (`add_training_overrides`): a new field
in digitlab.config is a new flag of `digitlab train`, with its help, type and checks.
"""

import argparse
import types
import typing
from dataclasses import fields
from pathlib import Path
from typing import Any, NoReturn

EXIT_ERROR, EXIT_USAGE, EXIT_INTERRUPTED = 1, 2, 130
DEFAULT_CHECKPOINT_HELP = "default: the newest run in ./runs, else the packaged model"
READER_CHECKPOINT_HELP = (
    "a number reader's run (`digitlab train --recipe reader`) or a checkpoint that carries a "
    "reader; default: the newest reader run in ./runs, else the packaged model's reader"
)
DEVICE_HELP = "auto, cpu or cuda[:N]"


class Parser(argparse.ArgumentParser):
    """argparse, but a bad flag is one line on stderr rather than the whole usage text."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Show a flag's default only when it has a meaningful one."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        if action.default in (None, False, argparse.SUPPRESS):
            return action.help
        return super()._get_help_string(action)


def add_command(subparsers: Any, name: str, help: str) -> argparse.ArgumentParser:
    """A command's parser, its one-line `help` shown in `digitlab --help` and atop its own."""
    return subparsers.add_parser(name, help=help, description=help, formatter_class=HelpFormatter)


def check_index_or_paths(args: argparse.Namespace) -> None:
    """`predict` and `explain` take image paths or `--index N`, exactly one of them."""
    from digitlab.errors import ConfigError

    if (args.index is None) == (not args.paths):
        raise ConfigError(
            "give image paths or --index N (an MNIST test image), not both or neither"
        )


def test_image(args: argparse.Namespace) -> tuple[Any, int]:
    """MNIST test image `--index` (uint8, 28×28) and its label, from `--data-dir`."""
    from digitlab.data import load_mnist
    from digitlab.errors import ConfigError

    mnist = load_mnist(args.data_dir)
    count = len(mnist.test_images)
    if not 0 <= args.index < count:
        raise ConfigError(f"--index must be between 0 and {count - 1}, not {args.index}")
    return mnist.test_images[args.index], int(mnist.test_labels[args.index])


# ------------------------------------------------------------------------------- type checkers


def positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a whole number of at least 1, not {text}")
    return value


def positive_float(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be a number above 0, not {text}")
    return value


def whole_number(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be a whole number of at least 0, not {text}")
    return value


def port(text: str) -> int:
    value = int(text)
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"must be between 0 and 65535, not {text}")
    return value


positive_int.__name__ = "positive integer"  # argparse names the type in its messages
whole_number.__name__ = "whole number"
positive_float.__name__ = "positive number"


# -------------------------------------------------------------------------------- shared flags


def add_checkpoint(parser: argparse.ArgumentParser, task: str = "digits") -> None:
    """--checkpoint RUN_DIR; when it is not given, `digitlab.cli.main` picks the newest run of
    `task` ("digits": a classifier, "numbers": a number reader), else the packaged model."""
    help = READER_CHECKPOINT_HELP if task == "numbers" else DEFAULT_CHECKPOINT_HELP
    parser.add_argument("--checkpoint", type=Path, metavar="RUN_DIR", help=help)
    parser.set_defaults(checkpoint_task=task)


def add_device(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--device", default="auto", help=DEVICE_HELP)


def add_data_dir(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--data-dir",
        type=Path,
        help="folder with the MNIST files (default: $DIGITLAB_DATA, else ~/.cache/digitlab/mnist)",
    )


def add_runtime(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--runtime",
        default="torch",
        choices=["torch", "onnx"],
        help="run the model with PyTorch, or export it to ONNX and run it with ONNX Runtime",
    )


def add_json(parser: argparse.ArgumentParser, what: str) -> None:
    parser.add_argument("--json", action="store_true", help=f"print {what} as JSON on stdout")


def add_rejection(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--reject-threshold",
        type=float,
        metavar="SCORE",
        help="answer 'not a digit' above this detector score instead of the one stored with "
        "the model (higher rejects fewer)",
    )
    parser.add_argument(
        "--no-reject", action="store_true", help="always answer a digit, never 'not a digit'"
    )


def rejection_options(args: argparse.Namespace) -> dict[str, Any]:
    """`reject` and `reject_threshold` for `Predictor.from_bundle` and `create_app`."""
    from digitlab.errors import ConfigError

    if args.no_reject and args.reject_threshold is not None:
        raise ConfigError("give --reject-threshold or --no-reject, not both")
    return {"reject": not args.no_reject, "reject_threshold": args.reject_threshold}


def add_bulk_reading(
    parser: argparse.ArgumentParser,
    workers: str = "decode and clean images in N parallel processes (the model runs in this one)",
) -> None:
    """Flags for reading large folders (also under torchrun, one shard of the files per rank);
    `workers` says what the worker processes do."""
    bulk = parser.add_argument_group("large folders")
    bulk.add_argument("--workers", type=positive_int, default=1, metavar="N", help=workers)
    bulk.add_argument(
        "--jsonl", action="store_true",
        help="stream one JSON line per file as soon as it is read (memory stays flat)",
    )  # fmt: skip
    bulk.add_argument(
        "--out", type=Path, metavar="FILE",
        help="with --jsonl: write the lines to FILE, not stdout (needed under torchrun: each "
        "process writes FILE.part-RANK and rank 0 joins them into FILE)",
    )  # fmt: skip
    bulk.add_argument(
        "--skip-done", type=Path, metavar="FILE",
        help="with --jsonl: skip the files an earlier JSONL output FILE holds; when --out is "
        "the same FILE, the new lines are appended to it",
    )  # fmt: skip


def check_bulk_flags(args: argparse.Namespace) -> None:
    from digitlab.errors import ConfigError

    if (args.out is not None or args.skip_done is not None) and not args.jsonl:
        raise ConfigError("--out and --skip-done go with --jsonl")
    if args.jsonl and (args.json or args.csv or args.show is not None):
        raise ConfigError("--jsonl streams its own output; drop --json, --csv and --show")


# ---------------------------------------------------------------------------- training flags

SELECTOR = "recipe"  # the field chosen by --recipe, not overridden


def add_training_overrides(parser: argparse.ArgumentParser) -> None:
    """One flag per `TrainConfig` field but the recipe: `batch_size` → `--batch-size`, its
    type, checks and help from the field. Every flag defaults to None, "the recipe's value";
    a bool field gets `--x/--no-x`."""
    from digitlab.config import TrainConfig

    group = parser.add_argument_group("recipe overrides (default: the recipe's value)")
    hints = typing.get_type_hints(TrainConfig)
    for field in fields(TrainConfig):
        if field.name == SELECTOR:
            continue
        meta = field.metadata
        kind = _value_type(hints[field.name])
        flag = "--" + field.name.replace("_", "-")
        help = meta["help"].replace("%", "%%")  # argparse formats help with %
        if kind is bool:
            group.add_argument(flag, action=argparse.BooleanOptionalAction, help=help)
            continue
        check: Any = kind
        if meta.get("positive"):
            check = {int: positive_int, float: positive_float}[kind]
        group.add_argument(
            flag, type=check, choices=meta.get("choices"), metavar=meta.get("metavar"), help=help
        )


def training_overrides(args: argparse.Namespace) -> dict[str, Any]:
    """The fields given on the command line (the flags of `add_training_overrides` not left
    at None)."""
    from digitlab.config import TrainConfig

    values = {f.name: getattr(args, f.name) for f in fields(TrainConfig) if f.name != SELECTOR}
    return {name: value for name, value in values.items() if value is not None}


def _value_type(annotation: Any) -> type:
    """`int` for `int` and for `int | None`: what a flag's text is parsed as."""
    if typing.get_origin(annotation) in (types.UnionType, typing.Union):
        (kind,) = [arg for arg in typing.get_args(annotation) if arg is not type(None)]
        return typing.cast(type, kind)
    return typing.cast(type, annotation)
