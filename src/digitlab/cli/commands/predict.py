"""`digitlab predict`: the digit in each image file, or in an MNIST test image."""

import argparse
import functools
import json
from pathlib import Path
from typing import Any

from digitlab.cli import options, output


def register(subparsers: Any) -> argparse.ArgumentParser:
    parser = options.add_command(
        subparsers,
        "predict",
        "read the digits in image files (photos, scans, drawings) or in the MNIST test set",
    )
    parser.add_argument("paths", nargs="*", metavar="PATH", help="image files, folders or globs")
    parser.add_argument("--index", type=int, help="instead of files: an MNIST test-set index")
    options.add_checkpoint(parser)
    options.add_device(parser)
    options.add_runtime(parser)
    parser.add_argument("--save", type=Path, metavar="PNG", help="with --index: write the digit")
    parser.add_argument(
        "--show",
        type=Path,
        metavar="DIR",
        help="write each image beside the 28×28 view the model saw",
    )
    options.add_rejection(parser)
    parser.add_argument("--csv", action="store_true", help="print the results as CSV")
    options.add_json(parser, "the predictions")
    options.add_data_dir(parser)
    options.add_bulk_reading(parser)
    return parser


def run(args: argparse.Namespace) -> int:
    from digitlab.errors import ConfigError
    from digitlab.predict import Predictor

    options.check_index_or_paths(args)
    if args.index is None and args.save is not None:
        raise ConfigError("--save goes with --index; for image files use --show DIR")
    predictor = Predictor.from_checkpoint(
        args.checkpoint, args.device, runtime=args.runtime, **options.rejection_options(args)
    )
    output.note_missing(predictor)
    if args.index is not None:
        return _predict_index(args, predictor)
    return _predict_files(args, predictor)


def _predict_files(args: argparse.Namespace, predictor: Any) -> int:
    from digitlab.files import expand_paths
    from digitlab.predict import predict_stream

    options.check_bulk_flags(args)
    paths = expand_paths(args.paths)
    if args.jsonl:
        return output.write_jsonl(args, paths, functools.partial(predict_stream, predictor))
    stream = predict_stream(
        predictor, paths, workers=args.workers, keep_views=args.show is not None
    )
    return output.print_file_results(
        args,
        output.collect(args, stream, len(paths)),
        output.draw_predictions,
        output.print_predictions_csv,
        output.print_predictions,
    )


def _predict_index(args: argparse.Namespace, predictor: Any) -> int:
    from digitlab.data import to_float

    image, label = options.test_image(args)
    prediction = predictor.predict_tensor(to_float(image[None]))[0]
    if args.save is not None:
        from digitlab.plots import plot_digit

        plot_digit(
            image, f"test #{args.index}: predicted {prediction.digit}, true {label}", args.save
        )
    if args.json:
        print(json.dumps({"index": args.index, "label": label} | prediction.to_dict()))
        return 0
    print(output.draw_digit(image))
    top3 = ", ".join(f"{d} {p:.1%}" for d, p in prediction.top3)
    if prediction.digit is None:
        print(f"test image {args.index}: {prediction.reason}; true {label}")
    else:
        print(f"test image {args.index}: predicted {prediction.digit} ", end="")
        print(f"({prediction.probability:.1%}); true {label}")
    print(f"top 3: {top3}")
    return 0
