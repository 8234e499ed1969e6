"""`digitlab evaluate`: score a run or checkpoint on the MNIST test set."""

import argparse
import json
from pathlib import Path
from typing import Any

from digitlab.cli import options


def register(subparsers: Any) -> argparse.ArgumentParser:
    parser = options.add_command(
        subparsers, "evaluate", "score a trained model on the MNIST test set"
    )
    parser.add_argument(
        "checkpoint",
        nargs="?",
        type=Path,
        metavar="RUN_DIR|CHECKPOINT",
        help=options.DEFAULT_CHECKPOINT_HELP,
    )
    options.add_device(parser)
    options.add_json(
        parser,
        "accuracy, loss, per-class metrics, confusion matrix, misclassified, calibration "
        "(ECE and NLL before/after the temperature) and rejection ('not a digit')",
    )
    options.add_data_dir(parser)
    return parser


def run(args: argparse.Namespace) -> int:
    from digitlab.calibrate import evaluate_checkpoint
    from digitlab.checkpoint import read_model_file
    from digitlab.data import load_mnist
    from digitlab.device import select_device
    from digitlab.errors import ConfigError
    from digitlab.models import task_of
    from digitlab.report import write_run_report
    from digitlab.runs import resolve_checkpoint

    path = resolve_checkpoint(args.checkpoint)
    model = read_model_file(path)[1]["model"]
    if task_of(model) != "digits":
        raise ConfigError(
            f"{path} is a number reader ({model}); `digitlab evaluate` scores digit "
            "classifiers on the MNIST test set (bench/read_numbers.py scores readers)"
        )
    mnist = load_mnist(args.data_dir)
    device = select_device(args.device)
    if args.checkpoint.is_dir():  # a run folder: refresh its metrics, plots and report too
        result = write_run_report(args.checkpoint, mnist, device=device)
    else:
        result, _, _ = evaluate_checkpoint(path, mnist, device=device)
    if args.json:
        print(json.dumps(result.to_dict()))
        return 0
    print(f"accuracy {result.accuracy:.2%}  loss {result.loss:.4f}  ({path})")
    print("digit  precision  recall     f1  support")
    for row in result.per_class():
        print(
            f"{row['digit']:5}  {row['precision']:9.2%}  {row['recall']:6.2%}  "
            f"{row['f1']:5.2%}  {row['support']:7}"
        )
    shown = result.misclassified[:20]
    more = len(result.misclassified) - len(shown)
    print(
        f"misclassified ({len(result.misclassified)}): {shown}"
        + (f" … and {more} more" if more else "")
    )
    _print_trust(result.calibration, result.rejection)
    return 0


def _print_trust(calibration: dict[str, Any] | None, rejection: dict[str, Any] | None) -> None:
    if calibration:
        temperature = calibration["temperature"]
        print(
            f"calibration: ECE {calibration['ece_uncalibrated']:.2%} → {calibration['ece']:.2%}, "
            f"NLL {calibration['nll_uncalibrated']:.4f} → {calibration['nll']:.4f} "
            + (f"(T = {temperature:.3f})" if temperature else f"({calibration.get('missing')})")
        )
    if rejection and rejection.get("threshold") is not None:
        print(
            f"not a digit: AUROC {rejection['auroc']:.4f}, FPR at 95% TPR "
            f"{rejection['fpr_at_95_tpr']:.2%}; rejects {rejection['digits_rejected']:.2%} of "
            f"test digits, {rejection['nondigits_rejected']:.2%} of generated non-digits"
        )
