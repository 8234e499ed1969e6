"""Any image → MNIST format: one digit, white ink on black, 28×28, the way MNIST was made.

MNIST digits are light on dark, size-normalised so the longest side fits a 20×20 box (aspect
kept, anti-aliased) and placed in 28×28 with the centre of mass at the centre. Photos, scans
and canvas drawings are none of that: dark ink on light paper, large, off-centre, unevenly lit,
noisy and JPEG-compressed. A naive resize reads fewer than half of them; `preprocess_image`
undoes each difference in turn:

1. grey levels (alpha composited, 16-bit scaled, EXIF orientation applied by `open_image`),
   box-averaged down to at most 512 px;
2. polarity: ink is the minority, so split the picture with Otsu's threshold and see which
   side is smaller (MNIST-style light ink, or ink on paper);
3. the paper: a quadratic surface fitted to each block's paper-side level, rejecting blocks
   that are ink, its curvature held back; lighting gradients and vignetting go away, and a
   surface that smooth can't follow strokes;
4. the ink: deviation from the paper beyond how far noise reaches, scaled so stroke cores
   are 1; nothing clearly beyond the noise → no digit;
5. strokes above Otsu's threshold, their anti-aliased edges connected to them (hysteresis),
   and specks dropped by connected components; only specks or blobs → no digit;
6. hollow strokes (an outline font, a stroke traced twice) filled; crop to the ink, longest
   side to 20 px (Lanczos), paste by centre of mass into 28×28.

Measured on 100 real MNIST test digits rendered as random photos by `digitlab.synth.photos`:
the result correlates with the original digit at 0.945 on average (0.85 at the 10th
percentile; a naive resize: -0.15), in about 5 ms for a 200×200 photo on one CPU core. A
clean MNIST digit comes back unchanged up to 3 grey levels.
"""

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from digitlab.errors import ImageError

# open_image and MAX_BYTES are re-exported: they lived here before images.py.
from digitlab.images import MAX_BYTES as MAX_BYTES
from digitlab.images import open_image as open_image
from digitlab.images import to_grey

MNIST_SIZE = 28  # the output is 28×28
BOX_SIZE = 20  # the digit's longest side, as in MNIST
# MNIST centres of mass sit at index (14.0, 14.0) on average (each within ±1), not at 13.5.
CENTRE = 14.0

# Larger images are box-averaged down to this longest side first: a digit spanning a tenth
# of the picture still has 50 px, plenty for a 20 px result, and every step stays fast.
WORKING_SIZE = 512
# The paper is fitted to one level per block, in a grid this many blocks across.
PAPER_GRID = 16
# The paper's curvature (coefficients of u², uv, v² with u, v in [-1, 1]) weighs in the fit as
# much as this many blocks' squared misfits: little beside a full grid of paper blocks, but it
# keeps the surface from bending into a stroke where paper shows only along two edges (a tight
# crop of a narrow 1). Tight crops read right (bench/read_numbers.py --kinds tight): 95.5% with
# no penalty, 96% at 1, 98% at 10, 97.5% at 30.
CURVATURE_PENALTY = 10.0
# Rounds of rejecting blocks that are ink and fitting the paper again.
PAPER_FIT_ROUNDS = 4
# Light ink must cover less of the picture than this (MNIST digits cover about 20%).
MAX_LIGHT_INK_SHARE = 0.4
# The lighter side's share says clearly which is ink outside these bounds; within them the
# picture's edge decides, when this share of it is on one side.
CLEAR_LIGHT_INK_SHARE = 0.25
CLEAR_DARK_INK_SHARE = 0.6
CLEAR_EDGE_SHARE = 0.75
# A block's level is this quantile (percent) from its paper side: paper if a quarter is.
PAPER_SIDE_QUANTILE = 75
# Paper lies within this distance of the fitted surface (uneven paper, misfit, noise).
PAPER_WINDOW = 0.05
# Ink must exceed this many noise levels (a Gaussian does so once in 700 pixels).
NOISE_MARGIN = 3.0
# Ink must differ from the paper by this much (about 20 grey levels) and reach this many
# times as far as noise does; fainter marks are not reported as a digit.
MIN_INK_CONTRAST = 0.08
MIN_INK_TO_FLOOR = 2.0
# Ink pieces with fewer stroke pixels than this fraction of the largest piece are specks.
MIN_PIECE_FRACTION = 0.1
# Stroke cores are near 1 after scaling, edges fall to 0: Otsu's threshold lands between.
STROKE_THRESHOLD_RANGE = (0.3, 0.6)
# A digit's main piece needs at least this many stroke pixels, and must span at least this
# fraction of the image's longest side: dust is smaller, and a digit smaller than that in a
# photo or scan is too small to read anyway (crop closer).
MIN_DIGIT_PIXELS = 12
MIN_DIGIT_SPAN = 1 / 20
# Strokes cover at most about 70% of the square around an MNIST digit (a bold 0 or 8); a dot
# or blob covers more (a disc: 79%) and would be blown up to a 20 px blob, so it is no digit.
MAX_DIGIT_FILL = 0.75
# The digit's bounding box is taken where the ink reaches this level: above the faint halo
# that blur and JPEG ringing leave around strokes, below the stroke edges themselves.
BOX_INK_LEVEL = 0.25
# Output pixels resampled around the box on each side, for the soft edges outside it.
EDGE_MARGIN = 2
# Hollow strokes (an outline font, a pen stroke traced twice): closing the strokes with a disc
# this wide (fraction of the digit's height) fills the thin gap between the two lines of each
# stroke, but no loop of a 0, 6, 8 or 9, which are wider. The strokes count as hollow when the
# closing adds more than HOLLOW_SHARE of their area: on 1,200 MNIST test digits drawn as photos
# (wild, tight, blurred, low-res) it adds at most 0.30 (99% under 0.21); on digits typed in the
# outline font femkeklaver at least 0.30 (median 0.52), on outlined MNIST digits (dilated less
# eroded strokes, digitlab.synth.photos) 0.41 or more for 80% of them. Strokes are ink above
# HOLLOW_INK_LEVEL.
HOLLOW_CLOSING = 0.15
HOLLOW_SHARE = 0.4
HOLLOW_INK_LEVEL = 0.3
# ... unless a disc wider than this fraction of the height fits inside the filled strokes: then
# they are a block (hatching: 0.52 and wider), not strokes (outlined MNIST digits: at most 0.46).
MAX_FILLED_STROKE = 0.5


@dataclass(frozen=True)
class Preprocessed:
    """A digit in MNIST format, or the reason there is none."""

    pixels: torch.Tensor | None  # float32 (1, 28, 28) in [0, 1], white ink on black
    reason: str | None  # why no digit, e.g. "no digit found: the image is blank"

    def __post_init__(self) -> None:
        if (self.pixels is None) == (self.reason is None):
            raise ValueError("Preprocessed needs exactly one of pixels and reason")


def preprocess_path(source: str | Path | bytes) -> Preprocessed:
    """`open_image` then `preprocess_image`."""
    return preprocess_image(open_image(source))


def preprocess_image(image: Image.Image) -> Preprocessed:
    """Find the digit in any picture and return it in MNIST format (see the module notes)."""
    found = find_ink(image)
    if isinstance(found, str):
        return Preprocessed(None, found)
    digit = _keep_digit(found.ink, found.noise_floor)
    if digit is None:
        return Preprocessed(None, "no digit found: only specks or blobs, nothing like a digit")
    return Preprocessed(torch.from_numpy(ink_to_mnist(digit)).unsqueeze(0), None)


@dataclass(frozen=True)
class InkMap:
    """Where the ink is in a picture: steps 1-4 of the module notes, before any digit is picked."""

    ink: np.ndarray  # float32 (H, W) in [0, 1]: 0 is paper, 1 a stroke's core
    noise_floor: float  # ink at or below this may be noise (same scale as `ink`)
    scale: float  # original pixels per pixel of `ink` (it is box-averaged down to WORKING_SIZE)


def find_ink(image: Image.Image, working_size: int = WORKING_SIZE) -> InkMap | str:
    """The picture's ink, light or dark, paper and lighting removed, box-averaged down to at
    most `working_size` pixels on its longest side; or why there is none."""
    if image.width == 0 or image.height == 0:
        return "no digit found: the image is empty (0 pixels)"
    grey, scale = _working_grey(image, working_size)
    if np.ptp(grey) < 1.5 / 255:
        return "no digit found: the image is blank (one uniform colour)"
    noise = _noise_level(grey)
    light_ink = _ink_is_light(grey)
    # Now that the ink's side is known, fit the paper to the paper side of each block, so
    # that blocks mostly covered by ink (tight crops, bold strokes) still show paper.
    if light_ink:
        paper = _fit_paper(grey, 100 - PAPER_SIDE_QUANTILE, ink_side=1)
    else:
        paper = _fit_paper(grey, PAPER_SIDE_QUANTILE, ink_side=-1)
    signed = grey - paper if light_ink else paper - grey  # ink > 0, paper ≈ 0
    signed -= _paper_offset(signed, noise)  # the paper-side quantile sits a little inkward
    floor = _noise_floor(signed, noise)
    level = _ink_level(np.clip(signed, 0.0, None), floor)
    if level < max(MIN_INK_CONTRAST, MIN_INK_TO_FLOOR * floor):
        return "no digit found: the image is blank apart from faint marks or noise"
    return InkMap(np.clip(signed / level, 0.0, 1.0), floor / level, scale)


def preprocess_pixels(pixels: Sequence[Sequence[int]]) -> Preprocessed:
    """Check 28×28 integers 0-255 already in MNIST format (white ink on black) and scale /255."""
    array = _validated_pixels(pixels)
    if array.max() < MIN_INK_CONTRAST * 255:
        return Preprocessed(None, "no digit found: all pixels are (nearly) black")
    as_float = torch.from_numpy(array.astype(np.float32) / 255.0)
    return Preprocessed(as_float.unsqueeze(0), None)


# --- finding the ink -----------------------------------------------------------------------


def _working_grey(image: Image.Image, working_size: int) -> tuple[np.ndarray, float]:
    """Grey levels in [0, 1] as float32, box-averaged down to at most `working_size`, and the
    factor it was reduced by."""
    grey = to_grey(image)
    factor = math.ceil(max(grey.size) / working_size)
    if factor > 1:
        grey = grey.reduce(factor)
    return np.asarray(grey, dtype=np.float32) / 255.0, float(max(factor, 1))


def _fit_paper(grey: np.ndarray, quantile: float, ink_side: int = 0) -> np.ndarray:
    """The paper's brightness everywhere: a quadratic surface fitted to block quantiles.

    A quadratic is too smooth to follow strokes, yet follows lighting gradients and
    vignetting. Blocks far from the fit are taken for ink and the fit repeated without them.
    With `ink_side` unknown (0) that is on both sides of a first guess of one flat level. With
    the ink's side known (+1 lighter, -1 darker), the first guess is the blocks on the paper
    side of Otsu's split of block levels, and only blocks on the ink side are rejected, so
    the fit holds even where strokes cover half the blocks (tight crops, bold strokes).
    """
    ys, xs, levels = _block_quantiles(grey, quantile)
    basis = _quadratic_basis(ys, xs, grey.shape)
    if ink_side:
        split = _otsu_threshold(np.clip(levels, 0.0, 1.0))
        inliers = (levels - split) * ink_side <= 0
    else:
        residual = levels - _median(levels)
        inliers = np.abs(residual) <= _tolerance(residual)
    coefficients = None
    for _ in range(PAPER_FIT_ROUNDS):
        if inliers.sum() < basis.shape[1]:
            break
        coefficients = _least_squares(basis[inliers], levels[inliers])
        residual = levels - basis @ coefficients
        tolerance = _tolerance(residual[inliers])
        kept = residual * ink_side <= tolerance if ink_side else np.abs(residual) <= tolerance
        if np.array_equal(kept, inliers):  # the same blocks would give the same fit again
            break
        inliers = kept
    if coefficients is None:  # too few blocks to fit a surface: assume even lighting
        return np.full(grey.shape, _median(levels), dtype=np.float32)
    return _evaluate_quadratic(coefficients, grey.shape)


def _least_squares(basis: np.ndarray, levels: np.ndarray) -> np.ndarray:
    """The quadratic's coefficients, its curvature held back by CURVATURE_PENALTY.

    Where paper shows only along two edges (a narrow 1 cropped tightly), plain least squares
    may bend the surface down into the stroke between them, and the stroke becomes paper.
    """
    curvature = np.sqrt(CURVATURE_PENALTY) * np.eye(basis.shape[1])[3:]  # the u², uv, v² terms
    augmented = np.concatenate([basis, curvature])
    targets = np.concatenate([levels, np.zeros(len(curvature), levels.dtype)])
    return np.linalg.lstsq(augmented, targets, rcond=None)[0]


def _tolerance(residual: np.ndarray) -> float:
    """How far paper blocks stray from the fit: three robust standard deviations (or 0.02)."""
    spread = 1.4826 * _median(np.abs(residual - _median(residual)))
    return max(3.0 * spread, 0.02)


def _median(values: np.ndarray) -> float:
    """np.median without its per-call overhead: it is called a dozen times per picture."""
    return _percentile(values, 50.0)


def _percentile(values: np.ndarray, percent: float) -> float:
    """np.percentile (linear interpolation) from one np.partition, without its overhead."""
    flat = values.ravel()
    position = percent / 100 * (flat.size - 1)
    below = math.floor(position)
    above = min(below + 1, flat.size - 1)
    ordered = np.partition(flat, (below, above))
    low, high = float(ordered[below]), float(ordered[above])
    return low + (high - low) * (position - below)


def _block_quantiles(
    grey: np.ndarray, quantile: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Centres (y, x) and a quantile (percent) of each block in a grid, as flat arrays."""
    height, width = grey.shape
    step_y, step_x = math.ceil(height / PAPER_GRID), math.ceil(width / PAPER_GRID)
    rows, cols = height // step_y, width // step_x
    blocks = grey[: rows * step_y, : cols * step_x].reshape(rows, step_y, cols, step_x)
    pixels = blocks.transpose(0, 2, 1, 3).reshape(rows * cols, step_y * step_x)
    rank = round(quantile / 100 * (pixels.shape[1] - 1))  # an order statistic is quantile enough
    levels = np.partition(pixels, rank, axis=1)[:, rank]
    ys = (np.arange(rows) + 0.5) * step_y - 0.5
    xs = (np.arange(cols) + 0.5) * step_x - 0.5
    grid_y, grid_x = np.meshgrid(ys, xs, indexing="ij")
    return grid_y.ravel(), grid_x.ravel(), levels


def _quadratic_basis(ys: np.ndarray, xs: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    # Coordinates scaled to [-1, 1] keep the least-squares problem well conditioned.
    v = ys / max(shape[0] - 1, 1) * 2 - 1
    u = xs / max(shape[1] - 1, 1) * 2 - 1
    return np.stack([np.ones_like(u), u, v, u * u, u * v, v * v], axis=1)


def _evaluate_quadratic(coefficients: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    v = np.linspace(-1.0, 1.0, shape[0])[:, None] if shape[0] > 1 else np.full((1, 1), -1.0)
    u = np.linspace(-1.0, 1.0, shape[1])[None, :] if shape[1] > 1 else np.full((1, 1), -1.0)
    c = coefficients
    # Grouped as a row term, a column term and one product: three full-size passes, not ten.
    along_rows = c[0] + c[1] * u + c[3] * u * u
    along_columns = c[2] * v + c[5] * v * v
    return (along_rows + along_columns + v * (c[4] * u)).astype(np.float32)


def _noise_level(grey: np.ndarray) -> float:
    """Robust standard deviation of pixel noise, at least one grey level.

    Measured on differences between neighbouring pixels, which are pure noise on paper and
    inside strokes alike, so it holds however much of the picture is ink. Along rows and along
    columns, keeping the smaller: in a tight crop of a narrow 1 most neighbours across the
    picture straddle a stroke's edge, while those along the stroke differ by noise only.
    """
    sampled = _every_other(grey)
    spreads = []
    for axis in (0, 1):
        steps = np.diff(sampled, axis=axis)
        if steps.size:  # a picture one pixel wide or high has no neighbours along that axis
            spreads.append(1.4826 * _median(np.abs(steps - _median(steps))) / math.sqrt(2))
    return max(min(spreads, default=0.0), 1.0 / 255)


def _every_other(values: np.ndarray) -> np.ndarray:
    """Every other row and column of a large image: as good for statistics, 4× faster."""
    return values[::2, ::2] if values.size > 20_000 else values


def _ink_is_light(grey: np.ndarray) -> bool:
    """True if the ink is lighter than the paper (MNIST style), False for ink on paper.

    Ink is the minority: split the picture, flattened by a paper fit that doesn't need to
    know the polarity, in two with Otsu's threshold and see which part is smaller. Near-even
    splits (bold digits cropped tightly) are decided by the picture's edge when it is clearly
    on one side, else count as dark ink, like most photos and scans.
    """
    flattened = _every_other(grey - _fit_paper(grey, 50))
    low, high = float(flattened.min()), float(flattened.max())
    scaled = (flattened - low) / max(high - low, 1e-6)
    light_share = float((scaled >= _otsu_threshold(scaled)).mean())
    if CLEAR_LIGHT_INK_SHARE < light_share < CLEAR_DARK_INK_SHARE:
        # Nearly even: perhaps a bold digit cropped tightly. The picture's edge is mostly
        # paper even where such a crop cuts through strokes; believe it when it is clear.
        edge = np.concatenate([grey[0], grey[-1], grey[1:-1, 0], grey[1:-1, -1]])
        edge_light_share = float((edge >= _otsu_threshold(np.clip(grey, 0.0, 1.0))).mean())
        if edge_light_share <= 1 - CLEAR_EDGE_SHARE:
            return True
        if edge_light_share >= CLEAR_EDGE_SHARE:
            return False
    return light_share < MAX_LIGHT_INK_SHARE


def _paper_offset(signed: np.ndarray, noise: float) -> float:
    """Where the paper really is in `signed`: the middle of the values near zero.

    Paper is the most common level; a window around zero keeps ink cores out, so this holds
    for tight crops where ink covers much of the picture too.
    """
    near_zero = signed[np.abs(signed) < max(PAPER_WINDOW, 5 * noise)]
    return _median(near_zero) if near_zero.size else 0.0


def _noise_floor(signed: np.ndarray, noise: float) -> float:
    """How far from the paper noise reaches: beyond it, a deviation on the ink side is ink.

    At least NOISE_MARGIN noise levels, and at least as far as all but the rarest deviations
    the other way, which are only noise and JPEG ringing; that also covers noise whose tails
    are longer than the noise level says (JPEG-compressed noise, correlated noise).
    """
    return max(NOISE_MARGIN * noise, _percentile(np.clip(-signed, 0.0, None), 99.9))


def _ink_level(ink: np.ndarray, floor: float) -> float:
    """The ink's full strength (0 if no ink): most pixels surely ink are stroke cores."""
    candidates = ink[ink > floor]
    return _percentile(candidates, 90) if candidates.size >= MIN_DIGIT_PIXELS else 0.0


def _keep_digit(ink: np.ndarray, noise_floor: float) -> np.ndarray | None:
    """Ink (0-1) of the digit's pieces with their soft edges; None if there are only specks.

    Strokes are ink above Otsu's threshold; their anti-aliased edges are the ink above the
    noise floor connected to them (hysteresis). The largest piece must look like a digit;
    pieces with few stroke pixels beside it are specks.
    """
    strokes = ink >= stroke_threshold(ink)
    labels, count = _label_components(ink > noise_floor)
    stroke_pixels = np.bincount(labels[strokes], minlength=count + 1)
    stroke_pixels[0] = 0  # label 0 is the background
    largest = int(np.argmax(stroke_pixels))
    if stroke_pixels[largest] < MIN_DIGIT_PIXELS:
        return None
    if _is_speck(strokes & (labels == largest), max(ink.shape)):
        return None
    pieces = stroke_pixels >= MIN_PIECE_FRACTION * stroke_pixels[largest]
    digit = np.where(pieces[labels], ink, 0.0)
    # Subtract the noise floor so the paper around the digit ends at exactly 0.
    return np.clip((digit - noise_floor) / (1.0 - noise_floor), 0.0, 1.0).astype(np.float32)


def stroke_threshold(ink: np.ndarray) -> float:
    """The ink level above which a pixel is a stroke's core rather than its soft edge."""
    # Otsu's split is kept near the middle: with almost no ink (a blank page with a speck)
    # it would otherwise split the paper's noise instead of ink from paper.
    return float(np.clip(_otsu_threshold(ink), *STROKE_THRESHOLD_RANGE))


def _otsu_threshold(values: np.ndarray, bins: int = 256) -> float:
    """Otsu's threshold for values in [0, 1]: the split maximising between-class variance."""
    indices = np.minimum((values * bins).astype(np.int64), bins - 1).ravel()
    counts = np.bincount(indices, minlength=bins)
    levels = (np.arange(bins) + 0.5) / bins
    weight_below = np.cumsum(counts)
    weight_above = weight_below[-1] - weight_below
    mass_below = np.cumsum(counts * levels)
    mean_below = mass_below / np.maximum(weight_below, 1)
    mean_above = (mass_below[-1] - mass_below) / np.maximum(weight_above, 1)
    between = weight_below * weight_above * (mean_below - mean_above) ** 2
    return float((np.argmax(between[:-1]) + 1) / bins)


def _is_speck(strokes: np.ndarray, image_side: int) -> bool:
    """True if the strokes are too small, or too solid (a dot or blob), to be a digit."""
    left, top, right, bottom = _bounding_box(strokes)
    span = max(right - left, bottom - top)
    return span < MIN_DIGIT_SPAN * image_side or strokes.sum() > MAX_DIGIT_FILL * span**2


def _label_components(mask: np.ndarray) -> tuple[np.ndarray, int]:
    """8-connected components: (labels with 0 = background, number of components)."""
    import cv2

    count, labels = cv2.connectedComponents(mask.astype(np.uint8), connectivity=8)
    return labels, count - 1


# --- into the MNIST box --------------------------------------------------------------------


def ink_to_mnist(ink: np.ndarray) -> np.ndarray:
    """One digit's ink (0-1, paper 0, any size) → (28, 28) float32 MNIST format.

    Hollow strokes are filled first; then crop to the ink, scale the longest side to 20 px,
    centre of mass at the centre of 28×28.
    """
    ink = fill_hollow_strokes(ink)
    left, top, right, bottom = _bounding_box(ink >= min(BOX_INK_LEVEL, float(ink.max())))
    scale = BOX_SIZE / max(right - left, bottom - top)
    # Resample a little beyond the box so the faint edges outside it come along; pad with
    # zeros first, as Pillow's box must lie within the image.
    margin = EDGE_MARGIN / scale
    pad = math.ceil(margin) + 1
    box = (left + pad - margin, top + pad - margin, right + pad + margin, bottom + pad + margin)
    width = max(1, round((right - left) * scale)) + 2 * EDGE_MARGIN
    height = max(1, round((bottom - top) * scale)) + 2 * EDGE_MARGIN
    # Pillow's Lanczos filter widens with the reduction factor, so shrinking is anti-aliased.
    patch = Image.fromarray(np.pad(ink, pad)).resize(
        (width, height), Image.Resampling.LANCZOS, box=box
    )
    return _paste_centred(np.clip(np.asarray(patch, dtype=np.float32), 0.0, 1.0))


def fill_hollow_strokes(ink: np.ndarray) -> np.ndarray:
    """The ink with the inside of hollow strokes filled, when its strokes are hollow; else the
    ink unchanged.

    An outlined stroke is two thin parallel lines around a gap; shrunk to MNIST's 20 px, every
    such digit looks like a mess of loops and reads as an 8. This is done here, on one digit's
    ink, rather than on the whole picture, because "thin" is relative to the digit's height,
    which only one digit's ink tells; and every digit on its way to the classifier passes
    through here.
    """
    import cv2

    strokes = (ink >= HOLLOW_INK_LEVEL).astype(np.uint8)
    rows = np.flatnonzero(strokes.any(axis=1))
    if rows.size == 0:
        return ink
    diameter = max(3, round(HOLLOW_CLOSING * (rows[-1] - rows[0] + 1)) | 1)  # odd, >= 3
    disc = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (diameter, diameter))
    # Padded so that strokes near the edge close as they would in the open.
    padded = np.pad(strokes, diameter)
    closed = cv2.morphologyEx(padded, cv2.MORPH_CLOSE, disc)[diameter:-diameter, diameter:-diameter]
    if int(closed.sum()) - int(strokes.sum()) <= HOLLOW_SHARE * int(strokes.sum()):
        return ink
    # Filled strokes are still strokes; filled hatching (parallel lines, no digit) is a block.
    widest = 2.0 * float(cv2.distanceTransform(np.pad(closed, 1), cv2.DIST_L2, 5).max())
    if widest > MAX_FILLED_STROKE * (rows[-1] - rows[0] + 1):
        return ink
    return np.maximum(ink, closed.astype(ink.dtype))


def _bounding_box(mask: np.ndarray) -> tuple[int, int, int, int]:
    """(left, top, right, bottom), right and bottom exclusive, as Pillow's box argument."""
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    return int(cols[0]), int(rows[0]), int(cols[-1]) + 1, int(rows[-1]) + 1


def _paste_centred(patch: np.ndarray) -> np.ndarray:
    """Place the patch in 28×28 with its centre of mass on CENTRE (rounded to whole pixels).

    The shift is clamped so the digit (the patch less its EDGE_MARGIN) stays on the canvas,
    which can leave the centre of mass off-centre for very lopsided digits.
    """
    com_y, com_x = _centre_of_mass(patch)
    top = _clamped_shift(CENTRE - com_y, patch.shape[0])
    left = _clamped_shift(CENTRE - com_x, patch.shape[1])
    canvas = np.zeros((MNIST_SIZE + 2 * EDGE_MARGIN,) * 2, dtype=np.float32)
    canvas[
        top + EDGE_MARGIN : top + EDGE_MARGIN + patch.shape[0],
        left + EDGE_MARGIN : left + EDGE_MARGIN + patch.shape[1],
    ] = patch
    return canvas[EDGE_MARGIN:-EDGE_MARGIN, EDGE_MARGIN:-EDGE_MARGIN]


def _clamped_shift(shift: float, length: int) -> int:
    """Whole-pixel shift keeping the patch within the canvas, give or take its margins."""
    return min(max(round(shift), -EDGE_MARGIN), MNIST_SIZE - length + EDGE_MARGIN)


def _centre_of_mass(image: np.ndarray) -> tuple[float, float]:
    total = float(image.sum())
    if total == 0.0:
        return (image.shape[0] - 1) / 2, (image.shape[1] - 1) / 2
    ys, xs = np.arange(image.shape[0]), np.arange(image.shape[1])
    return float(image.sum(axis=1) @ ys) / total, float(image.sum(axis=0) @ xs) / total


def _validated_pixels(pixels: Sequence[Sequence[int]]) -> np.ndarray:
    """28×28 integers 0-255 as uint8, or ImageError saying what is wrong."""
    expected = f"pixels must be {MNIST_SIZE} rows of {MNIST_SIZE} integers from 0 to 255"
    try:
        array = np.asarray(pixels)
    except ValueError:  # ragged rows
        raise ImageError(f"{expected}; the rows have different lengths") from None
    if array.shape != (MNIST_SIZE, MNIST_SIZE):
        raise ImageError(f"{expected}; got shape {array.shape}")
    if not np.issubdtype(array.dtype, np.integer) or array.dtype == np.bool_:
        raise ImageError(f"{expected}; got values of type {array.dtype}")
    if array.min() < 0 or array.max() > 255:
        raise ImageError(f"{expected}; got values from {array.min()} to {array.max()}")
    return array.astype(np.uint8)
