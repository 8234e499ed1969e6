"""What is on paper besides numbers: words, doodles, and printed lines, boxes and comb fields.

All at MNIST's scale (digits about DIGIT_HEIGHT px high), as ink coverage in [0, 1]. The
reader learns to answer nothing for words and doodles, and to read digits through the lines
of a form: ruled paper, an underline, a box around the number, one box per digit.
"""

from collections.abc import Sequence

import numpy as np
from PIL import Image, ImageDraw

from digitlab.synth.doodles import CANVAS, KINDS_OF_DOODLE
from digitlab.synth.fonts import crop_to_ink, type_text
from digitlab.synth.nondigits import LETTERS
from digitlab.synth.numbers import DIGIT_HEIGHT


def word(fonts: Sequence[str], rng: np.random.Generator) -> np.ndarray:
    """1-8 letters none of which looks like a digit (no O, l, S, Z ...), typed in one font."""
    length = int(rng.integers(1, 9))
    text = "".join(rng.choice(list(LETTERS), size=length))
    if length > 3 and rng.uniform() < 0.5:
        text = text.capitalize() if rng.uniform() < 0.5 else text.lower()
    font = fonts[int(rng.integers(len(fonts)))]
    return type_text(text, font, float(rng.uniform(-0.05, 0.3)))


def doodles(rng: np.random.Generator) -> np.ndarray:
    """1-4 doodles (stars, hearts, smileys, hatching, scribbles, spirals ...) in a row."""
    marks = []
    for _ in range(int(rng.integers(1, 5))):
        image = Image.new("L", (CANVAS, CANVAS), 0)
        width = int(rng.integers(4, 14))
        # Each kind of doodle as often (the detector's list weighs tangles up for its needs).
        KINDS_OF_DOODLE[int(rng.integers(len(KINDS_OF_DOODLE)))](ImageDraw.Draw(image), rng, width)
        mark = crop_to_ink(np.asarray(image, np.float32) / 255.0)
        height = DIGIT_HEIGHT * rng.uniform(0.7, 1.6)
        marks.append(_resized(mark, height / mark.shape[0]))
    gaps = [int(rng.integers(2, 2 * DIGIT_HEIGHT)) for _ in marks]
    height = max(m.shape[0] for m in marks)
    line = np.zeros((height, sum(m.shape[1] for m in marks) + sum(gaps)), np.float32)
    x = 0
    for mark, gap in zip(marks, gaps, strict=True):
        top = (height - mark.shape[0]) // 2
        line[top : top + mark.shape[0], x : x + mark.shape[1]] = mark
        x += mark.shape[1] + gap
    return crop_to_ink(line)


def _resized(ink: np.ndarray, factor: float) -> np.ndarray:
    size = (max(1, round(ink.shape[1] * factor)), max(1, round(ink.shape[0] * factor)))
    return np.asarray(Image.fromarray(ink).resize(size, Image.Resampling.BILINEAR), np.float32)


# --- printed lines -------------------------------------------------------------------------


def _printed(rng: np.random.Generator) -> tuple[int, float]:
    """A printed line's thickness (px at MNIST scale) and strength (coverage)."""
    return int(rng.choice([1, 1, 2])), float(rng.uniform(0.5, 1.0))


def with_printed_lines(line: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """The ink on a form: underlined, on ruled paper, or boxed; a margin of paper around."""
    kind = rng.choice(["underline", "ruled", "box"])
    pad_y = round(DIGIT_HEIGHT * rng.uniform(0.3, 0.8))
    pad_x = round(DIGIT_HEIGHT * rng.uniform(0.3, 1.5))
    sheet = np.pad(line, ((pad_y, pad_y), (pad_x, pad_x)))
    thick, strength = _printed(rng)
    h, w = sheet.shape
    if kind == "underline":
        y = min(h - thick, pad_y + line.shape[0] + int(rng.integers(-2, 4)))
        _hline(sheet, y, 0, w, thick, strength)
    elif kind == "ruled":
        spacing = round(DIGIT_HEIGHT * rng.uniform(1.2, 1.8))
        start = pad_y + line.shape[0] + int(rng.integers(-3, 4))
        for y in range(start % spacing, h - thick, spacing):
            _hline(sheet, y, 0, w, thick, strength)
    else:
        _rectangle(sheet, 0, 0, w, h, thick, strength)
    return sheet


def comb_field(glyphs: Sequence[np.ndarray], cells: int, rng: np.random.Generator) -> np.ndarray:
    """Digits written one per cell of a printed comb field of `cells` cells (at least one per
    digit; spare cells stay empty): boxes, or a base line with ticks between cells."""
    cell_h = round(DIGIT_HEIGHT * rng.uniform(1.2, 1.6))
    cell_w = round(cell_h * rng.uniform(0.7, 1.2))
    thick, strength = _printed(rng)
    sheet = np.zeros((cell_h + 2 * thick, cells * cell_w + thick + 1), np.float32)
    boxes = rng.uniform() < 0.6
    for k in range(cells + 1):
        x = k * cell_w
        tick = 0 if boxes else round(cell_h * rng.uniform(0.3, 0.6)) if 0 < k < cells else 0
        _vline(sheet, x, tick, cell_h + thick, thick, strength)
    _hline(sheet, cell_h, 0, sheet.shape[1], thick, strength)
    if boxes:
        _hline(sheet, 0, 0, sheet.shape[1], thick, strength)
    first = int(rng.integers(0, cells - len(glyphs) + 1))
    for k, glyph in enumerate(glyphs):
        glyph = glyph[: cell_h - 2, : cell_w - 2]
        spare_y, spare_x = cell_h - glyph.shape[0], cell_w - glyph.shape[1]
        y = thick + int(rng.integers(max(1, spare_y // 4), max(2, spare_y - spare_y // 4 + 1)))
        x = (first + k) * cell_w + thick + int(rng.integers(0, max(1, spare_x - thick)))
        region = sheet[y : y + glyph.shape[0], x : x + glyph.shape[1]]
        np.maximum(region, glyph[: region.shape[0], : region.shape[1]], out=region)
    return sheet


def empty_form(rng: np.random.Generator) -> np.ndarray:
    """Printed lines with nothing written: an empty comb field, box or ruled sheet."""
    if rng.uniform() < 0.5:
        return comb_field([], int(rng.integers(2, 11)), rng)
    blank = np.zeros((DIGIT_HEIGHT, round(DIGIT_HEIGHT * rng.uniform(2, 12))), np.float32)
    return with_printed_lines(blank, rng)


def _hline(sheet: np.ndarray, y: int, x0: int, x1: int, thick: int, strength: float) -> None:
    region = sheet[max(0, y) : y + thick, x0:x1]
    np.maximum(region, strength, out=region)


def _vline(sheet: np.ndarray, x: int, y0: int, y1: int, thick: int, strength: float) -> None:
    region = sheet[y0:y1, max(0, x) : x + thick]
    np.maximum(region, strength, out=region)


def _rectangle(
    sheet: np.ndarray, x0: int, y0: int, x1: int, y1: int, thick: int, strength: float
) -> None:
    _hline(sheet, y0, x0, x1, thick, strength)
    _hline(sheet, y1 - thick, x0, x1, thick, strength)
    _vline(sheet, x0, y0, y1, thick, strength)
    _vline(sheet, x1 - thick, y0, y1, thick, strength)


def tilted(ink: np.ndarray, degrees: float) -> np.ndarray:
    """The ink turned by `degrees` (counter-clockwise), the canvas grown to hold it."""
    if abs(degrees) < 1e-3:
        return ink
    image = Image.fromarray(ink).rotate(degrees, Image.Resampling.BILINEAR, expand=True)
    return np.clip(np.asarray(image, np.float32), 0.0, 1.0)


def stacked(lines: Sequence[np.ndarray], gaps: Sequence[int], offsets: Sequence[int]) -> np.ndarray:
    """Lines of ink one below the other, `gaps[i]` rows apart, each shifted right by offsets[i]."""
    width = max(line.shape[1] + offset for line, offset in zip(lines, offsets, strict=True))
    height = sum(line.shape[0] for line in lines) + sum(gaps)
    sheet = np.zeros((height, width), np.float32)
    y = 0
    for index, (line, offset) in enumerate(zip(lines, offsets, strict=True)):
        sheet[y : y + line.shape[0], offset : offset + line.shape[1]] = line
        y += line.shape[0] + (gaps[index] if index < len(gaps) else 0)
    return sheet


def side_by_side(parts: Sequence[np.ndarray], gaps: Sequence[int]) -> np.ndarray:
    """Parts of ink on one line (bottoms aligned), `gaps[i]` columns apart."""
    height = max(p.shape[0] for p in parts)
    width = sum(p.shape[1] for p in parts) + sum(gaps)
    sheet = np.zeros((height, width), np.float32)
    x = 0
    for index, part in enumerate(parts):
        sheet[height - part.shape[0] :, x : x + part.shape[1]] = part
        x += part.shape[1] + (gaps[index] if index < len(gaps) else 0)
    return sheet
