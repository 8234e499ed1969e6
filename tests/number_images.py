"""Numbers of 2-6 real MNIST test digits (or handwriting fonts) rendered as photos and scans.

`make_number_set(images, labels, kind, n, seed)` gives n (picture, text) pairs of one kind:

- "spaced": digits with a clear gap between them (0.3-0.8 of the line's height);
- "close": the nearest ink of two neighbours, row by row, is closer than a fifth of the height;
- "touching": neighbours' strokes touch or overlap by a pixel;
- "fonts": the string typed in one of the installed handwriting fonts.

Digits wobble up and down a little, the line is tilted by up to ±5°, and the whole is drawn
as `wild_digits` draws one digit: ink colours, tinted paper, noise, uneven light, specks, JPEG.
Every choice comes from the seed, so the sets are the same on every machine.
"""

import dataclasses
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont
from wild_digits import add_specks, random_style, render_coverage

# The same geometry as the detector's pairs of training digits (digitlab.synth.nondigits); these
# numbers are made of test digits.
from digitlab.synth.nondigits import INK_LEVEL, ink_columns, side_by_side

KINDS = ("spaced", "close", "touching", "fonts")
MNIST_KINDS = ("spaced", "close", "touching")
DIGIT_HEIGHT = 20  # an MNIST digit's ink height in its 28×28 box
LENGTHS = (2, 6)  # fewest and most digits in a number
MAX_TILT = 5.0  # degrees
# Gaps between neighbours' nearest ink, as fractions of the digit height, per kind.
GAPS = {"spaced": (0.3, 0.8), "close": (0.05, 0.2), "touching": (-0.05, -0.05)}
# Handwriting fonts from Debian packages (see .ci/run); those missing here are skipped.
FONT_FILES = (
    "/usr/share/fonts/opentype/bwht/BecauseWeLearn-Regular.otf",
    "/usr/share/fonts/opentype/comic-neue/ComicNeue-Regular.otf",
    "/usr/share/fonts/opentype/dancingscript/DancingScript-Regular.otf",
    "/usr/share/fonts/opentype/kaushanscript/KaushanScript-Regular.otf",
    "/usr/share/fonts/truetype/breip/Breip.ttf",
    "/usr/share/fonts/truetype/femkeklaver/femkeklaver.ttf",
    "/usr/share/fonts/truetype/fifthhorseman/dkg.ttf",
    "/usr/share/fonts/truetype/humor-sans/Humor-Sans.ttf",
)


def installed_fonts() -> list[str]:
    return [font for font in FONT_FILES if Path(font).is_file()]


def make_number_set(
    images: np.ndarray | torch.Tensor,
    labels: np.ndarray | torch.Tensor,
    kind: str,
    n: int,
    seed: int,
) -> list[tuple[Image.Image, str]]:
    """n (picture, digits) pairs of one kind, the same for the same seed."""
    rng = np.random.default_rng(seed)
    images, labels = np.asarray(images), np.asarray(labels)
    pairs = []
    for _ in range(n):
        length = int(rng.integers(LENGTHS[0], LENGTHS[1] + 1))
        if kind == "fonts":
            text = "".join(str(d) for d in rng.integers(0, 10, length))
            coverage = font_coverage(text, str(rng.choice(installed_fonts())), rng)
        else:
            chosen = rng.choice(len(images), size=length, replace=False)
            text = "".join(str(int(labels[i])) for i in chosen)
            coverage = mnist_coverage([images[i] for i in chosen], kind, rng)
        pairs.append((render_number(coverage, rng), text))
    return pairs


def mnist_coverage(digits: list[np.ndarray], kind: str, rng: np.random.Generator) -> np.ndarray:
    """MNIST digits side by side at MNIST scale (0-1), spaced as `kind` says."""
    line = ink_columns(digits[0].astype(np.float32) / 255.0)
    for digit in digits[1:]:
        gap = rng.uniform(*GAPS[kind]) * DIGIT_HEIGHT
        wobble = int(rng.integers(-2, 3))
        digit_ink = ink_columns(digit.astype(np.float32) / 255.0)
        line = side_by_side(line, np.roll(digit_ink, wobble, 0), gap)
    return line


def font_coverage(text: str, font_file: str, rng: np.random.Generator) -> np.ndarray:
    """The text typed in a font, ink coverage 0-1, digits about DIGIT_HEIGHT px tall."""
    font = ImageFont.truetype(font_file, size=64)
    left, top, right, bottom = font.getbbox(text)
    canvas = Image.new("L", (right - left + 16, bottom - top + 16), 0)
    ImageDraw.Draw(canvas).text((8 - left, 8 - top), text, fill=255, font=font)
    ink = np.asarray(canvas, dtype=np.float32) / 255.0
    rows = np.flatnonzero((ink >= INK_LEVEL).any(axis=1))
    height = rows[-1] - rows[0] + 1
    scale = DIGIT_HEIGHT / height * rng.uniform(0.9, 1.1)
    size = (max(1, round(ink.shape[1] * scale)), max(1, round(ink.shape[0] * scale)))
    small = Image.fromarray(ink).resize(size, Image.Resampling.LANCZOS)
    return np.clip(np.asarray(small, dtype=np.float32), 0.0, 1.0)


def render_number(
    coverage: np.ndarray, rng: np.random.Generator, tilt: float | None = None, **changes: Any
) -> Image.Image:
    """A line of ink at MNIST scale drawn as a photo: enlarged, tilted (degrees, random if
    None), on a sheet, lit; `changes` fix fields of the random WildStyle."""
    style = dataclasses.replace(random_style(rng), scale=float(rng.uniform(2.0, 5.0)))
    style = dataclasses.replace(style, **changes)
    height = round(coverage.shape[0] * style.scale)
    width = round(coverage.shape[1] * style.scale)
    enlarged = Image.fromarray(coverage).resize((width, height), Image.Resampling.BICUBIC)
    angle = float(rng.uniform(-MAX_TILT, MAX_TILT)) if tilt is None else tilt
    tilted = enlarged.rotate(angle, Image.Resampling.BICUBIC, expand=True)
    line = np.clip(np.asarray(tilted, dtype=np.float32), 0.0, 1.0)
    margin_y = round(line.shape[0] * rng.uniform(0.2, 0.8))
    margin_x = round(line.shape[0] * rng.uniform(0.2, 0.8))
    sheet = np.pad(line, ((margin_y, margin_y), (margin_x, margin_x))).astype(np.float64)
    add_specks(sheet, style, rng)
    return render_coverage(sheet, style, rng)
