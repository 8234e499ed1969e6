"""Pictures of numbers to score readers on: MNIST **test** digits and **held-out** fonts only.

`make_pictures(images, labels, kind, n, seed)` gives n (picture, text) pairs of one kind, the
same for the same seed on every machine. `text` is what a perfect reader answers: the digits,
numbers on one line joined by a space, lines joined by a newline, "" when there is no number.

- "spaced": 2-6 digits, gaps of 0.3-0.8 of the height; "close": under a fifth of the height;
  "touching": neighbouring strokes touch;
- "fonts": 2-6 digits typed in a handwriting font held out from training;
- "long": 7-10 digits (phone numbers, IDs), spaced or close;
- "two_lines": two numbers on two lines; "two_numbers": two numbers far apart on one line;
- "comb": 3-8 digits, one per cell of a printed comb field;
- "none": no number at all: doodles, letters and words (held-out fonts), empty forms.

Every picture is drawn as a photo (`photos.render_number_photo`): ink colours, tinted paper,
noise, uneven light, dust, JPEG, the whole tilted by up to ±5°.
"""

import numpy as np
import torch
from PIL import Image

from digitlab.synth import clutter, marks
from digitlab.synth.fonts import held_out_fonts, pick_font
from digitlab.synth.nondigits import ink_columns, side_by_side
from digitlab.synth.numbers import DIGIT_HEIGHT, ink_box, type_number
from digitlab.synth.photos import render_number_photo

KINDS = ("spaced", "close", "touching", "fonts", "long", "two_lines", "two_numbers", "comb", "none")
LENGTHS = (2, 6)  # digits in a number, fewest and most
LONG_LENGTHS = (7, 10)
MAX_TILT = 5.0  # degrees
# Gaps between neighbours' nearest ink, as fractions of the digit height.
GAPS = {"spaced": (0.3, 0.8), "close": (0.05, 0.2), "touching": (-0.05, -0.05)}
NUMBER_GAP = (2.0, 4.0)  # between two numbers on one line, in digit heights
LINE_GAP = (0.3, 1.0)  # between two lines, in digit heights


def make_pictures(
    images: np.ndarray | torch.Tensor,
    labels: np.ndarray | torch.Tensor,
    kind: str,
    n: int,
    seed: int,
) -> list[tuple[Image.Image, str]]:
    """n (picture, text) pairs of one kind from the given (test) digits; see the module notes."""
    if kind not in KINDS:
        raise ValueError(f"unknown kind {kind!r}; choose one of {', '.join(KINDS)}")
    rng = np.random.default_rng(seed)
    digits = _Digits(np.asarray(images), np.asarray(labels), rng)
    pairs = []
    for index in range(n):
        coverage, text = _MAKERS[kind](digits, rng, index)
        tilt = float(rng.uniform(-MAX_TILT, MAX_TILT))
        pairs.append((render_number_photo(coverage, rng, tilt), text))
    return pairs


class _Digits:
    """Random test digits, each used at most once per set while any are left."""

    def __init__(self, images: np.ndarray, labels: np.ndarray, rng: np.random.Generator):
        self.images, self.labels = images, labels
        self.order = list(rng.permutation(len(images)))

    def take(self, count: int) -> tuple[list[np.ndarray], str]:
        if len(self.order) < count:
            self.order += list(np.random.default_rng(len(self.order)).permutation(len(self.images)))
        chosen = [self.order.pop() for _ in range(count)]
        return [self.images[i] for i in chosen], "".join(str(int(self.labels[i])) for i in chosen)


def mnist_number(digits: list[np.ndarray], kind: str, rng: np.random.Generator) -> np.ndarray:
    """MNIST digits side by side at MNIST scale (0-1), spaced as `kind` says, each bobbing up
    or down by up to 2 px."""
    line = ink_columns(digits[0].astype(np.float32) / 255.0)
    for digit in digits[1:]:
        gap = rng.uniform(*GAPS[kind]) * DIGIT_HEIGHT
        wobble = int(rng.integers(-2, 3))
        digit_ink = ink_columns(digit.astype(np.float32) / 255.0)
        line = side_by_side(line, np.roll(digit_ink, wobble, 0), gap)
    return line


def _spaced(kind: str):  # noqa: ANN202 (a maker)
    def make(digits: _Digits, rng: np.random.Generator, index: int) -> tuple[np.ndarray, str]:
        images, text = digits.take(int(rng.integers(LENGTHS[0], LENGTHS[1] + 1)))
        return mnist_number(images, kind, rng), text

    return make


def _fonts(digits: _Digits, rng: np.random.Generator, index: int) -> tuple[np.ndarray, str]:
    text = "".join(
        str(d) for d in rng.integers(0, 10, int(rng.integers(LENGTHS[0], LENGTHS[1] + 1)))
    )
    fonts = held_out_fonts()
    if not fonts:
        raise RuntimeError("no held-out handwriting fonts installed; see digitlab.synth.fonts")
    return type_number(text, pick_font(fonts, rng), rng, 0.0), text


def _long(digits: _Digits, rng: np.random.Generator, index: int) -> tuple[np.ndarray, str]:
    images, text = digits.take(int(rng.integers(LONG_LENGTHS[0], LONG_LENGTHS[1] + 1)))
    return mnist_number(images, "spaced" if rng.uniform() < 0.5 else "close", rng), text


def _short_number(digits: _Digits, rng: np.random.Generator) -> tuple[np.ndarray, str]:
    images, text = digits.take(int(rng.integers(LENGTHS[0], LENGTHS[1] + 1)))
    return mnist_number(images, "spaced" if rng.uniform() < 0.5 else "close", rng), text


def _two_lines(digits: _Digits, rng: np.random.Generator, index: int) -> tuple[np.ndarray, str]:
    (first, a), (second, b) = _short_number(digits, rng), _short_number(digits, rng)
    gap = round(rng.uniform(*LINE_GAP) * DIGIT_HEIGHT)
    offsets = [int(rng.integers(0, 2 * DIGIT_HEIGHT)) for _ in range(2)]
    return clutter.stacked([first, second], [gap], offsets), f"{a}\n{b}"


def _two_numbers(digits: _Digits, rng: np.random.Generator, index: int) -> tuple[np.ndarray, str]:
    (first, a), (second, b) = _short_number(digits, rng), _short_number(digits, rng)
    gap = round(rng.uniform(*NUMBER_GAP) * DIGIT_HEIGHT)
    return clutter.side_by_side([first, second], [gap]), f"{a} {b}"


def _comb(digits: _Digits, rng: np.random.Generator, index: int) -> tuple[np.ndarray, str]:
    images, text = digits.take(int(rng.integers(3, 9)))
    glyphs = [ink_box(image) for image in images]
    return clutter.comb_field(glyphs, len(glyphs) + int(rng.integers(0, 3)), rng), text


def _none(digits: _Digits, rng: np.random.Generator, index: int) -> tuple[np.ndarray, str]:
    """No number: the kinds in turn, so every set holds each."""
    kind = marks.KINDS[index % len(marks.KINDS)]
    return marks.make_mark(kind, rng, held_out_fonts()), ""


_MAKERS = {
    "spaced": _spaced("spaced"),
    "close": _spaced("close"),
    "touching": _spaced("touching"),
    "fonts": _fonts,
    "long": _long,
    "two_lines": _two_lines,
    "two_numbers": _two_numbers,
    "comb": _comb,
    "none": _none,
}
