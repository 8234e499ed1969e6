"""Numbers as ink: MNIST digits side by side, or strings typed in a handwriting font.

Everything here works at MNIST's scale (a digit's ink about DIGIT_HEIGHT = 20 px high) on ink
coverage, float32 in [0, 1] with 0 for paper; `photos.render_coverage` draws the result.
Digits are composited with `max`, as ink on ink is, never summed.
"""

from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np

from digitlab.mnist_format import BOX_SIZE
from digitlab.synth.fonts import crop_to_ink, type_text

DIGIT_HEIGHT = BOX_SIZE  # MNIST fits a digit's longest side in this
INK_LEVEL = 0.3  # coverage counted as ink when measuring gaps


@dataclass(frozen=True)
class Handwriting:
    """How one number is written: the same slant and pen for every digit, each digit's own
    size and height on the line drawn around them."""

    slant: float = 0.0  # shear, columns per row (positive leans right)
    size_spread: float = 0.0  # each digit's height is DIGIT_HEIGHT × (1 ± this)
    baseline_spread: float = 0.0  # each digit sits up to this share of the height off the line
    pen: int = 0  # grow (> 0) or thin (< 0) strokes by this many pixels at 2× scale


PLAIN_SHARE = 0.5  # of numbers written with MNIST's digits as they are


def random_handwriting(rng: np.random.Generator) -> Handwriting:
    """Half the time MNIST's digits as they are (only bobbing on the line, as test pictures'
    do); else one slant, pen and size spread for the whole number."""
    if rng.uniform() < PLAIN_SHARE:
        return Handwriting(baseline_spread=0.1)
    return Handwriting(
        slant=float(rng.normal(0.0, 0.12)),
        size_spread=float(rng.uniform(0.0, 0.15)),
        baseline_spread=float(rng.uniform(0.0, 0.1)),
        pen=int(rng.choice([-1, 0, 0, 1, 1, 2])),
    )


def ink_box(digit: np.ndarray) -> np.ndarray:
    """A digit's coverage cut to its ink (rows and columns), as float32 0-1."""
    coverage = digit.astype(np.float32)
    if coverage.max() > 1.0:  # uint8 MNIST
        coverage /= 255.0
    return crop_to_ink(coverage, level=1 / 255)


def write_digits(
    digits: Sequence[np.ndarray],
    gaps: Sequence[float],
    rng: np.random.Generator,
    hand: Handwriting = Handwriting(),
) -> np.ndarray:
    """MNIST digits (0-1 or uint8) written as one number: each at its own size (MNIST fits
    the longest side in DIGIT_HEIGHT), slanted, resized and inked by `hand`, the nearest ink
    of neighbours `gaps[i]` digit heights apart (negative: overlapping). Returns the coverage
    cropped to the ink."""
    glyphs, lifts = [], []
    plain = hand.slant == 0 and hand.pen == 0 and hand.size_spread == 0
    for digit in digits:
        ink = ink_box(digit)
        if not plain:  # each digit keeps its MNIST size, give or take the spread
            height = ink.shape[0] * (1 + rng.uniform(-hand.size_spread, hand.size_spread))
            ink = _styled(ink, height, hand)
        glyphs.append(ink)
        lifts.append(round(rng.uniform(-hand.baseline_spread, hand.baseline_spread) * DIGIT_HEIGHT))
    return join_glyphs(glyphs, [g * DIGIT_HEIGHT for g in gaps], lifts)


def type_number(text: str, font: str, rng: np.random.Generator, tracking: float) -> np.ndarray:
    """`text` typed in `font` with `tracking` (digit heights) after each character, slanted a
    little and re-inked as a pen would: coverage at MNIST scale, cropped to the ink."""
    typed = type_text(text, font, tracking)
    hand = Handwriting(slant=float(rng.normal(0.0, 0.06)), pen=int(rng.choice([-1, 0, 0, 1])))
    scale = DIGIT_HEIGHT * float(rng.uniform(0.9, 1.1))
    return _styled(typed, scale, hand)


def join_glyphs(
    glyphs: Sequence[np.ndarray], gaps: Sequence[float], lifts: Sequence[int]
) -> np.ndarray:
    """Glyphs (coverage cut to their ink) on one baseline, left to right: glyph i+1 placed so
    that its nearest ink, row by row, is gaps[i] pixels from what is already on the line, and
    lifts[i] pixels higher."""
    tops = [-lift - g.shape[0] for g, lift in zip(glyphs, lifts, strict=True)]
    rows = [t - min(tops) for t in tops]  # each glyph's first row on the canvas
    height = max(r + g.shape[0] for r, g in zip(rows, glyphs, strict=True))
    width = sum(g.shape[1] for g in glyphs) + int(sum(max(0.0, gap) for gap in gaps)) + 2
    line = np.zeros((height, width), np.float32)
    right_edge = np.full(height, -np.inf)  # last ink column in each row so far
    cursor = 0
    for index, glyph in enumerate(glyphs):
        top_row = rows[index]
        span = slice(top_row, top_row + glyph.shape[0])
        if index == 0:
            left = 0
        else:
            first_ink = _first_ink(glyph)
            reach = right_edge[span] - first_ink
            reach = reach[np.isfinite(reach)]
            nearest = reach.max() if reach.size else cursor - 1.0  # no row shared: after it
            left = max(0, round(nearest + 1 + gaps[index - 1]))
        if left + glyph.shape[1] > line.shape[1]:
            line = np.pad(line, ((0, 0), (0, left + glyph.shape[1] - line.shape[1])))
        target = line[span, left : left + glyph.shape[1]]
        np.maximum(target, glyph, out=target)
        last = _last_ink(glyph) + left
        right_edge[span] = np.maximum(right_edge[span], last)
        cursor = max(cursor, left + glyph.shape[1])
    return crop_to_ink(line, level=1 / 255)


def _first_ink(glyph: np.ndarray) -> np.ndarray:
    ink = glyph >= INK_LEVEL
    return np.where(ink.any(axis=1), ink.argmax(axis=1), np.inf)


def _last_ink(glyph: np.ndarray) -> np.ndarray:
    ink = glyph >= INK_LEVEL
    return np.where(ink.any(axis=1), glyph.shape[1] - 1 - ink[:, ::-1].argmax(axis=1), -np.inf)


def _styled(ink: np.ndarray, height: float, hand: Handwriting) -> np.ndarray:
    """Ink scaled to `height` rows, slanted and re-inked; cropped to the ink."""
    scale = 2 * height / max(1, ink.shape[0])  # work at twice the size: smoother pen changes
    big = cv2.resize(
        ink,
        (max(1, round(ink.shape[1] * scale)), max(1, round(ink.shape[0] * scale))),
        interpolation=cv2.INTER_LINEAR,
    )
    if hand.pen:
        kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * abs(hand.pen) + 1,) * 2)
        big = cv2.dilate(big, kernel) if hand.pen > 0 else cv2.erode(big, kernel)
    if hand.slant:
        h, w = big.shape
        pad = int(abs(hand.slant) * h) + 1
        shear = np.array([[1.0, -hand.slant, hand.slant * h / 2 + pad], [0.0, 1.0, 0.0]])
        big = cv2.warpAffine(big, shear, (w + 2 * pad, h), flags=cv2.INTER_LINEAR)
    small = cv2.resize(
        big, (max(1, round(big.shape[1] / 2)), max(1, round(big.shape[0] / 2))),
        interpolation=cv2.INTER_AREA,
    )  # fmt: skip
    return crop_to_ink(np.clip(small, 0.0, 1.0), level=1 / 255)
