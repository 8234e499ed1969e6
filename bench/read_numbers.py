r"""Whole-number reading: accuracy per kind of picture and images/s, beside Tesseract.

    DIGITLAB_DATA=../shared/data/mnist .venv/bin/python bench/read_numbers.py \
        --checkpoint runs/default-20250101-120000
    # quicker, fewer pictures, no Tesseract:
    ... bench/read_numbers.py --checkpoint RUN --count 50 --no-tesseract

Pictures come from the test generators (`tests/number_images.py`, `tests/wild_digits.py`),
built from real MNIST **test** digits (never seen in training) or typed in handwriting fonts:

- numbers of 2-6 digits, "spaced" (gaps 0.3-0.8 of the height), "close" (nearest ink under a
  fifth of the height), "touching" (strokes touch), "fonts"; all photo-like: ink colours,
  tinted paper, noise, uneven light, specks, JPEG, tilted up to ±5°; read with `read_images`;
  right = the whole string right;
- single digits, "tight" (cropped to the ink), "blur" (out of focus), "lowres" (10-16 px high,
  enlarged); read as `digitlab predict` reads them (`preprocess_image`, one digit).

Tesseract (the `tesseract` binary, if installed) reads the same pictures, saved as PNG, with
`--psm 7` (one line of text; `--psm 10`, one character, for single digits) and a digits-only
whitelist. Speed is pictures per second over the whole kind, one process, both measured on this
machine in the same run.
"""

import argparse
import datetime
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from machine import cpu_name  # noqa: E402  (bench/machine.py, beside this script)
from number_images import MNIST_KINDS, installed_fonts, make_number_set  # noqa: E402
from peers import read_with_tesseract  # noqa: E402  (bench/peers.py, beside this script)
from wild_digits import HARD_KINDS, make_hard_set  # noqa: E402

from digitlab.data import load_mnist  # noqa: E402
from digitlab.predict import Predictor  # noqa: E402
from digitlab.runs import resolve_checkpoint  # noqa: E402

TARGETS = {
    "spaced": 0.98,
    "close": 0.97,
    "touching": 0.85,
    "fonts": 0.95,
    "tight": 0.98,
    "blur": 0.98,
    "lowres": 0.98,
}
SEED = 2026  # a different seed from the tests' sets


def main() -> None:
    args = parse_args()
    checkpoint = resolve_checkpoint(args.checkpoint)
    predictor = Predictor.from_checkpoint(checkpoint)
    mnist = load_mnist(args.data_dir) if args.data_dir else load_mnist()
    images, labels = mnist.test_images.numpy(), mnist.test_labels.numpy()
    tesseract = None if args.no_tesseract else shutil.which("tesseract")
    rows = []
    for kind in args.kinds:
        pairs = picture_set(images, labels, kind, args.count)
        truths = [text for _, text in pairs]
        pictures = [picture for picture, _ in pairs]
        ours, ours_speed = timed(lambda p=pictures, k=kind: read_with_digitlab(predictor, p, k))
        row = [kind, str(len(pairs)), f"{TARGETS[kind]:.0%}", percent(ours, truths)]
        row.append(f"{ours_speed:.0f}")
        if tesseract:
            psm = "10" if kind in HARD_KINDS else "7"
            theirs, their_speed = timed(lambda p=pictures, m=psm: read_with_tesseract(p, m))
            row += [percent(theirs, truths), f"{their_speed:.1f}"]
        rows.append(row)
        print(" | ".join(row), file=sys.stderr)
    print(table(rows, with_tesseract=tesseract is not None))
    print()
    print(machine_line(predictor, checkpoint, tesseract))


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint", type=Path, help="run folder or checkpoint; default: newest")
    parser.add_argument("--data-dir", type=Path, help="MNIST folder (default: $DIGITLAB_DATA)")
    parser.add_argument("--count", type=int, default=200, help="pictures per kind (default 200)")
    parser.add_argument(
        "--kinds", nargs="+", default=list(TARGETS), choices=list(TARGETS), help="default: all"
    )
    parser.add_argument("--no-tesseract", action="store_true", help="skip Tesseract")
    return parser.parse_args()


def picture_set(images, labels, kind: str, count: int) -> list[tuple[Image.Image, str]]:
    if kind in HARD_KINDS:
        return [(p, str(label)) for p, label in make_hard_set(images, labels, kind, count, SEED)]
    if kind == "fonts" and not installed_fonts():
        sys.exit("no handwriting fonts installed; see tests/number_images.py FONT_FILES")
    assert kind in (*MNIST_KINDS, "fonts")
    return make_number_set(images, labels, kind, count, SEED)


def read_with_digitlab(predictor: Predictor, pictures: Sequence[Image.Image], kind: str):
    if kind in HARD_KINDS:
        import torch

        from digitlab.preprocess import preprocess_image

        done = [preprocess_image(p) for p in pictures]
        views = [d.pixels for d in done if d.pixels is not None]
        predictions = iter(predictor.predict_tensor(torch.stack(views)) if views else [])
        return [str(next(predictions).digit) if d.pixels is not None else "" for d in done]
    from digitlab.read import read_images

    return [reading.text or "" for reading in read_images(predictor, pictures)]


def timed(work: Callable[[], list[str]]) -> tuple[list[str], float]:
    """The answers and pictures per second."""
    start = time.perf_counter()
    answers = work()
    return answers, len(answers) / (time.perf_counter() - start)


def percent(answers: Sequence[str], truths: Sequence[str]) -> str:
    right = sum(a == t for a, t in zip(answers, truths, strict=True))
    return f"{right / len(truths):.1%}"


def table(rows: list[list[str]], *, with_tesseract: bool) -> str:
    header = ["kind", "pictures", "target", "digitlab", "digitlab img/s"]
    if with_tesseract:
        header += ["Tesseract", "Tesseract img/s"]
    lines = ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def machine_line(predictor: Predictor, checkpoint: Path, tesseract: str | None) -> str:
    cpu = cpu_name()
    version = "not run"
    if tesseract:
        done = subprocess.run([tesseract, "--version"], capture_output=True, text=True, check=False)
        version = (done.stdout or done.stderr).splitlines()[0]
    return (
        f"Model: {predictor.model_name} from {checkpoint}. Machine: {cpu}, {os.cpu_count()} "
        f"cores, load average {os.getloadavg()[0]:.1f}, {datetime.date.today().isoformat()}. "
        f"Tesseract: {version}."
    )


if __name__ == "__main__":
    main()
