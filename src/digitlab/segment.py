"""One picture's ink → the digits in it, left to right.

Works on the ink map of `digitlab.preprocess.find_ink` (paper and lighting already removed):

1. strokes are ink above Otsu's threshold; each 8-connected piece of ink above the noise floor
   that holds enough stroke pixels is a candidate (specks hold almost none);
2. pieces that lie above one another (a 5's detached bar, a broken stroke, the dot of a
   stroke that skipped) are merged: digits in a line sit side by side, never stacked;
3. pieces far shorter than the line's digits are specks or paper texture and are dropped;
4. pieces wider than a digit can be are touching digits: candidate cuts come from the
   vertical ink profile (thin columns between two bodies), and when a scoring function is
   given the cut it is most sure of wins;
5. left to right by the centre of each piece, which keeps the order of lines tilted by a
   few degrees.

No model code here: the classifier comes in only as the optional `score` callback.
"""

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from itertools import combinations

import numpy as np

from digitlab.preprocess import InkMap, stroke_threshold

# A piece with fewer stroke pixels than this fraction of the largest piece is a speck.
MIN_PIECE_FRACTION = 0.08
# ... and a digit holds at least this many stroke pixels whatever the largest piece.
MIN_DIGIT_PIXELS = 12
# Pieces overlapping horizontally by this fraction of the narrower one's width are one digit.
MERGE_OVERLAP = 0.5
# A piece shorter than this fraction of the line's tallest digits is a speck or texture.
MIN_HEIGHT_FRACTION = 0.35

# (ink patches) → how sure the classifier is that each patch is one digit, 0-1.
Scorer = Callable[[Sequence[np.ndarray]], Sequence[float]]


@dataclass(frozen=True)
class Segment:
    """One digit's ink, cut out of the ink map."""

    ink: np.ndarray  # float32 (h, w): this digit's ink only (0-1), other pieces removed
    box: tuple[int, int, int, int]  # x, y, w, h in ink-map pixels


@dataclass(frozen=True)
class _Piece:
    mask: np.ndarray  # bool (H, W) over the whole map
    left: int
    top: int
    right: int  # exclusive
    bottom: int  # exclusive
    strokes: int  # stroke pixels in it

    @property
    def width(self) -> int:
        return self.right - self.left

    @property
    def height(self) -> int:
        return self.bottom - self.top


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
    keep = np.flatnonzero(stroke_counts >= max(MIN_PIECE_FRACTION * largest, MIN_DIGIT_PIXELS))
    pieces = [_piece(labels == label, stats[label], int(stroke_counts[label])) for label in keep]
    pieces = _drop_short(_merge_stacked(pieces))
    pieces.sort(key=lambda piece: piece.left + piece.right)
    cleaned = np.clip((ink - found.noise_floor) / (1.0 - found.noise_floor), 0.0, 1.0)
    return [_cut_out(cleaned, piece) for piece in pieces]


def _piece(mask: np.ndarray, stats: np.ndarray, strokes: int) -> _Piece:
    import cv2

    left, top = int(stats[cv2.CC_STAT_LEFT]), int(stats[cv2.CC_STAT_TOP])
    width, height = int(stats[cv2.CC_STAT_WIDTH]), int(stats[cv2.CC_STAT_HEIGHT])
    return _Piece(mask, left, top, left + width, top + height, strokes)


def _merged(a: _Piece, b: _Piece) -> _Piece:
    return _Piece(
        a.mask | b.mask,
        min(a.left, b.left),
        min(a.top, b.top),
        max(a.right, b.right),
        max(a.bottom, b.bottom),
        a.strokes + b.strokes,
    )


def _overlap(a: _Piece, b: _Piece) -> float:
    """Horizontal overlap as a fraction of the narrower piece's width."""
    shared = min(a.right, b.right) - max(a.left, b.left)
    return shared / max(min(a.width, b.width), 1)


def _merge_stacked(pieces: list[_Piece]) -> list[_Piece]:
    """Merge pieces lying above one another until no two overlap enough."""
    pieces = sorted(pieces, key=lambda piece: -piece.strokes)
    merged = True
    while merged:
        merged = False
        for i, j in combinations(range(len(pieces)), 2):
            if _overlap(pieces[i], pieces[j]) >= MERGE_OVERLAP:
                pieces[i] = _merged(pieces[i], pieces[j])
                del pieces[j]
                merged = True
                break
    return pieces


def _drop_short(pieces: list[_Piece]) -> list[_Piece]:
    """Drop pieces much shorter than the line's digits (specks, texture)."""
    if not pieces:
        return pieces
    tallest = max(piece.height for piece in pieces)
    return [piece for piece in pieces if piece.height >= MIN_HEIGHT_FRACTION * tallest]


def _cut_out(ink: np.ndarray, piece: _Piece) -> Segment:
    rows, cols = slice(piece.top, piece.bottom), slice(piece.left, piece.right)
    patch = np.where(piece.mask[rows, cols], ink[rows, cols], 0.0).astype(np.float32)
    return Segment(patch, (piece.left, piece.top, piece.width, piece.height))
