"""One picture's ink → its text lines, and the numbers on each line, as images for the reader.

The sequence reader (`digitlab.reader`) reads one number from a line image LINE_HEIGHT pixels
high. This module finds those images in a picture's ink map (`ink.find_ink`):

1. the layout mask: stroke pixels, without long straight printed lines (ruled paper, the
   edges of a form's boxes), which would join separate lines and numbers, and without specks;
2. the page's tilt: the angle whose row profile is sharpest (text lines give tall narrow
   peaks when level); the ink is turned level;
3. lines: runs of rows holding ink in the levelled mask;
4. numbers: within a line, runs of columns separated by a gap wider than `number_gap` line
   heights (digits of one number, even spaced ones, sit closer);
5. each number's crop of the levelled ink (printed lines included: the reader has learnt to
   look past them), scaled to LINE_HEIGHT.

Every step costs time linear in the ink map's pixels, and the crops are capped in number and
width, so a picture's cost is bounded whatever is in it (`LayoutParams.max_lines`, ...).
"""

import math
from dataclasses import dataclass

import cv2
import numpy as np

LINE_HEIGHT = 32  # the reader's input height in pixels (digitlab.reader)


@dataclass(frozen=True)
class LayoutParams:
    stroke_level: float = 0.35  # ink at or above this is a stroke for the layout
    # Straight printed lines: a horizontal run of strokes this many times the text's height,
    # or a vertical one this many times (a comb field's ticks, shorter, stay).
    printed_line_heights: float = 4.0
    vertical_line_heights: float = 2.5
    min_printed_line: int = 12  # pixels; shorter runs are never taken for printed lines
    flat_piece: float = 4.0  # a piece this many times wider than high is a line, not text
    # Connected pieces of stroke smaller than this share of the text's height squared are specks.
    speck_area: float = 0.02
    min_line_height: int = 6  # pixels; a band of ink lower than this is not a line of text
    max_tilt: float = 8.0  # degrees either way the page may be turned
    tilt_step: float = 0.5
    # Rows of ink closer than this share of the taller band are one line (a 5's detached bar).
    line_join: float = 0.15
    # In line heights: a wider gap between ink ends a number. Spaced digits of one number sit
    # up to 0.8 digit heights apart in the test pictures; numbers apart, 2 heights or more.
    number_gap: float = 1.25
    # Room kept around a number's ink in its crop, in line heights (above and below / each side).
    margin_y: float = 0.12
    margin_x: float = 0.25
    # Bounds on the work one picture can cause, whatever is in it.
    max_lines: int = 40
    max_numbers: int = 200  # per picture
    max_line_width: int = 1600  # pixels of a line image; wider lines are squeezed to this


LAYOUT = LayoutParams()


@dataclass(frozen=True)
class NumberImage:
    """One number's line image and where it came from."""

    pixels: np.ndarray  # float32 (LINE_HEIGHT, width) in [0, 1], white ink on black
    line: int  # which text line it is on, 0 = top
    ink: np.ndarray  # float32: its crop of the levelled ink map, before scaling
    x_scale: float  # ink-map pixels per line-image column
    origin: tuple[float, float]  # (x, y) of the crop's top-left corner in the levelled map
    rotation: np.ndarray  # (2, 3) affine map from levelled to original ink-map coordinates

    def box(self, first: int, last: int) -> tuple[float, float, float, float]:
        """The bounding box (x, y, w, h) in the original ink map of the ink in line-image
        columns first..last (inclusive)."""
        x0 = math.floor(first * self.x_scale)
        x1 = min(self.ink.shape[1], math.ceil((last + 1) * self.x_scale))
        rows = np.flatnonzero((self.ink[:, x0:x1] >= LAYOUT.stroke_level).any(axis=1))
        y0, y1 = (rows[0], rows[-1] + 1) if rows.size else (0, self.ink.shape[0])
        corners = np.array([[x0, y0], [x1, y0], [x0, y1], [x1, y1]], np.float64) + np.array(
            self.origin
        )
        mapped = corners @ self.rotation[:, :2].T + self.rotation[:, 2]
        left, top = mapped.min(axis=0)
        right, bottom = mapped.max(axis=0)
        return float(left), float(top), float(right - left), float(bottom - top)


def find_numbers(ink: np.ndarray) -> list[NumberImage]:
    """The numbers in an ink map (float32, 0 paper .. 1 stroke), top line first, left to right."""
    mask = ink >= LAYOUT.stroke_level
    if not mask.any():
        return []
    text_height = _text_height(mask)
    mask = _without_specks(_without_printed_lines(mask, text_height), text_height)
    if not mask.any():
        return []
    angle = _tilt(mask)
    level_ink, level_mask, rotation = _levelled(ink, mask, angle)
    numbers: list[NumberImage] = []
    for index, (top, bottom) in enumerate(_bands(level_mask)[: LAYOUT.max_lines]):
        inked = np.asarray(level_mask[top:bottom].any(axis=0))
        for left, right in _runs(inked, LAYOUT.number_gap * (bottom - top)):
            numbers.append(_crop(level_ink, (top, bottom, left, right), index, rotation))
            if len(numbers) == LAYOUT.max_numbers:
                return numbers
    return numbers


def _text_height(mask: np.ndarray) -> float:
    """A typical height of the picture's marks: the ink-weighted median height of its pieces
    (so that dots do not decide it), leaving out flat pieces (ruled lines, underlines)."""
    count, _, stats, _ = cv2.connectedComponentsWithStats(mask.astype(np.uint8), connectivity=8)
    heights, areas = stats[1:, cv2.CC_STAT_HEIGHT], stats[1:, cv2.CC_STAT_AREA]
    upright = stats[1:, cv2.CC_STAT_WIDTH] <= LAYOUT.flat_piece * heights
    if upright.any():
        heights, areas = heights[upright], areas[upright]
    if heights.size == 0:
        return float(mask.shape[0])
    order = np.argsort(heights)
    cumulative = np.cumsum(areas[order])
    return float(heights[order][np.searchsorted(cumulative, cumulative[-1] / 2)])


def _without_printed_lines(mask: np.ndarray, text_height: float) -> np.ndarray:
    """The mask less long straight horizontal and vertical runs (ruled lines, box edges)."""
    strokes = mask.astype(np.uint8)
    across = max(LAYOUT.min_printed_line, round(LAYOUT.printed_line_heights * text_height))
    down = max(LAYOUT.min_printed_line, round(LAYOUT.vertical_line_heights * text_height))
    horizontal = cv2.morphologyEx(strokes, cv2.MORPH_OPEN, np.ones((1, across), np.uint8))
    vertical = cv2.morphologyEx(strokes, cv2.MORPH_OPEN, np.ones((down, 1), np.uint8))
    return mask & ~(horizontal.astype(bool) | vertical.astype(bool))


def _without_specks(mask: np.ndarray, text_height: float) -> np.ndarray:
    count, labels, stats, _ = cv2.connectedComponentsWithStats(
        mask.astype(np.uint8), connectivity=8
    )
    keep = stats[:, cv2.CC_STAT_AREA] >= max(3.0, LAYOUT.speck_area * text_height**2)
    keep[0] = False
    return keep[labels]


def _tilt(mask: np.ndarray) -> float:
    """The page's tilt in degrees: the angle whose sheared row profile has the most energy."""
    small = _shrunk(mask, 256)
    ys, xs = np.nonzero(small)
    if ys.size == 0:
        return 0.0
    xs = xs - small.shape[1] / 2
    best, best_energy = 0.0, -1.0
    for angle in np.arange(
        -LAYOUT.max_tilt, LAYOUT.max_tilt + LAYOUT.tilt_step / 2, LAYOUT.tilt_step
    ):
        rows = np.round(ys - xs * math.tan(math.radians(angle))).astype(np.int64)
        profile = np.bincount(rows - rows.min())
        energy = float((profile.astype(np.float64) ** 2).sum())
        if energy > best_energy * (1 + 1e-9) or (energy == best_energy and abs(angle) < abs(best)):
            best, best_energy = float(angle), energy
    return best


def _shrunk(mask: np.ndarray, side: int) -> np.ndarray:
    factor = math.ceil(max(mask.shape) / side)
    if factor <= 1:
        return mask
    h, w = mask.shape[0] // factor * factor, mask.shape[1] // factor * factor
    if h == 0 or w == 0:
        return mask
    return np.asarray(
        mask[:h, :w].reshape(h // factor, factor, w // factor, factor).any(axis=(1, 3))
    )


def _levelled(
    ink: np.ndarray, mask: np.ndarray, angle: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The ink and mask turned by -angle (so the text is level), and the affine map from the
    levelled coordinates back to the original ones."""
    if angle == 0.0:
        return ink, mask, np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
    h, w = ink.shape
    centre = (w / 2, h / 2)
    forward = cv2.getRotationMatrix2D(centre, angle, 1.0)  # original → levelled
    cos, sin = abs(forward[0, 0]), abs(forward[0, 1])
    new_w, new_h = math.ceil(w * cos + h * sin), math.ceil(w * sin + h * cos)
    forward[:, 2] += (new_w / 2 - centre[0], new_h / 2 - centre[1])
    size = (new_w, new_h)
    level_ink = cv2.warpAffine(ink, forward, size, flags=cv2.INTER_LINEAR)
    level_mask = cv2.warpAffine(mask.astype(np.uint8), forward, size, flags=cv2.INTER_NEAREST)
    return level_ink, level_mask.astype(bool), cv2.invertAffineTransform(forward)


def _bands(mask: np.ndarray) -> list[tuple[int, int]]:
    """(top, bottom) of each line of text, bottom exclusive."""
    runs = _runs(np.asarray(mask.any(axis=1)), 0)
    joined: list[tuple[int, int]] = []
    for top, bottom in runs:
        if joined:
            last_top, last_bottom = joined[-1]
            tallest = max(bottom - top, last_bottom - last_top)
            if top - last_bottom < LAYOUT.line_join * tallest:
                joined[-1] = (last_top, bottom)
                continue
        joined.append((top, bottom))
    return [(top, bottom) for top, bottom in joined if bottom - top >= LAYOUT.min_line_height]


def _runs(filled: np.ndarray, min_gap: float) -> list[tuple[int, int]]:
    """(start, end) of runs of True, end exclusive, joining runs whose gap is under `min_gap`."""
    padded = np.concatenate([[False], filled, [False]])
    edges = np.flatnonzero(padded[1:] != padded[:-1])
    runs: list[tuple[int, int]] = []
    for start, end in zip(edges[::2], edges[1::2], strict=True):
        if runs and start - runs[-1][1] < min_gap:
            runs[-1] = (runs[-1][0], int(end))
        else:
            runs.append((int(start), int(end)))
    return runs


def _crop(
    ink: np.ndarray, bounds: tuple[int, int, int, int], line: int, rotation: np.ndarray
) -> NumberImage:
    top, bottom, left, right = bounds
    height = bottom - top
    margin_y, margin_x = round(LAYOUT.margin_y * height), round(LAYOUT.margin_x * height)
    y0, y1 = max(0, top - margin_y), min(ink.shape[0], bottom + margin_y)
    x0, x1 = max(0, left - margin_x), min(ink.shape[1], right + margin_x)
    crop = np.ascontiguousarray(ink[y0:y1, x0:x1])
    scale = LINE_HEIGHT / crop.shape[0]
    width = min(LAYOUT.max_line_width, max(LINE_HEIGHT // 2, round(crop.shape[1] * scale)))
    interpolation = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
    pixels = cv2.resize(crop, (width, LINE_HEIGHT), interpolation=interpolation)
    return NumberImage(
        pixels=np.clip(pixels, 0.0, 1.0).astype(np.float32),
        line=line,
        ink=crop,
        x_scale=crop.shape[1] / width,
        origin=(float(x0), float(y0)),
        rotation=rotation,
    )
