"""What the commands print and draw: tables, CSV, digits in the terminal, progress bars, --show.

Results arrive as the library's objects (`FileResult`, `Reading`, `EpochStats`, ...); nothing
here computes anything a Python user would need.
"""

import argparse
import csv
import json
import sys
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

from digitlab.cli.options import EXIT_ERROR


def note_missing(predictor: Any) -> None:
    """One line on stderr per thing an older checkpoint lacks (stdout stays clean for --json)."""
    for reason in predictor.missing:
        print(f"digitlab: note: {reason}", file=sys.stderr)


def draw_digit(image: Any) -> str:
    """A 28×28 uint8 digit as text, two characters per pixel, darker glyphs for brighter ink."""
    shades = " .:-=+*#%@"
    rows = []
    for row in image.tolist():
        rows.append("".join(shades[value * (len(shades) - 1) // 255] * 2 for value in row))
    return "\n".join(rows)


# ----------------------------------------------------------------------------- progress bars


def download_bar() -> Callable[[str, int, int | None], None]:
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


class TrainingDisplay:
    """A tqdm bar with the live loss, and one table row per epoch."""

    HEADER = "epoch  train loss  train acc  test loss  test acc  seconds"
    VALIDATION_HEADER = "  val loss  val acc"

    def __init__(self, enabled: bool, validation: bool = False) -> None:
        self.enabled = enabled
        self.validation = validation  # add validation columns
        self.bar: Any = None

    def __enter__(self) -> "TrainingDisplay":
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


# ---------------------------------------------------------------- results of predict and read


def collect(args: argparse.Namespace, stream: Iterable[Any], total: int) -> list[Any]:
    """Every result of a stream over files, with a progress bar for long runs shown as a table."""
    from tqdm import tqdm

    show_bar = total > 50 and not (args.json or args.csv)
    return list(tqdm(stream, total=total, unit="image", disable=not show_bar, leave=False))


def print_file_results(
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


def write_jsonl(args: argparse.Namespace, paths: list[Path], stream: Any) -> int:
    """--jsonl for `predict` and `read`: lines to stdout or --out (digitlab.jsonl), then one
    line on stderr if some files could not be read (under torchrun, from rank 0 only)."""
    from digitlab import jsonl
    from digitlab.distributed import is_main_process

    out = args.out if args.out is not None else sys.stdout
    failed = jsonl.write_jsonl(
        paths, stream, out=out, skip_done=args.skip_done, workers=args.workers
    )
    if failed and is_main_process():
        print(f'digitlab: {failed} file(s) could not be read (see their "error")', file=sys.stderr)
    return EXIT_ERROR if failed else 0


def print_predictions(results: Sequence[Any]) -> None:
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


def print_predictions_csv(results: Sequence[Any]) -> None:
    writer = csv.writer(sys.stdout)
    writer.writerow(["path", "digit", "probability", "top3", "reason", "error"])
    for r in results:
        row = r.to_dict()
        top3 = " ".join(f"{t['digit']}:{t['probability']:.4f}" for t in row["top3"])
        writer.writerow(
            [row["path"], row["digit"], row["probability"], top3, row["reason"], row["error"]]
        )


def draw_predictions(results: Sequence[Any], folder: Path) -> None:
    """--show: each image beside the 28×28 view the model saw, one PNG per file."""
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


LINE_BREAK = " / "  # how a reading's lines are shown on one row (the table, CSV)


def _one_row(text: str | None) -> str:
    """A reading's text on one row: its lines joined by LINE_BREAK."""
    return "-" if text is None else text.replace("\n", LINE_BREAK)


def _digits_text(reading: Any, separator: str, probability: str) -> str:
    """Each digit with its probability, number by number, e.g. "2 99.1%, 0 97.3% | 7 98.0%"."""
    return " | ".join(
        separator.join(f"{d.digit}{probability.format(d.probability)}" for d in number.digits)
        for number in reading.numbers
    )


def print_readings(readings: Sequence[Any]) -> None:
    file_width = max([len("file"), *(len(str(r.path)) for r in readings)])
    text_width = max([len("text"), *(len(_one_row(r.text)) for r in readings)])
    print(f"{'file':{file_width}}  {'text':{text_width}}  confidence  digits")
    for r in readings:
        if r.text is None:
            why = r.error or r.reason or "no number found"
            print(f"{str(r.path):{file_width}}  {'-':{text_width}}  {'':>10}  {why}")
            continue
        digits = _digits_text(r, ", ", " {:.1%}")
        text = _one_row(r.text)
        print(f"{str(r.path):{file_width}}  {text:{text_width}}  {r.confidence:10.1%}  {digits}")


def print_readings_csv(readings: Sequence[Any]) -> None:
    """One row per file; the text's lines joined by LINE_BREAK, so that every row is one line."""
    writer = csv.writer(sys.stdout)
    writer.writerow(
        ["path", "text", "confidence", "numbers", "number_boxes", "digits", "boxes", "reason",
         "error"]
    )  # fmt: skip
    for r in readings:
        numbers = " ".join(f"{n.text}:{n.confidence:.4f}" for n in r.numbers)
        number_boxes = ";".join(" ".join(map(str, n.box)) for n in r.numbers)
        boxes = ";".join(" ".join(map(str, d.box)) for d in r.digits)  # "x y w h;x y w h"
        digits = " ".join(f"{d.digit}:{d.probability:.4f}" for d in r.digits)
        text = None if r.text is None else r.text.replace("\n", LINE_BREAK)
        writer.writerow(
            [r.path, text, r.confidence, numbers, number_boxes, digits, boxes, r.reason, r.error]
        )


def draw_readings(readings: Sequence[Any], folder: Path) -> None:
    """--show: each image with its numbers' boxes, and each digit's box and digit, drawn on it."""
    from digitlab.images import open_image
    from digitlab.plots import plot_reading

    for i, r in enumerate(readings):
        if r.error:
            continue
        said = f"read {_one_row(r.text)}" if r.text is not None else r.reason
        name = f"{i:04d}-{r.path.stem}.png"  # numbered: two inputs may share a file name
        plot_reading(open_image(r.path), r.numbers, f"{r.path.name}: {said}", folder / name)
