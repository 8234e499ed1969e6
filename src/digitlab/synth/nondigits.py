"""Generated marks that are not one digit, in MNIST format: what the "not a digit" detector learns.

Doodles (stars, hearts, smileys, hatching, scribbles, tangles, pen loops, spirals, polygons,
arrows, zigzags, grids) are drawn with Pillow's ImageDraw; letters come from the given fonts
(by default the DejaVu fonts bundled with matplotlib, so every machine has them), slanted and
bolded at random. Letters a hand-written digit can look like (O, o, I, l, S, Z, B, g, q and a
few more, see LOOKALIKE_LETTERS) are left out: rejecting them would teach the detector to
reject real digits. Each mark goes through the same `ink_to_mnist` step a photo goes through
(half of them after being reduced to 28×28, as a small mark in a photo is), so it arrives in
exactly the form the classifier sees.

Not one whole digit either, made from MNIST training digits: two digits side by side
(`digit_pairs`) and slices of one (`digit_slices`), what a number cut in the wrong place gives.

Positives are made here too, so that the detector learns "one digit", not "rendered by a font"
or "clean edges": font digits (`font_digits`) and digits with the stub of a touching neighbour
that a right cut leaves (`digits_with_stub`).
"""

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageFont

from digitlab.mnist_format import BOX_SIZE, IMAGE_SIZE
from digitlab.preprocess import ink_to_mnist
from digitlab.synth.doodles import CANVAS, DOODLES

MAX_GLYPH_SHEAR = 0.35  # letters and typed digits slant by up to this (x per y)
MAX_GLYPH_BOLDING = 3  # ... and are drawn up to this many pixels bolder than the font
LETTER_SHARE = (2, 5)  # 2 marks in 5 are letters (handwriting differs most from font to font)
# Half of the marks are first reduced to MNIST's 28×28 and blown up again, as the photos a
# user takes of a small mark (and the wild test images) are.
LOW_RES_SHARE = 0.5
# Letters easily mistaken for digits (0, 1, 2, 5, 6, 7, 8, 9, 4): never used as non-digits.
LOOKALIKE_LETTERS = "OoQDIlijJSsZzBbGgqTtyA"
LETTERS = "".join(
    c for c in "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz" if c not in LOOKALIKE_LETTERS
)
FONT_FILES = (  # matplotlib ships these, so they exist wherever digitlab runs
    "DejaVuSans.ttf", "DejaVuSans-Bold.ttf", "DejaVuSans-Oblique.ttf", "DejaVuSerif.ttf",
    "DejaVuSerif-Italic.ttf", "DejaVuSansMono.ttf", "DejaVuSerif-Bold.ttf",
)  # fmt: skip


def generate_nondigits(
    count: int, rng: np.random.Generator, fonts: Sequence[str | Path] = ()
) -> np.ndarray:
    """`count` non-digit marks, float32 (count, 28, 28) in [0, 1]: LETTER_SHARE letters from
    `fonts` (font files; none given: the bundled DejaVu fonts), the rest doodles."""
    font_files = [str(f) for f in fonts] or bundled_fonts()
    marks = []
    for i in range(count):
        if (i % LETTER_SHARE[1]) < LETTER_SHARE[0]:
            marks.append(_font_glyph(str(rng.choice(list(LETTERS))), font_files, rng))
        else:
            marks.append(_doodle(rng))
    return np.stack(marks)


def font_digits(
    count: int, rng: np.random.Generator, fonts: Sequence[str | Path] = ()
) -> np.ndarray:
    """`count` digits 0-9 drawn from fonts the same way as the letters, (count, 28, 28)."""
    font_files = [str(f) for f in fonts] or bundled_fonts()
    return np.stack([_font_glyph(str(rng.integers(10)), font_files, rng) for _ in range(count)])


def bundled_fonts() -> list[str]:
    """matplotlib's DejaVu fonts: present wherever digitlab is installed."""
    import matplotlib

    folder = Path(matplotlib.get_data_path()) / "fonts" / "ttf"
    return [str(folder / name) for name in FONT_FILES]


def _doodle(rng: np.random.Generator) -> np.ndarray:
    image = Image.new("L", (CANVAS, CANVAS), 0)
    draw = ImageDraw.Draw(image)
    width = int(rng.integers(4, 14))
    DOODLES[int(rng.integers(len(DOODLES)))](draw, rng, width)
    return _to_mnist(image, rng)


def _font_glyph(text: str, fonts: Sequence[str], rng: np.random.Generator) -> np.ndarray:
    font = ImageFont.truetype(fonts[int(rng.integers(len(fonts)))], int(rng.integers(60, 90)))
    image = Image.new("L", (CANVAS, CANVAS), 0)
    ImageDraw.Draw(image).text(
        (CANVAS / 2, CANVAS / 2),
        text,
        fill=255,
        font=font,
        anchor="mm",
        stroke_width=int(rng.integers(0, MAX_GLYPH_BOLDING + 1)),
        stroke_fill=255,
    )
    # Slanted as handwriting is (a shear about the centre), and turned a little.
    shear = float(rng.uniform(-MAX_GLYPH_SHEAR, MAX_GLYPH_SHEAR))
    image = image.transform(
        image.size,
        Image.Transform.AFFINE,
        (1, shear, -shear * CANVAS / 2, 0, 1, 0),
        resample=Image.Resampling.BILINEAR,
    )
    image = image.rotate(float(rng.uniform(-15, 15)), resample=Image.Resampling.BILINEAR)
    return _to_mnist(image, rng)


def _to_mnist(image: Image.Image, rng: np.random.Generator) -> np.ndarray:
    blurred = image.filter(ImageFilter.GaussianBlur(float(rng.uniform(0.5, 2.0))))
    if rng.uniform() < LOW_RES_SHARE:
        blurred = blurred.resize((IMAGE_SIZE, IMAGE_SIZE), Image.Resampling.LANCZOS)
    ink = np.asarray(blurred, dtype=np.float32) / 255.0
    if ink.max() <= 0:  # nothing drawn (cannot happen with these shapes, but stay safe)
        return np.zeros((IMAGE_SIZE, IMAGE_SIZE), dtype=np.float32)
    return ink_to_mnist(ink / ink.max())


# --- not ONE whole digit: two digits together, or a slice of one ----------------------------
# What a number's segmentation must not keep as one digit, made from MNIST *training* digits
# (float (N, 28, 28) in [0, 1]) and put through `ink_to_mnist` as a cut-out part would be.

INK_LEVEL = 0.3  # coverage counted as ink when measuring gaps and widths
DIGIT_HEIGHT = BOX_SIZE  # an MNIST digit's height in its 28×28 image
# Gap between two digits' nearest ink, in digit heights: overlapping (negative), touching,
# or close (a segmenter may keep them together).
PAIR_GAPS = (-0.15, 0.25)
PAIR_WOBBLE = 2  # the second digit sits up to this many pixels higher or lower
# How much of the neighbour a "digit and part of the next" holds (fraction of its width).
NEIGHBOUR_PART = (0.25, 0.75)
# A seam cuts a digit this far across its ink (fraction of the width), vertical or slanted by
# up to MAX_SEAM_SLOPE columns per row.
SLICE_SPAN = (0.2, 0.8)
MAX_SEAM_SLOPE = 0.4
# Slices that would pass for a 1 are not non-digits: slices of 1s and 7s (their strokes are
# 1-like), and slices narrower than this width / height (a 1's median is 0.39).
UNSLICED_DIGITS = (1, 7)
MIN_SLICE_ASPECT = 0.45
# A slice holds between these shares of the digit's ink and at most the larger share of its
# width: less is a mere tick, more is still the digit missing a tail.
SLICE_INK = (0.15, 0.5)
# A digit cut out of touching neighbours keeps a stub of the next one: positives carry up to
# this wide a stub (fraction of the digit height).
STUB_WIDTH = (0.03, 0.1)


def digit_pairs(digits: np.ndarray, count: int, rng: np.random.Generator) -> np.ndarray:
    """`count` pairs of digits side by side, overlapping, touching or close, as one part:
    (count, 28, 28). A third are two whole digits, a third a digit and part of its neighbour
    (either side), a third the end of one digit and the start of the next: what a cut in the
    wrong place gives."""
    pairs = []
    for k in range(count):
        first, second = (ink_columns(digits[i]) for i in rng.choice(len(digits), 2))
        if k % 3 == 1:  # a whole digit and part of a neighbour, either way round
            second = _part(second, rng, start=rng.uniform() < 0.5)
            if rng.uniform() < 0.5:
                first, second = second, first
        elif k % 3 == 2:  # the end of one digit, the start of the next
            first, second = _part(first, rng, start=False), _part(second, rng, start=True)
        gap = rng.uniform(*PAIR_GAPS) * DIGIT_HEIGHT
        wobble = int(rng.integers(-PAIR_WOBBLE, PAIR_WOBBLE + 1))
        pairs.append(ink_to_mnist(side_by_side(first, np.roll(second, wobble, 0), gap)))
    return np.stack(pairs)


def _part(digit: np.ndarray, rng: np.random.Generator, *, start: bool) -> np.ndarray:
    """The first (`start`) or last columns of a digit, NEIGHBOUR_PART of its width."""
    keep = max(1, round(digit.shape[1] * rng.uniform(*NEIGHBOUR_PART)))
    return ink_columns(digit[:, :keep] if start else digit[:, -keep:])


def digit_slices(
    digits: np.ndarray, labels: np.ndarray, count: int, rng: np.random.Generator
) -> np.ndarray:
    """`count` left or right parts of digits cut by a vertical or slanted seam (a third of a 0,
    half of an 8), (count, 28, 28). Slices that could pass for a 1 are skipped (see
    UNSLICED_DIGITS, MIN_SLICE_ASPECT, SLICE_INK)."""
    candidates = np.flatnonzero(~np.isin(labels, UNSLICED_DIGITS))
    slices: list[np.ndarray] = []
    while len(slices) < count:
        found = _slice(digits[int(rng.choice(candidates))], rng)
        if found is not None:
            slices.append(ink_to_mnist(found))
    return np.stack(slices)


def digits_with_stub(digits: np.ndarray, count: int, rng: np.random.Generator) -> np.ndarray:
    """`count` digits carrying a thin stub of a touching neighbour at their left or right, as
    a good cut between touching digits leaves them: still one digit, (count, 28, 28)."""
    marked = []
    for _ in range(count):
        digit, neighbour = (ink_columns(digits[i]) for i in rng.choice(len(digits), 2))
        width = max(1, round(rng.uniform(*STUB_WIDTH) * DIGIT_HEIGHT))
        wobble = int(rng.integers(-PAIR_WOBBLE, PAIR_WOBBLE + 1))
        if rng.uniform() < 0.5:  # the neighbour's first columns, on the right
            line = side_by_side(digit, np.roll(neighbour[:, :width], wobble, 0), -1.0)
        else:  # its last columns, on the left
            line = side_by_side(np.roll(neighbour[:, -width:], wobble, 0), digit, -1.0)
        marked.append(ink_to_mnist(line))
    return np.stack(marked)


def ink_columns(digit: np.ndarray) -> np.ndarray:
    """The digit cut to the columns that hold ink."""
    columns = np.flatnonzero((digit >= INK_LEVEL).any(axis=0))
    return digit[:, columns[0] : columns[-1] + 1]


def side_by_side(left: np.ndarray, right: np.ndarray, gap: float) -> np.ndarray:
    """Two equally tall ink images side by side, their nearest ink in any row `gap` pixels
    apart (negative: overlapping)."""
    left_ink, right_ink = left >= INK_LEVEL, right >= INK_LEVEL
    last = np.where(left_ink.any(axis=1), left.shape[1] - 1 - left_ink[:, ::-1].argmax(axis=1), -1)
    first = np.where(right_ink.any(axis=1), right_ink.argmax(axis=1), right.shape[1])
    both = left_ink.any(axis=1) & right_ink.any(axis=1)
    nearest = float((first - last)[both].min()) if both.any() else 1.0 - left.shape[1]
    offset = max(round(gap + 1 - nearest), 1)  # right's first column, counted from left's
    line = np.zeros((left.shape[0], max(left.shape[1], offset + right.shape[1])), np.float32)
    line[:, : left.shape[1]] = left
    placed = line[:, offset : offset + right.shape[1]]
    np.maximum(placed, right, out=placed)
    return line


def _slice(digit: np.ndarray, rng: np.random.Generator) -> np.ndarray | None:
    """The left or right part of a digit cut by a random seam; None if it is too 1-like."""
    ink = ink_columns(digit)
    rows, columns = np.mgrid[: ink.shape[0], : ink.shape[1]]
    seam = rng.uniform(*SLICE_SPAN) * ink.shape[1] + rng.uniform(
        -MAX_SEAM_SLOPE, MAX_SEAM_SLOPE
    ) * (rows - ink.shape[0] / 2)
    side = columns < seam if rng.uniform() < 0.5 else columns >= seam
    part = np.where(side, ink, 0.0).astype(np.float32)
    mask = part >= INK_LEVEL
    share = part.sum() / ink.sum()
    if not SLICE_INK[0] <= share <= SLICE_INK[1] or not mask.any():
        return None
    used_rows, used_columns = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    width = used_columns[-1] - used_columns[0] + 1
    aspect = width / (used_rows[-1] - used_rows[0] + 1)
    return part if aspect >= MIN_SLICE_ASPECT and width <= SLICE_INK[1] * ink.shape[1] else None
