"""One picture's ink → the digits in it, left to right.

Works on the ink map of `digitlab.preprocess.find_ink` (paper and lighting already removed):

1. strokes are ink above Otsu's threshold; 8-connected pieces of ink above the noise floor
   holding few stroke pixels, or far shorter than the line's digits, are specks or paper
   texture and are dropped;
2. the line's digit height is the tallest a column of ink gets (a tilted line's digits are
   each upright enough), and pieces with clear gaps between them form separate groups;
3. each group is read as a chain of parts between cuts: candidate cuts run from top to bottom
   along the least ink near evenly spaced columns and the valleys of the ink profile, so a
   cut through paper costs nothing and a cut through touching strokes crosses them where they
   are thinnest. A part may hold several pieces (a 5 with a detached bar, a broken stroke) or
   a slice of one (touching digits). The chain kept is the one whose parts the `score`
   callback is most sure of, less a penalty per part;
4. left to right, which keeps the order of lines tilted by a few degrees.

No model code here: the classifier comes in only as the `score` callback. Without it, parts
are scored by how close their shape is to a digit's.
"""

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from digitlab.preprocess import MAX_DIGIT_FILL, MIN_DIGIT_SPAN, InkMap, stroke_threshold

# A piece with fewer stroke pixels than this fraction of the largest piece is a speck.
MIN_PIECE_FRACTION = 0.08
# ... and a digit holds at least this many stroke pixels whatever the largest piece.
MIN_DIGIT_PIXELS = 12
# A piece smaller both ways than this fraction of the line's digit height is a speck.
MIN_HEIGHT_FRACTION = 0.35
# The line's digit height: this percentile of the columns' ink heights.
HEIGHT_PERCENTILE = 95
# Pieces at least this wide (fraction of the digit height) may be touching digits.
MIN_SPLIT_WIDTH = 0.7
# A digit is made of at most this many units (pieces or slices of pieces).
MAX_PART_UNITS = 8
# Leaving out a unit no digit can hold costs this much log-score.
SKIP_COST = -20.0
# A part costs GAP_COST per digit height of empty columns it bridges, and CUT_COST per stroke
# its left seam cuts through (as wide as the line's strokes are on average).
GAP_COST = 40.0
CUT_COST = 1.0
# A digit is one body of ink with perhaps small pieces (a detached bar): each further piece
# taller than TALL_PIECE of the digit height in a part costs BODY_COST. It must outweigh what
# two narrow digits side by side lose to the shape prior (a slanted or narrow font's 7 and 5
# each score about a tenth for their shape, a log-score of 2.3, while the pair, as wide as one
# digit, reads as one confident digit): at 3.0 typed "75" and "72" read as one digit; 6.0
# reads 8% more strings typed in handwriting fonts right (with MIN_PART_HEIGHT 0.45 and
# TALL_PIECE 0.6 below), spaced MNIST numbers within one picture in a hundred.
TALL_PIECE = 0.6
BODY_COST = 6.0
# Parts, in units of the digit height: one digit is at most this wide (MNIST: 99.9% are
# under 1.7), and at least this wide and this tall (a handwriting font's 0 may be as short as
# its lower-case letters, half the height of its 7).
MAX_PART_WIDTH = 1.7
MIN_PART_WIDTH = 0.1
MIN_PART_HEIGHT = 0.45
# Candidate cuts: every this fraction of the height, plus the valleys of the ink profile;
# each cut follows the least ink within this far (fraction of the height) either side.
CUT_STEP = 0.2
CUT_BAND = 0.15
# Each part costs this much log-score, so that a digit is split only when the parts are
# clearly better read than the whole.
PART_PENALTY = 0.0
# A part's ink pieces with fewer pixels than this fraction of its largest are slivers of a
# neighbour left behind by a cut.
MIN_SLIVER_FRACTION = 0.15
# Without a scorer: digits' width / height is about this (MNIST median 0.8) ...
TYPICAL_ASPECT = 0.8
# ... give or take this factor (one standard deviation of the log).
ASPECT_SPREAD = 0.35

# (ink patches) → how sure the classifier is that each patch is one digit, 0-1.
Scorer = Callable[[Sequence[np.ndarray]], Sequence[float]]


@dataclass(frozen=True)
class Segment:
    """One digit's ink, cut out of the ink map."""

    ink: np.ndarray  # float32 (h, w): this digit's ink only (0-1), cropped to it
    box: tuple[int, int, int, int]  # x, y, w, h in ink-map pixels


def segment(found: InkMap, *, score: Scorer | None = None) -> list[Segment] | str:
    """The digits in an ink map, left to right; or why there are none."""
    import cv2

    ink = found.ink
    strokes = ink >= stroke_threshold(ink)
    count, labels, stats, _ = cv2.connectedComponentsWithStats(
        (ink > found.noise_floor).astype(np.uint8), connectivity=8
    )
    stroke_counts = np.bincount(labels[strokes], minlength=count)
    stroke_counts[0] = 0  # the background
    largest = int(stroke_counts.max(initial=0))
    if largest < MIN_DIGIT_PIXELS:
        return "no digits found: only specks, nothing like a digit"
    kept = stroke_counts >= max(MIN_PIECE_FRACTION * largest, MIN_DIGIT_PIXELS)
    height = _digit_height(kept[labels])
    # Specks are small both ways; a detached bar is short but as wide as a stroke is long.
    extent = np.maximum(stats[:, cv2.CC_STAT_HEIGHT], stats[:, cv2.CC_STAT_WIDTH])
    kept &= extent >= max(MIN_HEIGHT_FRACTION * height, MIN_DIGIT_SPAN * max(ink.shape))
    kept &= stroke_counts <= MAX_DIGIT_FILL * extent.astype(np.float64) ** 2  # dots, blobs
    if not kept.any():
        return "no digits found: only specks or blobs, nothing like a digit"
    cleaned = np.clip((ink - found.noise_floor) / (1.0 - found.noise_floor), 0.0, 1.0)
    units = _units(cleaned.astype(np.float32), labels, stats, np.flatnonzero(kept), height)
    parts = _candidate_parts(units, height)
    scores = (score or _shape_score)([part.ink for part in parts.values()])
    costs = _part_costs(units, parts, height, _stroke_width(strokes & kept[labels]))
    chain = _best_chain(len(units), dict(zip(parts, scores, strict=True)), costs)
    return [parts[span] for span in chain]


def _digit_height(mask: np.ndarray) -> float:
    """How tall the line's digits are: nearly the tallest run of ink in any column."""
    rows = np.arange(mask.shape[0])[:, None]
    inked = mask.any(axis=0)
    top = np.where(mask, rows, mask.shape[0]).min(axis=0)[inked]
    bottom = np.where(mask, rows, -1).max(axis=0)[inked]
    return float(np.percentile(bottom - top + 1, HEIGHT_PERCENTILE))


def _cropped(piece: Segment) -> Segment:
    """The segment cut down to its ink's bounding box."""
    rows, cols = np.flatnonzero(piece.ink.any(axis=1)), np.flatnonzero(piece.ink.any(axis=0))
    ink = piece.ink[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]
    x, y, _, _ = piece.box
    box = (x + int(cols[0]), y + int(rows[0]), ink.shape[1], ink.shape[0])
    return Segment(np.ascontiguousarray(ink), box)


def _shape_score(patches: Sequence[np.ndarray]) -> list[float]:
    """How digit-like each patch's width / height is (1 at the typical shape)."""
    aspects = np.array([patch.shape[1] / patch.shape[0] for patch in patches])
    spread = np.log(aspects / TYPICAL_ASPECT) / math.log(1 + ASPECT_SPREAD)
    return list(np.exp(-0.5 * spread**2))


# --- units: whole pieces, or slices of pieces wide enough to be touching digits -------------


@dataclass(frozen=True)
class _Unit:
    piece: int  # which connected piece of ink it comes from
    segment: Segment
    cut_ink: float  # ink crossed by the seam on its left, when it is a slice (else 0)
    piece_height: int  # the height of the whole piece


def _units(
    ink: np.ndarray, labels: np.ndarray, stats: np.ndarray, kept: np.ndarray, height: float
) -> list[_Unit]:
    """The pieces of ink a digit is made of, left to right by their centres."""
    import cv2

    units = []
    for label in kept:
        left, top = int(stats[label, cv2.CC_STAT_LEFT]), int(stats[label, cv2.CC_STAT_TOP])
        width, tall = int(stats[label, cv2.CC_STAT_WIDTH]), int(stats[label, cv2.CC_STAT_HEIGHT])
        rows, cols = slice(top, top + tall), slice(left, left + width)
        patch = np.where(labels[rows, cols] == label, ink[rows, cols], 0.0).astype(np.float32)
        piece = Segment(patch, (left, top, width, tall))
        if width >= MIN_SPLIT_WIDTH * height:
            units += [_Unit(int(label), *cut, tall) for cut in _slices(piece, height)]
        else:
            units.append(_Unit(int(label), piece, 0.0, tall))
    return sorted(units, key=lambda unit: unit.segment.box[0] + unit.segment.box[2] / 2)


def _slices(piece: Segment, height: float) -> list[tuple[Segment, float]]:
    """The piece cut along its candidate seams: (slice, ink its left seam crosses), left to
    right."""
    seams = _candidate_seams(piece.ink, height)
    if not seams:
        return [(piece, 0.0)]
    # Sorted per row, seams never cross; a pixel's slice is the number of seams left of it.
    bounds = np.sort(np.stack(seams), axis=0)  # (seams, rows)
    rows, columns = np.arange(piece.ink.shape[0]), np.arange(piece.ink.shape[1])
    index = (columns[None, None, :] >= bounds[:, :, None]).sum(axis=0)  # (rows, cols)
    crossed = [0.0] + [float(piece.ink[rows, np.minimum(b, columns[-1])].sum()) for b in bounds]
    slices = []
    for number in range(len(seams) + 1):
        ink = np.where(index == number, piece.ink, 0.0).astype(np.float32)
        if ink.any():
            slices.append((_cropped(Segment(ink, piece.box)), crossed[number]))
    return slices


def _candidate_seams(ink: np.ndarray, height: float) -> list[np.ndarray]:
    """Cuts from top to bottom, each the path of least ink near an evenly spaced column or a
    valley of the ink profile, left to right."""
    import cv2

    width = ink.shape[1]
    profile = ink.sum(axis=0, dtype=np.float32)[None, :]
    # A valley is the lowest column within a window either side (a grey-level erosion).
    window = 2 * max(1, round(CUT_STEP * height / 2)) + 1
    lowest = cv2.erode(profile, np.ones((1, window), np.uint8), borderType=cv2.BORDER_REPLICATE)
    valleys = np.flatnonzero(profile[0] <= lowest[0])
    grid = np.arange(CUT_STEP * height, width, CUT_STEP * height)
    edge = MIN_PART_WIDTH * height / 2
    columns = sorted({round(c) for c in [*valleys, *grid] if edge < c < width - edge})
    band = max(1, round(CUT_BAND * height))
    seams = [_least_ink_seam(ink, max(0, c - band), min(width - 1, c + band)) for c in columns]
    unique = {seam.tobytes(): seam for seam in seams}
    return sorted(unique.values(), key=lambda seam: float(seam.mean()))


def _least_ink_seam(ink: np.ndarray, low: int, high: int) -> np.ndarray:
    """Per row, the column where a cut from top to bottom within [low, high] crosses the least
    ink, moving at most one column per row (seam carving's dynamic programme)."""
    total = ink[:, low : high + 1].astype(np.float32)
    for row in range(1, len(total)):
        above = total[row - 1]
        beside = np.minimum(np.append(above[1:], np.inf), np.insert(above[:-1], 0, np.inf))
        total[row] += np.minimum(above, beside)
    seam = np.empty(len(total), np.int64)
    seam[-1] = int(np.argmin(total[-1]))
    for row in range(len(total) - 2, -1, -1):
        start = max(seam[row + 1] - 1, 0)
        seam[row] = start + int(np.argmin(total[row, start : seam[row + 1] + 2]))
    return seam + low


# --- parts: runs of units that may be one digit, and the best chain of them ------------------


def _candidate_parts(units: list[_Unit], height: float) -> dict[tuple[int, int], Segment]:
    """Runs of units [i, j) as wide and as tall as one digit can be, each as one segment."""
    boxes = np.array([unit.segment.box for unit in units])
    lefts, tops = boxes[:, 0], boxes[:, 1]
    rights, bottoms = lefts + boxes[:, 2], tops + boxes[:, 3]
    parts = {}
    for i in range(len(units)):
        for j in range(i + 1, min(i + MAX_PART_UNITS, len(units)) + 1):
            left, right = int(lefts[i:j].min()), int(rights[i:j].max())
            if right - left > MAX_PART_WIDTH * height:
                break
            top, bottom = int(tops[i:j].min()), int(bottoms[i:j].max())
            if bottom - top >= MIN_PART_HEIGHT * height:
                parts[(i, j)] = _joined(units[i:j], (left, top, right, bottom))
    return parts


def _joined(units: Sequence[_Unit], bounds: tuple[int, int, int, int]) -> Segment:
    left, top, right, bottom = bounds
    ink = np.zeros((bottom - top, right - left), np.float32)
    for unit in units:
        x, y, w, h = unit.segment.box
        region = ink[y - top : y - top + h, x - left : x - left + w]
        np.maximum(region, unit.segment.ink, out=region)
    return Segment(ink, (left, top, right - left, bottom - top))


def _stroke_width(strokes: np.ndarray) -> float:
    """The strokes' mean width: twice their area over their outline's length."""
    import cv2

    mask = strokes.astype(np.uint8)
    outline = int((mask > cv2.erode(mask, np.ones((3, 3), np.uint8))).sum())
    return max(2.0 * float(mask.sum()) / max(outline, 1), 1.0)


def _part_costs(
    units: list[_Unit], parts: dict[tuple[int, int], Segment], height: float, stroke: float
) -> dict[tuple[int, int], float]:
    """What each part costs besides its score (log units): the part itself, the empty columns
    it bridges (digits are written apart, a digit's pieces close together), and the ink its
    left seam cuts through when it starts inside a piece (touching digits touch lightly)."""
    costs = {}
    for (i, j), part in parts.items():
        gaps = float((~part.ink.any(axis=0)).sum()) / height
        cut = units[i].cut_ink / stroke if i > 0 and units[i - 1].piece == units[i].piece else 0.0
        tall = {unit.piece for unit in units[i:j] if unit.piece_height >= TALL_PIECE * height}
        extra_bodies = max(len(tall) - 1, 0)
        costs[(i, j)] = PART_PENALTY + GAP_COST * gaps + CUT_COST * cut + BODY_COST * extra_bodies
    return costs


def _best_chain(
    units: int, scores: dict[tuple[int, int], float], costs: dict[tuple[int, int], float]
) -> list[tuple[int, int]]:
    """Runs [i, j) covering all units with the highest total log-score less costs. Units no
    chain can cover (too short to be part of a digit) are left out."""
    best = np.full(units + 1, -np.inf)
    best[0] = 0.0
    came_from: dict[int, tuple[int, bool]] = {}  # end → (start, whether [start, end) is a part)
    for j in range(1, units + 1):
        best[j], came_from[j] = best[j - 1] + SKIP_COST, (j - 1, False)
        for i in range(j):
            if (i, j) in scores:
                gain = best[i] + math.log(max(float(scores[(i, j)]), 1e-9)) - costs[(i, j)]
                if gain > best[j]:
                    best[j], came_from[j] = gain, (i, True)
    chain, end = [], units
    while end != 0:
        start, is_part = came_from[end]
        if is_part:
            chain.append((start, end))
        end = start
    return chain[::-1]
