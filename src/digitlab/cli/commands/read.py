"""`digitlab read`: the numbers in each image file, read by the sequence reader."""

import argparse
import functools
from pathlib import Path
from typing import Any

from digitlab.cli import options, output


def register(subparsers: Any) -> argparse.ArgumentParser:
    parser = options.add_command(
        subparsers,
        "read",
        "read the numbers in image files, every line left to right (a meter, a form field, "
        "a handwritten amount, a list)",
    )
    parser.add_argument("paths", nargs="+", metavar="PATH", help="image files, folders or globs")
    options.add_checkpoint(parser, task="numbers")
    options.add_device(parser)
    formats = parser.add_mutually_exclusive_group()
    formats.add_argument(
        "--json",
        action="store_true",
        help="print a JSON list, one object per file: path, text (numbers on a line joined by "
        'a space, lines by "\\n"), numbers (text, confidence, box [x, y, w, h], digits), '
        "digits (digit, probability, box), confidence, reason, error",
    )
    formats.add_argument(
        "--csv",
        action="store_true",
        help="print one CSV row per file: path, text (lines joined by ' / '), confidence, "
        "numbers (text:confidence ...), number_boxes and boxes (x y w h;...), digits "
        "(digit:probability ...), reason, error",
    )
    parser.add_argument(
        "--show",
        type=Path,
        metavar="DIR",
        help="write each image to DIR with each number's box, and each digit's box and digit, "
        "drawn on it",
    )
    options.add_bulk_reading(
        parser,
        workers="open the pictures and find their lines of writing in N parallel processes "
        "(the reader reads them in this one)",
    )
    return parser


def run(args: argparse.Namespace) -> int:
    from digitlab.errors import ConfigError
    from digitlab.files import expand_paths
    from digitlab.read import NumberReader, read_stream

    options.check_bulk_flags(args)
    paths = expand_paths(args.paths)
    if not paths:
        raise ConfigError(f"no image files in {' '.join(args.paths)}")
    reader = NumberReader.from_checkpoint(args.checkpoint, args.device)
    output.note_missing(reader)
    if args.jsonl:
        return output.write_jsonl(args, paths, functools.partial(read_stream, reader))
    stream = read_stream(reader, paths, workers=args.workers)
    return output.print_file_results(
        args,
        output.collect(args, stream, len(paths)),
        output.draw_readings,
        output.print_readings_csv,
        output.print_readings,
    )
