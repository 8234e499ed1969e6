"""The `digitlab` command: parse flags, call the workflows, print the results.

This is the only module that reads arguments, prints or exits. Every error a user can cause
arrives here as a `DigitlabError` and leaves as one line on stderr with a non-zero exit code.

    digitlab data download           # fetch MNIST (or set DIGITLAB_DATA to a folder that has it)
    digitlab train --recipe default  # train, evaluate, write runs/<recipe>-<time>/
    digitlab evaluate runs/default-20261129-101500
    digitlab predict --index 100     # with the newest run
    digitlab read meter.jpg          # the number in a photo, e.g. 2026
"""

import argparse
import functools
import json
import sys
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any, NoReturn

from digitlab import __version__
from digitlab.errors import DigitlabError

EXIT_ERROR, EXIT_USAGE, EXIT_INTERRUPTED = 1, 2, 130
_DEFAULT_CHECKPOINT_HELP = "default: the newest run in ./runs, else the packaged model"


class _Parser(argparse.ArgumentParser):
    """argparse, but a bad flag is one line on stderr rather than the whole usage text."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


class _HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Show a flag's default only when it has a meaningful one."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        if action.default in (None, False, argparse.SUPPRESS):
            return action.help
        return super()._get_help_string(action)


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a whole number of at least 1, not {text}")
    return value


def _positive_float(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be a number above 0, not {text}")
    return value


def _whole_number(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be a whole number of at least 0, not {text}")
    return value


_positive_int.__name__ = "positive integer"  # argparse names the type in its messages
_whole_number.__name__ = "whole number"
_positive_float.__name__ = "positive number"


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        _choose_default_checkpoint(args)
        return int(args.handler(args) or 0)
    except DigitlabError as err:
        from digitlab.distributed import is_main_process
        from digitlab.train import TrainingInterrupted

        interrupted = isinstance(err, TrainingInterrupted)
        if is_main_process() or not interrupted:  # under torchrun, say it once
            print(f"digitlab: {err}", file=sys.stderr)
        return EXIT_INTERRUPTED if interrupted else EXIT_ERROR
    except KeyboardInterrupt:
        print("digitlab: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED


def _choose_default_checkpoint(args: argparse.Namespace) -> None:
    """Every command that takes a checkpoint and was given none (predict, read, explain,
    evaluate, serve, ...) uses the newest run under ./runs, else the packaged model; the choice
    is made here, once for all of them, and said in one line on stderr."""
    if getattr(args, "checkpoint", True) is not None:  # no such option, or one was given
        return
    from digitlab.checkpoint import read_model_file
    from digitlab.runs import default_checkpoint, is_packaged

    args.checkpoint = default_checkpoint()
    if is_packaged(args.checkpoint):
        _, metadata = read_model_file(args.checkpoint)
        accuracy = metadata.get("metrics", {}).get("test_accuracy")
        scored = f", {accuracy:.2%} on the MNIST test set" if accuracy is not None else ""
        print(
            f"digitlab: using the packaged model ({metadata['model']}{scored}); "
            "no run in ./runs — train your own with `digitlab train`",
            file=sys.stderr,
        )
    else:
        print(
            f"digitlab: using the newest run, {args.checkpoint.parent} "
            "(--checkpoint RUN_DIR to choose another)",
            file=sys.stderr,
        )


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="digitlab",
        description="Train, evaluate and use handwritten-digit recognizers (MNIST).",
        formatter_class=_HelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"digitlab {__version__}")
    commands = parser.add_subparsers(title="commands", required=True, metavar="COMMAND")
    for add_command in (
        _add_data,
        _add_train,
        _add_evaluate,
        _add_predict,
        _add_read,
        _add_explain,
        _add_serve,
        _add_export,
        _add_models,
        _add_recipes,
    ):
        add_command(commands)
    return parser


def _command(
    commands: Any, name: str, handler: Callable[[argparse.Namespace], int | None], help: str
) -> argparse.ArgumentParser:
    sub = commands.add_parser(
        name,
        help=help,
        description=help,
        formatter_class=_HelpFormatter,
    )
    sub.set_defaults(handler=handler)
    return sub


def _add_data_dir(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--data-dir",
        type=Path,
        help="folder with the MNIST files (default: $DIGITLAB_DATA, else ~/.cache/digitlab/mnist)",
    )


def _add_runtime(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--runtime",
        default="torch",
        choices=["torch", "onnx"],
        help="run the model with PyTorch, or export it to ONNX and run it with ONNX Runtime",
    )


def _add_rejection(parser: argparse.ArgumentParser) -> None:
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


def _rejection_options(args: argparse.Namespace) -> dict[str, Any]:
    from digitlab.errors import ConfigError

    if args.no_reject and args.reject_threshold is not None:
        raise ConfigError("give --reject-threshold or --no-reject, not both")
    return {"reject": not args.no_reject, "reject_threshold": args.reject_threshold}


def _note_missing(predictor: Any) -> None:
    """One line on stderr per thing an older checkpoint lacks (stdout stays clean for --json)."""
    for reason in predictor.missing:
        print(f"digitlab: note: {reason}", file=sys.stderr)


def _add_json(parser: argparse.ArgumentParser, what: str) -> None:
    parser.add_argument("--json", action="store_true", help=f"print {what} as JSON on stdout")


# ---------------------------------------------------------------------------------------- data


def _add_data(commands: Any) -> None:
    data = _command(commands, "data", _run_data, "download, verify or describe the MNIST files")
    data.add_argument("action", choices=["download", "verify", "info"])
    _add_data_dir(data)


def _run_data(args: argparse.Namespace) -> int:
    from digitlab import data

    root = data.resolve_data_dir(args.data_dir)
    if args.action == "download":
        fetched = data.download_mnist(root, on_progress=_download_bar())
        print(
            f"downloaded {len(fetched)} file(s) to {root}" if fetched else f"all present in {root}"
        )
    statuses = data.verify_mnist(root)
    print(f"MNIST folder: {root}")
    for status in statuses:
        where = f"  ({status.path})" if status.path else ""
        print(f"  {status.spec.name:26} {status.problem or 'ok'}{where}")
    if any(s.problem for s in statuses):
        print(
            "digitlab: some MNIST files are missing or damaged; run `digitlab data download`, "
            f"or point {data.ENV_VAR} or --data-dir at a folder that has them",
            file=sys.stderr,
        )
        return EXIT_ERROR
    if args.action == "info":
        mnist = data.load_mnist(root)
        for split, labels in (("train", mnist.train_labels), ("test", mnist.test_labels)):
            counts = " ".join(f"{d}:{n}" for d, n in enumerate(data.class_counts(labels)))
            print(f"{split:5} {len(labels):6} images  {counts}")
    return 0


def _download_bar() -> Callable[[str, int, int | None], None]:
    """An `on_progress` callback that draws one tqdm bar per file."""
    from tqdm import tqdm

    bars: dict[str, tqdm] = {}

    def update(name: str, done: int, total: int | None) -> None:
        bar = bars.get(name)
        if bar is None:
            bar = bars[name] = tqdm(total=total, desc=name, unit="B", unit_scale=True, leave=True)
        bar.update(done - bar.n)
        if total is not None and done >= total:
            bar.close()

    return update


# --------------------------------------------------------------------------------------- train


def _add_train(commands: Any) -> None:
    from digitlab.config import OPTIMIZERS, RECIPES, SCHEDULES

    train = _command(
        commands, "train", _run_train, "train a model, evaluate it and write a run folder"
    )
    train.add_argument(
        "--recipe", default="default", choices=list(RECIPES), help="named set of settings"
    )
    overrides = train.add_argument_group("recipe overrides (default: the recipe's value)")
    overrides.add_argument("--model", help="network from the registry (see `digitlab models`)")
    overrides.add_argument("--epochs", type=_positive_int)
    overrides.add_argument("--batch-size", type=_positive_int)
    overrides.add_argument("--lr", type=_positive_float, help="(peak) learning rate")
    overrides.add_argument("--optimizer", choices=OPTIMIZERS)
    overrides.add_argument("--schedule", choices=SCHEDULES)
    overrides.add_argument("--weight-decay", type=float)
    overrides.add_argument("--label-smoothing", type=float)
    overrides.add_argument("--rotation", type=float, help="augment: max rotation in degrees")
    overrides.add_argument("--scale", type=float, help="augment: max zoom, e.g. 0.1 for ±10%%")
    overrides.add_argument("--translate", type=float, help="augment: max shift, fraction of 28")
    overrides.add_argument("--ema", type=float, help="moving average of weights, e.g. 0.999")
    overrides.add_argument(
        "--members", type=_positive_int, metavar="N", help="train N models with seeds "
        "seed..seed+N-1 and average their probabilities",
    )  # fmt: skip
    overrides.add_argument("--seed", type=int)
    overrides.add_argument("--subset", type=_positive_int, help="train on the first N images only")
    overrides.add_argument(
        "--validation",
        type=int,
        metavar="N",
        help="hold out N training images as a validation set, scored every epoch",
    )
    overrides.add_argument("--threads", type=_positive_int, help="CPU threads for torch")
    overrides.add_argument("--device", help="auto, cpu or cuda[:N]")
    overrides.add_argument(
        "--checkpoint-every",
        type=float,
        metavar="MINUTES",
        help="save the training state this often inside an epoch too (0: at epoch ends only)",
    )
    train.add_argument("--out", type=Path, help="run folder (default: runs/<recipe>-<timestamp>)")
    train.add_argument("--resume", type=Path, metavar="RUN_DIR", help="continue an interrupted run")
    train.add_argument("--quiet", action="store_true", help="no progress bar or epoch table")
    _add_json(train, "the final result")
    _add_data_dir(train)


_OVERRIDES = (
    "model",
    "epochs",
    "batch_size",
    "lr",
    "optimizer",
    "schedule",
    "weight_decay",
    "label_smoothing",
    "rotation",
    "scale",
    "translate",
    "ema",
    "members",
    "seed",
    "subset",
    "validation",
    "threads",
    "device",
    "checkpoint_every",
)


def _run_train(args: argparse.Namespace) -> int:
    from digitlab import distributed
    from digitlab.config import make_config
    from digitlab.errors import ConfigError
    from digitlab.train import load_run_config

    overrides = {name: getattr(args, name) for name in _OVERRIDES}
    if args.resume is not None:
        if any(v is not None for v in overrides.values()) or args.out is not None:
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
    from digitlab.train import train

    run_dir = args.resume or distributed.broadcast_from_main(
        args.out or new_run_dir(config.recipe)  # rank 0's choice: the names hold a time
    )
    verbose = not (args.quiet or args.json) and session.is_main
    if not session.is_main:
        distributed.barrier()  # let rank 0 download MNIST if it is missing, then read it
    mnist = load_mnist(
        args.data_dir, download=True, on_progress=_download_bar() if verbose else None
    )
    if session.is_main:
        distributed.barrier()
    if verbose:
        what = model_label(config.model, config.members)
        processes = f" on {session.world_size} processes" if session.is_distributed else ""
        print(f"training {what} with recipe {config.recipe!r}{processes} → {run_dir}")
    resume = args.resume is not None
    with _TrainingDisplay(verbose, validation=config.validation > 0) as display:
        say_resumed = _say_resumed if session.is_main else None
        result = train(
            config, mnist, run_dir, resume=resume, on_resume=say_resumed, **display.callbacks()
        )
    if not session.is_main:
        distributed.barrier()  # wait for rank 0's report
        return 0
    evaluation = write_run_report(run_dir, mnist)
    distributed.barrier()
    summary = result.to_dict() | {
        "test_accuracy": evaluation.accuracy,
        "test_loss": evaluation.loss,
        "world_size": session.world_size,
    }
    if args.json:
        print(json.dumps(summary))
    elif not args.quiet:
        averaged = f", {config.members} models averaged" if config.members > 1 else ""
        print(
            f"test accuracy {evaluation.accuracy:.2%} after {summary['epochs']} epochs"
            f"{averaged}, in {summary['wall_seconds']:.1f} s; report: {run_dir / 'report.md'}"
        )
        print(_next_commands(run_dir))
    return 0


def _say_resumed(resumed: Any) -> None:
    print(f"digitlab: {resumed}", file=sys.stderr)  # e.g. "resuming runs/x after epoch 2"


def _next_commands(run_dir: Path) -> str:
    """What to try with a model just trained (`make run` ends with this)."""
    from digitlab.runs import RunPaths, default_checkpoint

    is_default = default_checkpoint().resolve() == RunPaths(run_dir).model.resolve()
    checkpoint = "" if is_default else f" --checkpoint {run_dir}"
    commands = [
        (f"digitlab predict --index 100{checkpoint}", "a test digit, drawn in the terminal"),
        (f"digitlab predict my-digit.jpg{checkpoint}", "a photo or scan of your own"),
        (f"digitlab serve{checkpoint}", "the draw-a-digit page on http://127.0.0.1:8000/"),
    ]
    width = max(len(command) for command, _ in commands)
    lines = [f"  {command:{width}}  # {what}" for command, what in commands]
    return "\n".join(["next, try:", *lines])


class _TrainingDisplay:
    """A tqdm bar with the live loss, and one table row per epoch."""

    HEADER = "epoch  train loss  train acc  test loss  test acc  seconds"
    VALIDATION_HEADER = "  val loss  val acc"

    def __init__(self, enabled: bool, validation: bool = False) -> None:
        self.enabled = enabled
        self.validation = validation  # add validation columns
        self.bar: Any = None

    def __enter__(self) -> "_TrainingDisplay":
        if self.enabled:
            print(self.HEADER + (self.VALIDATION_HEADER if self.validation else ""))
        return self

    def __exit__(self, *exc: object) -> None:
        if self.bar is not None:
            self.bar.close()

    def callbacks(self) -> dict[str, Any]:
        if not self.enabled:
            return {}
        return {"on_step": self.on_step, "on_epoch": self.on_epoch, "on_member": self.on_member}

    def on_member(self, index: int, count: int) -> None:
        if self.enabled:
            print(f"member {index} of {count}")

    def on_step(self, progress: Any) -> None:
        from tqdm import tqdm

        if self.bar is None:
            # disable=None: a live bar on a terminal, nothing when stderr is a log file or pipe
            self.bar = tqdm(
                total=progress.steps, leave=False, unit="step", dynamic_ncols=True, disable=None
            )
        self.bar.set_description(f"epoch {progress.epoch}", refresh=False)
        self.bar.update(progress.step - self.bar.n)
        if progress.step % 20 == 0 or progress.step == progress.steps:
            self.bar.set_postfix(loss=f"{progress.loss:.4f}", refresh=False)

    def on_epoch(self, stats: Any) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None
        row = (
            f"{stats.epoch:5d}  {stats.train_loss:10.4f}  {stats.train_accuracy:9.2%}  "
            f"{stats.test_loss:9.4f}  {stats.test_accuracy:8.2%}  {stats.seconds:7.1f}"
        )
        if self.validation:
            row += f"  {stats.val_loss:8.4f}  {stats.val_accuracy:7.2%}"
        print(row)


# ------------------------------------------------------------------------------------ evaluate


def _add_evaluate(commands: Any) -> None:
    evaluate = _command(
        commands, "evaluate", _run_evaluate, "score a trained model on the MNIST test set"
    )
    evaluate.add_argument(
        "checkpoint",
        nargs="?",
        type=Path,
        metavar="RUN_DIR|CHECKPOINT",
        help=_DEFAULT_CHECKPOINT_HELP,
    )
    evaluate.add_argument("--device", default="auto", help="auto, cpu or cuda[:N]")
    _add_json(
        evaluate,
        "accuracy, loss, per-class metrics, confusion matrix, misclassified, calibration "
        "(ECE and NLL before/after the temperature) and rejection ('not a digit')",
    )
    _add_data_dir(evaluate)


def _run_evaluate(args: argparse.Namespace) -> int:
    from digitlab.calibrate import evaluate_checkpoint
    from digitlab.data import load_mnist
    from digitlab.device import select_device
    from digitlab.report import write_run_report
    from digitlab.runs import resolve_checkpoint

    path = resolve_checkpoint(args.checkpoint)
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


# ------------------------------------------------------------------------------------- predict


def _add_predict(commands: Any) -> None:
    predict = _command(
        commands,
        "predict",
        _run_predict,
        "read the digits in image files (photos, scans, drawings) or in the MNIST test set",
    )
    predict.add_argument("paths", nargs="*", metavar="PATH", help="image files, folders or globs")
    predict.add_argument("--index", type=int, help="instead of files: an MNIST test-set index")
    predict.add_argument(
        "--checkpoint", type=Path, metavar="RUN_DIR", help=_DEFAULT_CHECKPOINT_HELP
    )
    predict.add_argument("--device", default="auto", help="auto, cpu or cuda[:N]")
    _add_runtime(predict)
    predict.add_argument("--save", type=Path, metavar="PNG", help="with --index: write the digit")
    predict.add_argument(
        "--show",
        type=Path,
        metavar="DIR",
        help="write each image beside the 28×28 view the model saw",
    )
    _add_rejection(predict)
    predict.add_argument("--csv", action="store_true", help="print the results as CSV")
    _add_json(predict, "the predictions")
    _add_data_dir(predict)
    _add_bulk_reading(predict)


def _add_bulk_reading(
    parser: argparse.ArgumentParser,
    workers: str = "decode and clean images in N parallel processes (the model runs in this one)",
) -> None:
    """Flags for reading large folders (also under torchrun, one shard of the files per rank);
    `workers` says what the worker processes do."""
    bulk = parser.add_argument_group("large folders")
    bulk.add_argument("--workers", type=_positive_int, default=1, metavar="N", help=workers)
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


def _run_predict(args: argparse.Namespace) -> int:
    from digitlab.errors import ConfigError
    from digitlab.predict import Predictor
    from digitlab.runs import resolve_checkpoint

    if (args.index is None) == (not args.paths):
        raise ConfigError(
            "give image paths or --index N (an MNIST test image), not both or neither"
        )
    if args.index is None and args.save is not None:
        raise ConfigError("--save goes with --index; for image files use --show DIR")
    checkpoint = resolve_checkpoint(args.checkpoint)
    predictor = Predictor.from_checkpoint(
        checkpoint, args.device, runtime=args.runtime, **_rejection_options(args)
    )
    _note_missing(predictor)
    if args.index is not None:
        return _predict_index(args, predictor)
    return _predict_files(args, predictor)


def _predict_files(args: argparse.Namespace, predictor: Any) -> int:

    from digitlab.bulk import predict_stream
    from digitlab.predict import expand_paths

    _check_bulk_flags(args)
    paths = expand_paths(args.paths)
    if args.jsonl:
        return _stream_jsonl(args, paths, functools.partial(predict_stream, predictor))
    stream = predict_stream(
        predictor, paths, workers=args.workers, keep_views=args.show is not None
    )
    return _print_file_results(
        args, _collect(args, stream, len(paths)), _write_views, _print_csv, _print_table
    )


def _collect(args: argparse.Namespace, stream: Iterable[Any], total: int) -> list[Any]:
    """Every result of a stream over files, with a progress bar for long runs shown as a table."""
    from tqdm import tqdm

    show_bar = total > 50 and not (args.json or args.csv)
    return list(tqdm(stream, total=total, unit="image", disable=not show_bar, leave=False))


def _print_file_results(
    args: argparse.Namespace,
    results: Sequence[Any],
    draw: Callable[[Sequence[Any], Path], None],
    print_csv: Callable[[Sequence[Any]], None],
    print_table: Callable[[Sequence[Any]], None],
) -> int:
    """What `predict` and `read` do with their results: --show, --json, --csv or a table, and
    one line on stderr per unreadable file (which makes the exit code 1)."""
    if args.show is not None:
        draw(results, args.show)
    if args.json:
        print(json.dumps([r.to_dict() for r in results], indent=2))
    elif args.csv:
        print_csv(results)
    else:
        print_table(results)
    failed = [r for r in results if r.error]
    for result in failed:
        print(f"digitlab: skipped {result.error}", file=sys.stderr)
    return EXIT_ERROR if failed else 0


def _check_bulk_flags(args: argparse.Namespace) -> None:
    from digitlab.errors import ConfigError

    if (args.out is not None or args.skip_done is not None) and not args.jsonl:
        raise ConfigError("--out and --skip-done go with --jsonl")
    if args.jsonl and (args.json or args.csv or args.show is not None):
        raise ConfigError("--jsonl streams its own output; drop --json, --csv and --show")


def _stream_jsonl(
    args: argparse.Namespace, paths: list[Path], stream: Callable[..., Iterable[Any]]
) -> int:
    """Stream JSON lines to stdout or --out; under torchrun each rank reads its shard.
    `stream(paths, workers=N)` yields one result (with `to_dict` and `error`) per path."""
    from contextlib import nullcontext

    from digitlab import distributed
    from digitlab.bulk import done_paths, drop_partial_last_line, jsonl_line, merge_parts, part_path
    from digitlab.errors import ConfigError

    if args.skip_done is not None:
        done = done_paths(args.skip_done)
        paths = [path for path in paths if str(path) not in done]
    append = (
        args.skip_done is not None
        and args.out is not None
        and (args.skip_done.resolve() == args.out.resolve())
    )
    with distributed.launched("cpu") as session:
        if session.is_distributed and args.out is None:
            raise ConfigError("under torchrun, --jsonl needs --out FILE (rank 0 joins the parts)")
        target = part_path(args.out, session.rank) if session.is_distributed else args.out
        mode = "a" if append and not session.is_distributed else "w"
        if mode == "a":
            drop_partial_last_line(args.out)
        failed = 0
        with open(target, mode) if target is not None else nullcontext(sys.stdout) as out:
            for result in stream(distributed.shard(paths, session), workers=args.workers):
                out.write(jsonl_line(result))
                failed += result.error is not None
        if session.is_distributed:
            import torch

            failed = int(distributed.all_reduce_sum(torch.tensor([failed])).item())  # and wait
            if session.is_main:
                merge_parts(args.out, session.world_size, append=append)
            distributed.barrier()  # no rank exits (which ends the others) before the join
    if failed and session.is_main:
        print(f'digitlab: {failed} file(s) could not be read (see their "error")', file=sys.stderr)
    return EXIT_ERROR if failed else 0


def _print_table(results: Sequence[Any]) -> None:
    width = max([len("file"), *(len(str(r.path)) for r in results)])
    print(f"{'file':{width}}  digit  confidence  top 3")
    for r in results:
        if r.prediction is None or r.prediction.digit is None:
            reason = r.reason or (r.prediction.reason if r.prediction else None)
            print(f"{str(r.path):{width}}  {'-':>5}  {'':>10}  {reason or 'unreadable'}")
            continue
        digit, probability = r.prediction.digit, r.prediction.probability
        top3 = ", ".join(f"{d} {p:.1%}" for d, p in r.prediction.top3)
        print(f"{str(r.path):{width}}  {digit:5}  {probability:10.1%}  {top3}")


def _print_csv(results: Sequence[Any]) -> None:
    import csv

    writer = csv.writer(sys.stdout)
    writer.writerow(["path", "digit", "probability", "top3", "reason", "error"])
    for r in results:
        row = r.to_dict()
        top3 = " ".join(f"{t['digit']}:{t['probability']:.4f}" for t in row["top3"])
        writer.writerow(
            [row["path"], row["digit"], row["probability"], top3, row["reason"], row["error"]]
        )


def _write_views(results: Sequence[Any], folder: Path) -> None:
    from digitlab.images import open_image
    from digitlab.plots import plot_original_and_view

    for i, r in enumerate(results):
        if r.error:
            continue
        said = f"predicted {r.prediction.digit}" if r.prediction else "no digit found"
        if r.prediction and r.prediction.digit is None:
            said = r.prediction.reason
        name = f"{i:04d}-{r.path.stem}.png"  # numbered: two inputs may share a file name
        plot_original_and_view(open_image(r.path), r.view, f"{r.path.name}: {said}", folder / name)


def _predict_index(args: argparse.Namespace, predictor: Any) -> int:
    from digitlab.data import load_mnist, to_float
    from digitlab.errors import ConfigError

    mnist = load_mnist(args.data_dir)
    count = len(mnist.test_images)
    if not 0 <= args.index < count:
        raise ConfigError(f"--index must be between 0 and {count - 1}, not {args.index}")
    image, label = mnist.test_images[args.index], int(mnist.test_labels[args.index])
    prediction = predictor.predict_tensor(to_float(image[None]))[0]
    if args.save is not None:
        from digitlab.plots import plot_digit

        plot_digit(
            image, f"test #{args.index}: predicted {prediction.digit}, true {label}", args.save
        )
    if args.json:
        print(json.dumps({"index": args.index, "label": label} | prediction.to_dict()))
        return 0
    print(draw_digit(image))
    top3 = ", ".join(f"{d} {p:.1%}" for d, p in prediction.top3)
    if prediction.digit is None:
        print(f"test image {args.index}: {prediction.reason}; true {label}")
    else:
        print(f"test image {args.index}: predicted {prediction.digit} ", end="")
        print(f"({prediction.probability:.1%}); true {label}")
    print(f"top 3: {top3}")
    return 0


def draw_digit(image: Any) -> str:
    """A 28×28 uint8 digit as text, two characters per pixel, darker glyphs for brighter ink."""
    shades = " .:-=+*#%@"
    rows = []
    for row in image.tolist():
        rows.append("".join(shades[value * (len(shades) - 1) // 255] * 2 for value in row))
    return "\n".join(rows)


# ---------------------------------------------------------------------------------------- read


def _add_read(commands: Any) -> None:
    read = _command(
        commands,
        "read",
        _run_read,
        "read the numbers in image files: every digit, left to right (a meter, a form field, "
        "a handwritten amount)",
    )
    read.add_argument("paths", nargs="+", metavar="PATH", help="image files, folders or globs")
    read.add_argument("--checkpoint", type=Path, metavar="RUN_DIR", help=_DEFAULT_CHECKPOINT_HELP)
    read.add_argument("--device", default="auto", help="auto, cpu or cuda[:N]")
    _add_runtime(read)
    _add_rejection(read)
    output = read.add_mutually_exclusive_group()
    output.add_argument(
        "--json",
        action="store_true",
        help="print a JSON list, one object per file: path, text, digits (digit, "
        "probability, box [x, y, w, h]), confidence, reason, error",
    )
    output.add_argument(
        "--csv",
        action="store_true",
        help="print one CSV row per file: path, text, confidence, digits (digit:probability "
        "...), boxes (x y w h;...), reason, error",
    )
    read.add_argument(
        "--show",
        type=Path,
        metavar="DIR",
        help="write each image to DIR with the digits' boxes and probabilities drawn on it",
    )
    _add_bulk_reading(
        read,
        workers="open, clean and cut the numbers into digits in N parallel processes, each "
        "with a CPU copy of the model to score the cuts (the digits are read in this one)",
    )


def _run_read(args: argparse.Namespace) -> int:

    from digitlab.bulk import read_stream
    from digitlab.errors import ConfigError
    from digitlab.predict import Predictor, expand_paths
    from digitlab.runs import resolve_checkpoint

    _check_bulk_flags(args)
    paths = expand_paths(args.paths)
    if not paths:
        raise ConfigError(f"no image files in {' '.join(args.paths)}")
    checkpoint = resolve_checkpoint(args.checkpoint)
    predictor = Predictor.from_checkpoint(
        checkpoint, args.device, runtime=args.runtime, **_rejection_options(args)
    )
    _note_missing(predictor)
    if args.jsonl:
        return _stream_jsonl(args, paths, functools.partial(read_stream, predictor))
    stream = read_stream(predictor, paths, workers=args.workers)
    return _print_file_results(
        args, _collect(args, stream, len(paths)), _draw_readings, _print_readings_csv,
        _print_readings,
    )  # fmt: skip


def _digits_text(reading: Any, separator: str, probability: str) -> str:
    """Each digit with its probability, e.g. "2 99.1%, 0 97.3%" ("?" for not a digit)."""
    return separator.join(
        f"{'?' if d.digit is None else d.digit}{probability.format(d.probability)}"
        for d in reading.digits
    )


def _print_readings(readings: Sequence[Any]) -> None:
    file_width = max([len("file"), *(len(str(r.path)) for r in readings)])
    text_width = max([len("text"), *(len(r.text or "-") for r in readings)])
    print(f"{'file':{file_width}}  {'text':{text_width}}  confidence  digits")
    for r in readings:
        if r.text is None:
            why = r.error or r.reason or "no digits found"
            print(f"{str(r.path):{file_width}}  {'-':{text_width}}  {'':>10}  {why}")
            continue
        digits = _digits_text(r, ", ", " {:.1%}")
        print(f"{str(r.path):{file_width}}  {r.text:{text_width}}  {r.confidence:10.1%}  {digits}")


def _print_readings_csv(readings: Sequence[Any]) -> None:
    import csv

    writer = csv.writer(sys.stdout)
    writer.writerow(["path", "text", "confidence", "digits", "boxes", "reason", "error"])
    for r in readings:
        boxes = ";".join(" ".join(map(str, d.box)) for d in r.digits)  # "x y w h;x y w h"
        digits = _digits_text(r, " ", ":{:.4f}")
        writer.writerow([r.path, r.text, r.confidence, digits, boxes, r.reason, r.error])


def _draw_readings(readings: Sequence[Any], folder: Path) -> None:
    from digitlab.images import open_image
    from digitlab.plots import plot_reading

    for i, r in enumerate(readings):
        if r.error:
            continue
        said = f"read {r.text}" if r.text is not None else "no digits found"
        name = f"{i:04d}-{r.path.stem}.png"  # numbered: two inputs may share a file name
        plot_reading(open_image(r.path), r.digits, f"{r.path.name}: {said}", folder / name)


# ------------------------------------------------------------------------------------- explain


def _add_explain(commands: Any) -> None:
    explain = _command(
        commands,
        "explain",
        _run_explain,
        "show which pixels drove the answer and the runner-up (Integrated Gradients heat maps)",
    )
    explain.add_argument("paths", nargs="*", metavar="PATH", help="image files, folders or globs")
    explain.add_argument("--index", type=int, help="instead of files: an MNIST test-set index")
    explain.add_argument(
        "--checkpoint", type=Path, metavar="RUN_DIR", help=_DEFAULT_CHECKPOINT_HELP
    )
    explain.add_argument(
        "--out", type=Path, required=True, metavar="DIR", help="folder for the PNG heat maps"
    )
    explain.add_argument("--device", default="auto", help="auto, cpu or cuda[:N]")
    _add_json(explain, "what was written, the answer, the runner-up and each map's numbers")
    _add_data_dir(explain)


def _run_explain(args: argparse.Namespace) -> int:
    from digitlab.errors import ConfigError
    from digitlab.explain import check_explainable
    from digitlab.predict import Predictor
    from digitlab.runs import resolve_checkpoint

    if (args.index is None) == (not args.paths):
        raise ConfigError(
            "give image paths or --index N (an MNIST test image), not both or neither"
        )
    predictor = Predictor.from_checkpoint(resolve_checkpoint(args.checkpoint), args.device)
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
    from digitlab.data import load_mnist, to_float
    from digitlab.errors import ConfigError
    from digitlab.explain import explain_view

    mnist = load_mnist(args.data_dir)
    count = len(mnist.test_images)
    if not 0 <= args.index < count:
        raise ConfigError(f"--index must be between 0 and {count - 1}, not {args.index}")
    label = int(mnist.test_labels[args.index])
    explanation = explain_view(predictor, to_float(mnist.test_images[args.index][None])[0])
    name = f"test #{args.index} (true {label})"
    image = _write_explanation(explanation, name, args.out / f"test-{args.index:05d}.png")
    _say_explained(args, image, explanation)
    return {"index": args.index, "label": label, "image": str(image)} | explanation.summary()


def _explain_files(args: argparse.Namespace, predictor: Any) -> list[dict[str, Any]]:
    from digitlab.explain import explain_paths
    from digitlab.predict import expand_paths

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


# --------------------------------------------------------------------------------------- serve


def _add_serve(commands: Any) -> None:
    serve = _command(
        commands, "serve", _run_serve, "serve the REST API and the draw-a-digit web page"
    )
    serve.add_argument("--checkpoint", type=Path, metavar="RUN_DIR", help=_DEFAULT_CHECKPOINT_HELP)
    serve.add_argument(
        "--host", default="127.0.0.1", help="0.0.0.0 makes it reachable from other machines"
    )
    serve.add_argument("--port", type=_port, default=8000, help="TCP port")
    serve.add_argument("--device", default="auto", help="auto, cpu or cuda[:N]")
    serve.add_argument(
        "--workers", type=_whole_number, metavar="N",
        help="decode and clean uploaded images in N processes beside the server's, which "
        "answers the requests and runs the model; 0 cleans them in threads of the server "
        "process (default: one per CPU core, at most 4; 0 on a single core)",
    )  # fmt: skip
    _add_runtime(serve)
    _add_rejection(serve)


def _port(text: str) -> int:
    value = int(text)
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"must be between 0 and 65535, not {text}")
    return value


def _run_serve(args: argparse.Namespace) -> int:
    # Importing digitlab.serve names the extra to install when fastapi or uvicorn is missing.
    from digitlab.serve import create_app
    from digitlab.serve.cleaning import default_workers

    workers = default_workers() if args.workers is None else args.workers
    app = create_app(
        args.checkpoint,
        device=args.device,
        runtime=args.runtime,
        workers=workers,
        **_rejection_options(args),
    )  # fails here on a bad checkpoint
    import uvicorn

    print(f"digitlab: serving on http://{args.host}:{args.port}/ (Ctrl-C stops)", file=sys.stderr)
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning")
    return 0


# -------------------------------------------------------------------------------------- export


def _add_export(commands: Any) -> None:
    export = _command(
        commands,
        "export",
        _run_export,
        "export a trained model to ONNX or TorchScript, checked against PyTorch",
    )
    export.add_argument("checkpoint", type=Path, metavar="RUN_DIR|CHECKPOINT")
    export.add_argument("--format", required=True, choices=["onnx", "torchscript"])
    export.add_argument("--out", type=Path, required=True, metavar="FILE")


def _run_export(args: argparse.Namespace) -> int:
    from digitlab.export import export_checkpoint
    from digitlab.runs import resolve_checkpoint

    path = export_checkpoint(resolve_checkpoint(args.checkpoint), args.out, args.format)
    print(
        f"wrote {path}: input 'pixels' float32 [N,1,28,28] in [0,1], "
        "output 'log_probs' [N,10]; matches PyTorch within 1e-4"
    )
    return 0


# ------------------------------------------------------------------------------ models/recipes


def _add_models(commands: Any) -> None:
    _command(commands, "models", _run_models, "list the models in the registry")


def _run_models(args: argparse.Namespace) -> int:
    from digitlab.models import count_parameters, create_model, describe_model, list_models

    for name in list_models():
        parameters = count_parameters(create_model(name))
        print(f"{name:12} {parameters:>10,} parameters  {describe_model(name)}")
    return 0


def _add_recipes(commands: Any) -> None:
    _command(commands, "recipes", _run_recipes, "list the training recipes")


def _run_recipes(args: argparse.Namespace) -> int:
    from digitlab.config import RECIPE_NOTES, RECIPES

    for name, config in RECIPES.items():
        print(f"{name:10} {config.model:12} {config.epochs:3} epochs  {RECIPE_NOTES[name]}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
