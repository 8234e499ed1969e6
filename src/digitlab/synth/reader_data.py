"""The sequence reader's training data: numbers and non-numbers generated on the fly.

Each sample is drawn from its own seed, so sample k of a run is the same on every machine and
a resumed run continues with exactly the samples it would have seen. A sample is one picture
put through the same steps a user's picture goes through (`ink.find_ink`, then
`lines.find_numbers`), so the reader learns from exactly the kind of line image it will read:

- numbers of 1-10 MNIST **training** digits (never the test split, never the digits held out
  for calibration), spaced, close, touching or overlapping, each digit its own size and height
  on the line, one slant and pen per number;
- numbers typed in the **training** fonts (`fonts.TRAINING_FAMILIES`), loose or tight;
- some of both on a form: underlined, on ruled paper, boxed, or one digit per comb cell;
- non-numbers with an empty target: words, doodles (stars, hatching, scribbles ...), and
  empty printed forms;
- drawn as photos (ink colours, paper, light, noise, dust, JPEG, tilt) or as clean scans.
"""

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from digitlab.lines import LINE_HEIGHT, find_numbers
from digitlab.synth import clutter, numbers
from digitlab.synth.fonts import pick_font

if TYPE_CHECKING:
    import torch

MAX_DIGITS = 10
NEGATIVE_SHARE = 0.15
FONT_SHARE = 0.2  # of the numbers; the rest are MNIST digits
FORM_SHARE = 0.15  # of the numbers: on printed lines or in a comb field
PHOTO_SHARE = 0.6  # drawn as a photo; the rest as a clean scan (ink straight to the reader)
MAX_TILT = 5.0  # degrees either way
# Gaps between neighbouring digits' nearest ink, in digit heights, by how a number is written.
GAPS = {
    "spaced": (0.3, 1.0),
    "close": (0.02, 0.3),
    "touching": (-0.08, 0.01),
    "overlapping": (-0.2, -0.05),
}
GAP_WEIGHTS = (0.3, 0.3, 0.25, 0.15)
TRACKING = ((-0.12, 0.0), (0.0, 0.3), (0.3, 0.8))  # font spacing: tight, normal, wide


@dataclass(frozen=True)
class ReaderSource:
    """What samples are made from: MNIST training digits and training fonts."""

    digits: np.ndarray  # uint8 (N, 28, 28)
    labels: np.ndarray  # (N,)
    fonts: list[list[str]]  # font files by family: digits and words are typed in these


def sample(source: ReaderSource, seed: int, index: int) -> tuple[np.ndarray, str]:
    """Sample `index` of the stream for `seed`: a line image (LINE_HEIGHT, W) and its digits
    ("" for a non-number). Retries with the next sub-seed when a picture does not give
    exactly one line image (e.g. a spaced number the layout split in two)."""
    for attempt in range(100):
        rng = np.random.default_rng([seed, index, attempt])
        made = _try_sample(source, rng)
        if made is not None:
            return made
    raise RuntimeError(f"no usable sample for seed {seed}, index {index}")


def _try_sample(source: ReaderSource, rng: np.random.Generator) -> tuple[np.ndarray, str] | None:
    negative = rng.uniform() < NEGATIVE_SHARE
    coverage, text = _negative(source, rng) if negative else _number(source, rng)
    crops = find_numbers(_as_ink_map(coverage, rng))
    if negative:
        return (crops[int(rng.integers(len(crops)))].pixels, "") if crops else None
    if len(crops) != 1 or crops[0].pixels.shape[0] != LINE_HEIGHT:
        return None
    return crops[0].pixels, text


def _number(source: ReaderSource, rng: np.random.Generator) -> tuple[np.ndarray, str]:
    length = int(rng.integers(1, MAX_DIGITS + 1))
    on_form = rng.uniform() < FORM_SHARE
    comb = on_form and rng.uniform() < 0.5
    if rng.uniform() < FONT_SHARE:
        text = "".join(str(d) for d in rng.integers(0, 10, length))
        font = pick_font(source.fonts, rng)
        if comb:
            glyphs = [numbers.type_number(c, font, rng, 0.0) for c in text]
            return clutter.comb_field(glyphs, length + int(rng.integers(0, 3)), rng), text
        tracking = TRACKING[int(rng.integers(len(TRACKING)))]
        line = numbers.type_number(text, font, rng, float(rng.uniform(*tracking)))
    else:
        chosen = rng.integers(0, len(source.digits), length)
        text = "".join(str(int(source.labels[i])) for i in chosen)
        hand = numbers.random_handwriting(rng)
        if comb:
            glyphs = [numbers.write_digits([source.digits[i]], [], rng, hand) for i in chosen]
            return clutter.comb_field(glyphs, length + int(rng.integers(0, 3)), rng), text
        line = numbers.write_digits(
            [source.digits[i] for i in chosen], _gaps(length, rng), rng, hand
        )
    return (clutter.with_printed_lines(line, rng) if on_form else line), text


def _gaps(length: int, rng: np.random.Generator) -> list[float]:
    """One way of spacing for the whole number, or (a quarter of the time) a mix."""
    kinds = list(GAPS)
    if rng.uniform() < 0.25:
        chosen = rng.choice(len(kinds), size=max(0, length - 1), p=GAP_WEIGHTS)
        return [float(rng.uniform(*GAPS[kinds[k]])) for k in chosen]
    low, high = GAPS[kinds[int(rng.choice(len(kinds), p=GAP_WEIGHTS))]]
    return [float(rng.uniform(low, high)) for _ in range(length - 1)]


def _negative(source: ReaderSource, rng: np.random.Generator) -> tuple[np.ndarray, str]:
    roll = rng.uniform()
    if roll < 0.45:
        return clutter.word([pick_font(source.fonts, rng)], rng), ""
    if roll < 0.9:
        return clutter.doodles(rng), ""
    return clutter.empty_form(rng), ""


def _as_ink_map(coverage: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Coverage at MNIST scale → what `find_ink` would make of a photo or scan of it."""
    tilt = float(rng.uniform(-MAX_TILT, MAX_TILT))
    if rng.uniform() < PHOTO_SHARE:
        from digitlab.ink import find_ink
        from digitlab.synth.photos import render_number_photo

        # Photos at 1.5-3× MNIST's scale: as much detail as the reader's 32-pixel lines keep,
        # at a third of the cost of the test pictures' 2-5×.
        scale = float(rng.uniform(1.5, 3.0))
        found = find_ink(render_number_photo(coverage, rng, tilt, scale=scale))
        if isinstance(found, str):
            return np.zeros((LINE_HEIGHT, LINE_HEIGHT), np.float32)
        floor = found.noise_floor
        return np.clip((found.ink - floor) / (1.0 - floor), 0.0, 1.0).astype(np.float32)
    return _scan(clutter.tilted(coverage, tilt), rng)


def _scan(coverage: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A clean scan: the ink enlarged 1-3×, a little blurred, with a margin of paper."""
    import cv2

    scale = float(rng.uniform(1.0, 3.0))
    size = (max(1, round(coverage.shape[1] * scale)), max(1, round(coverage.shape[0] * scale)))
    ink = cv2.resize(coverage, size, interpolation=cv2.INTER_LINEAR)
    sigma = float(rng.uniform(0.0, 0.6)) * scale
    if sigma > 0.3:
        ink = cv2.GaussianBlur(ink, (0, 0), sigma)
    margin = round(max(ink.shape) * 0.1) + 2
    return np.pad(np.clip(ink * rng.uniform(0.8, 1.0), 0.0, 1.0), margin).astype(np.float32)


def reader_sources(
    train_images: "torch.Tensor", train_labels: "torch.Tensor", held_out: int
) -> tuple[ReaderSource, ReaderSource]:
    """What a reader may learn from, and what it is calibrated on: MNIST's training split less
    the `held_out` images every recipe keeps apart (the same ones, `data.split_validation`),
    and those held-out images; both with the training fonts. The test split is never an
    argument, so it cannot leak in."""
    from digitlab.data import split_validation
    from digitlab.synth.fonts import training_fonts

    (digits, labels), (kept, kept_labels) = split_validation(train_images, train_labels, held_out)
    fonts = training_fonts()
    if not fonts:
        raise RuntimeError("no training handwriting fonts installed; see digitlab.synth.fonts")
    return (
        ReaderSource(digits.numpy(), labels.numpy(), fonts),
        ReaderSource(kept.numpy(), kept_labels.numpy(), fonts),
    )
