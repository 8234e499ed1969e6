"""`digitlab read`: the whole number in each image file, every digit left to right."""

import argparse
import functools
from pathlib import Path
from typing import Any

from digitlab.cli import options, output


def register(subparsers: Any) -> argparse.ArgumentParser:
    parser = options.add_command(
        subparsers,
        "read",
        "read the numbers in image files: every digit, left to right (a meter, a form field, "
        "a handwritten amount)",
    )
    parser.add_argument("paths", nargs="+", metavar="PATH", help="image files, folders or globs")
    options.add_checkpoint(parser)
    options.add_device(parser)
    options.add_runtime(parser)
    options.add_rejection(parser)
    formats = parser.add_mutually_exclusive_group()
    formats.add_argument(
        "--json",
        action="store_true",
        help="print a JSON list, one object per file: path, text, digits (digit, "
        "probability, box [x, y, w, h]), confidence, reason, error",
    )
    formats.add_argument(
        "--csv",
        action="store_true",
        help="print one CSV row per file: path, text, confidence, digits (digit:probability "
        "...), boxes (x y w h;...), reason, error",
    )
    parser.add_argument(
        "--show",
        type=Path,
        metavar="DIR",
        help="write each image to DIR with the digits' boxes and probabilities drawn on it",
    )
    options.add_bulk_reading(
        parser,
        workers="open, clean and cut the numbers into digits in N parallel processes, each "
        "with a CPU copy of the model to score the cuts (the digits are read in this one)",
    )
    return parser


def run(args: argparse.Namespace) -> int:
    from digitlab.bulk import read_stream
    from digitlab.errors import ConfigError
    from digitlab.predict import Predictor, expand_paths
    from digitlab.runs import resolve_checkpoint

    options.check_bulk_flags(args)
    paths = expand_paths(args.paths)
    if not paths:
        raise ConfigError(f"no image files in {' '.join(args.paths)}")
    checkpoint = resolve_checkpoint(args.checkpoint)
    predictor = Predictor.from_checkpoint(
        checkpoint, args.device, runtime=args.runtime, **options.rejection_options(args)
    )
    output.note_missing(predictor)
    if args.jsonl:
        return output.write_jsonl(args, paths, functools.partial(read_stream, predictor))
    stream = read_stream(predictor, paths, workers=args.workers)
    return output.print_file_results(
        args,
        output.collect(args, stream, len(paths)),
        output.draw_readings,
        output.print_readings_csv,
        output.print_readings,
    )
