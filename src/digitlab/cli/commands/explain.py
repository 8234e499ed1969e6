"""`digitlab explain`: Integrated Gradients heat maps for the answer and the runner-up."""

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from digitlab.cli import options
from digitlab.cli.options import EXIT_ERROR


def register(subparsers: Any) -> argparse.ArgumentParser:
    parser = options.add_command(
        subparsers,
        "explain",
        "show which pixels drove the answer and the runner-up (Integrated Gradients heat maps)",
    )
    parser.add_argument("paths", nargs="*", metavar="PATH", help="image files, folders or globs")
    parser.add_argument("--index", type=int, help="instead of files: an MNIST test-set index")
    options.add_checkpoint(parser)
    parser.add_argument(
        "--out", type=Path, required=True, metavar="DIR", help="folder for the PNG heat maps"
    )
    options.add_device(parser)
    options.add_json(parser, "what was written, the answer, the runner-up and each map's numbers")
    options.add_data_dir(parser)
    return parser


def run(args: argparse.Namespace) -> int:
    from digitlab.explain import check_explainable
    from digitlab.predict import Predictor

    options.check_index_or_paths(args)
    predictor = Predictor.from_checkpoint(args.checkpoint, args.device)
    check_explainable(predictor.model)
    if args.index is not None:
        entries = [_explain_index(args, predictor)]
    else:
        entries = _explain_files(args, predictor)
    if args.json:
        print(json.dumps(entries, indent=2))
    failed = [entry for entry in entries if entry["image"] is None]
    for entry in failed:
        problem = entry["error"] or f"nothing to explain in {entry['path']}: {entry['reason']}"
        print(f"digitlab: skipped {problem}", file=sys.stderr)
    return EXIT_ERROR if failed else 0


def _explain_index(args: argparse.Namespace, predictor: Any) -> dict[str, Any]:
    from digitlab.data import to_float
    from digitlab.explain import explain_view

    image, label = options.test_image(args)
    explanation = explain_view(predictor, to_float(image[None])[0])
    name = f"test #{args.index} (true {label})"
    image = _write_explanation(explanation, name, args.out / f"test-{args.index:05d}.png")
    _say_explained(args, image, explanation)
    return {"index": args.index, "label": label, "image": str(image)} | explanation.summary()


def _explain_files(args: argparse.Namespace, predictor: Any) -> list[dict[str, Any]]:
    from digitlab.explain import explain_paths
    from digitlab.files import expand_paths

    entries = []
    for i, item in enumerate(explain_paths(predictor, expand_paths(args.paths))):
        entry = {
            "path": str(item.path),
            "image": None,
            "reason": item.result.reason,
            "error": item.result.error,
        }
        if item.explanation is None:
            entries.append(entry)
            continue
        name = f"{i:04d}-{item.path.stem}.png"  # numbered: two inputs may share a file name
        image = _write_explanation(item.explanation, item.path.name, args.out / name)
        _say_explained(args, image, item.explanation)
        entries.append(entry | {"image": str(image)} | item.explanation.summary())
    return entries


def _write_explanation(explanation: Any, name: str, path: Path) -> Path:
    from digitlab.plots import plot_heat_maps

    answer, runner_up = explanation.answer, explanation.runner_up
    maps = [
        (f"for {answer.digit} ({answer.probability:.1%})", answer.map),
        (f"for {runner_up.digit}, runner-up ({runner_up.probability:.1%})", runner_up.map),
    ]
    return plot_heat_maps(explanation.view, maps, f"{name}: predicted {answer.digit}", path)


def _say_explained(args: argparse.Namespace, image: Path, explanation: Any) -> None:
    if args.json:
        return
    answer, runner_up = explanation.answer, explanation.runner_up
    print(
        f"wrote {image}: {answer.digit} ({answer.probability:.1%}), "
        f"runner-up {runner_up.digit} ({runner_up.probability:.1%})"
    )
