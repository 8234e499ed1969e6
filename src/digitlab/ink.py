"""A picture's ink, whatever the paper and the light: the first steps of reading anything.

Photos, scans and canvas drawings are dark ink on light paper (or light on dark), unevenly lit,
noisy and JPEG-compressed. `find_ink` turns any picture into an ink map, 0 for paper and 1 for a
stroke's core:

1. grey levels (alpha composited, 16-bit scaled, EXIF orientation applied by `open_image`),
   box-averaged down to at most `INK.working_size` px (reading numbers asks for more);
2. polarity: ink is the minority, so split the picture with Otsu's threshold and see which
   side is smaller (MNIST-style light ink, or ink on paper);
3. the paper: a quadratic surface fitted to each block's paper-side level, rejecting blocks
   that are ink, its curvature held back; lighting gradients and vignetting go away, and a
   surface that smooth can't follow strokes;
4. the ink: deviation from the paper beyond how far noise reaches, scaled so stroke cores
   are 1; nothing clearly beyond the noise → no ink.

`preprocess` makes one digit of it in MNIST format; `lines` finds the numbers in it. Every
tuned number is a field of `InkParams`, with why it has its value.
"""

import math
from dataclasses import dataclass

import numpy as np
from PIL import Image

from digitlab.images import to_grey


@dataclass(frozen=True)
class InkParams:
    # Larger images are box-averaged down to this longest side first: a digit spanning a tenth
    # of the picture still has 50 px, plenty for a 20 px result, and every step stays fast.
    working_size: int = 512
    # The paper is fitted to one level per block, in a grid this many blocks across.
    paper_grid: int = 16
    # The paper's curvature (coefficients of u², uv, v² with u, v in [-1, 1]) weighs in the fit
    # as much as this many blocks' squared misfits: little beside a full grid of paper blocks,
    # but it keeps the surface from bending into a stroke where paper shows only along two
    # edges (a tight crop of a narrow 1). Tight crops read right (the bench's `tight` digits):
    # 95.5% with no penalty, 96% at 1, 98% at 10, 97.5% at 30.
    curvature_penalty: float = 10.0
    # Rounds of rejecting blocks that are ink and fitting the paper again.
    paper_fit_rounds: int = 4
    # Light ink must cover less of the picture than this (MNIST digits cover about 20%).
    max_light_ink_share: float = 0.4
    # The lighter side's share says clearly which is ink outside these bounds; within them the
    # picture's edge decides, when `clear_edge_share` of it is on one side.
    clear_light_ink_share: float = 0.25
    clear_dark_ink_share: float = 0.6
    clear_edge_share: float = 0.75
    # A block's level is this quantile (percent) from its paper side: paper if a quarter is.
    paper_side_quantile: float = 75
    # Paper lies within this distance of the fitted surface (uneven paper, misfit, noise).
    paper_window: float = 0.05
    # Ink must exceed this many noise levels (a Gaussian does so once in 700 pixels).
    noise_margin: float = 3.0
    # Ink must differ from the paper by this much (about 20 grey levels) and reach this many
    # times as far as noise does; fainter marks are not ink.
    min_ink_contrast: float = 0.08
    min_ink_to_floor: float = 2.0
    # Fewer pixels surely ink than this (a speck of dust) is no ink at all.
    min_ink_pixels: int = 12


INK = InkParams()


@dataclass(frozen=True)
class InkMap:
    """Where the ink is in a picture: steps 1-4 of the module notes, before any digit is picked."""

    ink: np.ndarray  # float32 (H, W) in [0, 1]: 0 is paper, 1 a stroke's core
    noise_floor: float  # ink at or below this may be noise (same scale as `ink`)
    scale: float  # original pixels per pixel of `ink` (it is box-averaged down to the working size)


def find_ink(image: Image.Image, working_size: int | None = None) -> InkMap | str:
    """The picture's ink, light or dark, paper and lighting removed, box-averaged down to at
    most `working_size` pixels on its longest side; or why there is none."""
    if image.width == 0 or image.height == 0:
        return "no digit found: the image is empty (0 pixels)"
    grey, scale = _working_grey(image, working_size or INK.working_size)
    if np.ptp(grey) < 1.5 / 255:
        return "no digit found: the image is blank (one uniform colour)"
    noise = _noise_level(grey)
    light_ink = _ink_is_light(grey)
    # Now that the ink's side is known, fit the paper to the paper side of each block, so
    # that blocks mostly covered by ink (tight crops, bold strokes) still show paper.
    if light_ink:
        paper = _fit_paper(grey, 100 - INK.paper_side_quantile, ink_side=1)
    else:
        paper = _fit_paper(grey, INK.paper_side_quantile, ink_side=-1)
    signed = grey - paper if light_ink else paper - grey  # ink > 0, paper ≈ 0
    signed -= _paper_offset(signed, noise)  # the paper-side quantile sits a little inkward
    floor = _noise_floor(signed, noise)
    level = _ink_level(np.clip(signed, 0.0, None), floor)
    if level < max(INK.min_ink_contrast, INK.min_ink_to_floor * floor):
        return "no digit found: the image is blank apart from faint marks or noise"
    return InkMap(np.clip(signed / level, 0.0, 1.0), floor / level, scale)


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
        split = otsu_threshold(np.clip(levels, 0.0, 1.0))
        inliers = (levels - split) * ink_side <= 0
    else:
        residual = levels - _median(levels)
        inliers = np.abs(residual) <= _tolerance(residual)
    coefficients = None
    for _ in range(INK.paper_fit_rounds):
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
    """The quadratic's coefficients, its curvature held back by INK.curvature_penalty.

    Where paper shows only along two edges (a narrow 1 cropped tightly), plain least squares
    may bend the surface down into the stroke between them, and the stroke becomes paper.
    """
    curvature = np.sqrt(INK.curvature_penalty) * np.eye(basis.shape[1])[3:]  # the u², uv, v² terms
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
    step_y, step_x = math.ceil(height / INK.paper_grid), math.ceil(width / INK.paper_grid)
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
    light_share = float((scaled >= otsu_threshold(scaled)).mean())
    if INK.clear_light_ink_share < light_share < INK.clear_dark_ink_share:
        # Nearly even: perhaps a bold digit cropped tightly. The picture's edge is mostly
        # paper even where such a crop cuts through strokes; believe it when it is clear.
        edge = np.concatenate([grey[0], grey[-1], grey[1:-1, 0], grey[1:-1, -1]])
        edge_light_share = float((edge >= otsu_threshold(np.clip(grey, 0.0, 1.0))).mean())
        if edge_light_share <= 1 - INK.clear_edge_share:
            return True
        if edge_light_share >= INK.clear_edge_share:
            return False
    return light_share < INK.max_light_ink_share


def _paper_offset(signed: np.ndarray, noise: float) -> float:
    """Where the paper really is in `signed`: the middle of the values near zero.

    Paper is the most common level; a window around zero keeps ink cores out, so this holds
    for tight crops where ink covers much of the picture too.
    """
    near_zero = signed[np.abs(signed) < max(INK.paper_window, 5 * noise)]
    return _median(near_zero) if near_zero.size else 0.0


def _noise_floor(signed: np.ndarray, noise: float) -> float:
    """How far from the paper noise reaches: beyond it, a deviation on the ink side is ink.

    At least INK.noise_margin noise levels, and at least as far as all but the rarest deviations
    the other way, which are only noise and JPEG ringing; that also covers noise whose tails
    are longer than the noise level says (JPEG-compressed noise, correlated noise).
    """
    return max(INK.noise_margin * noise, _percentile(np.clip(-signed, 0.0, None), 99.9))


def _ink_level(ink: np.ndarray, floor: float) -> float:
    """The ink's full strength (0 if no ink): most pixels surely ink are stroke cores."""
    candidates = ink[ink > floor]
    return _percentile(candidates, 90) if candidates.size >= INK.min_ink_pixels else 0.0


def otsu_threshold(values: np.ndarray, bins: int = 256) -> float:
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
