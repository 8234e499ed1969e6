"""Ink drawn as a photo or a scan: pen colours, tinted paper, uneven light, noise, dust, JPEG.

`render_coverage(coverage, style, rng)` turns ink coverage (0-1 per pixel) into an RGB picture
the way a phone photo or a scan of it looks; `random_style` draws every choice of `WildStyle`
from a numpy Generator, so a seed gives the same pictures on every machine. Training data and
test pictures both use it.

For single digits (the tests and benchmarks of `predict` and of preprocessing):
`make_wild_image` draws a 28×28 MNIST digit the way a phone photo or a scan of it looks (2-7×
larger, off-centre on a larger sheet), `make_wild_set` a seeded set of them, and the hard
kinds below draw it cropped tight, out of focus, at low resolution or hollow.
"""

import dataclasses
import io
import math
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np
import torch
from PIL import Image

from digitlab.mnist_format import BOX_SIZE, IMAGE_SIZE

INK_COLOURS = {  # typical pens, as RGB in [0, 1]
    "blue": (0.1, 0.15, 0.55),
    "red": (0.65, 0.1, 0.1),
    "green": (0.1, 0.4, 0.15),
}


@dataclass(frozen=True)
class WildStyle:
    """How one digit is rendered; `random_style` draws every field."""

    scale: float = 4.0  # digit size relative to MNIST's 28 px
    margin: tuple[float, float] = (0.6, 0.6)  # extra sheet (height, width) / digit size
    position: tuple[float, float] = (0.3, 0.7)  # digit within the spare room: 0 top/left
    ink_rgb: tuple[float, float, float] = (0.1, 0.1, 0.1)
    paper_rgb: tuple[float, float, float] = (0.95, 0.95, 0.95)
    noise: float = 0.02  # standard deviation of per-pixel paper noise
    shading: float = 0.2  # the darkest edge of the sheet gets this much less light
    light_angle: float = 0.0  # direction of the lighting gradient, radians
    specks: int = 0  # dust dots on the sheet
    jpeg_quality: int | None = 75  # None: no JPEG round trip
    blur: float = 0.0  # Gaussian blur of the optics: standard deviation / `scale` (MNIST px)


def random_style(rng: np.random.Generator) -> WildStyle:
    return WildStyle(
        scale=float(rng.uniform(2.0, 7.0)),
        margin=(float(rng.uniform(0.3, 1.5)), float(rng.uniform(0.3, 1.5))),
        position=(float(rng.uniform()), float(rng.uniform())),
        ink_rgb=_random_ink(rng),
        paper_rgb=_random_paper(rng),
        noise=float(rng.uniform(0.0, 0.04)),
        shading=float(rng.uniform(0.0, 0.35)),
        light_angle=float(rng.uniform(0.0, 2 * math.pi)),
        specks=int(rng.integers(0, 4)),
        jpeg_quality=int(rng.integers(60, 91)),
    )


def _random_ink(rng: np.random.Generator) -> tuple[float, float, float]:
    if rng.uniform() < 0.5:  # pencil or black pen
        return (float(rng.uniform(0.0, 0.25)),) * 3
    base = INK_COLOURS[str(rng.choice(list(INK_COLOURS)))]
    return _jitter(base, rng, 0.05)


def _random_paper(rng: np.random.Generator) -> tuple[float, float, float]:
    if rng.uniform() < 0.5:  # white or grey paper
        return (float(rng.uniform(0.85, 1.0)),) * 3
    return _jitter((float(rng.uniform(0.8, 0.95)),) * 3, rng, 0.07)  # tinted paper


def _jitter(
    rgb: tuple[float, ...], rng: np.random.Generator, amount: float
) -> tuple[float, float, float]:
    r, g, b = (float(np.clip(c + rng.uniform(-amount, amount), 0.0, 1.0)) for c in rgb)
    return r, g, b


def make_wild_image(
    digit: np.ndarray | torch.Tensor, rng: np.random.Generator, **changes: Any
) -> Image.Image:
    """A photo-like RGB rendering of one (28, 28) uint8 MNIST digit; `changes` fix style fields."""
    style = dataclasses.replace(random_style(rng), **changes)
    return render_wild(np.asarray(digit, dtype=np.uint8), style, rng)


def make_wild_set(
    images: np.ndarray | torch.Tensor, labels: np.ndarray | torch.Tensor, n: int, seed: int
) -> list[tuple[Image.Image, int]]:
    """n (wild image, label) pairs from randomly chosen digits, the same for the same seed."""
    rng = np.random.default_rng(seed)
    chosen = rng.choice(len(images), size=n, replace=False)
    return [(make_wild_image(images[i], rng), int(labels[i])) for i in chosen]


def render_wild(digit: np.ndarray, style: WildStyle, rng: np.random.Generator) -> Image.Image:
    """The digit drawn on a sheet in `style`; rng supplies the noise and the specks."""
    return render_coverage(_ink_coverage(digit, style, rng), style, rng)


def render_coverage(
    coverage: np.ndarray, style: WildStyle, rng: np.random.Generator
) -> Image.Image:
    """Ink coverage (0-1 per pixel) as a photo in `style`: colours, light, noise, JPEG."""
    coverage = np.asarray(coverage, np.float32)
    if style.blur > 0:
        coverage = cv2.GaussianBlur(coverage, (0, 0), style.blur * style.scale)
    ink = np.array(style.ink_rgb, np.float32)
    paper = np.array(style.paper_rgb, np.float32)
    rgb = paper + (ink - paper) * coverage[..., None]  # (H, W, 3)
    rgb *= _lighting(coverage.shape, style)[..., None]
    if style.noise > 0:
        rgb += rng.standard_normal(rgb.shape, dtype=np.float32) * np.float32(style.noise)
    image = Image.fromarray(np.round(np.clip(rgb, 0, 1) * 255).astype(np.uint8), "RGB")
    return image if style.jpeg_quality is None else _jpeg_round_trip(image, style.jpeg_quality)


def _ink_coverage(digit: np.ndarray, style: WildStyle, rng: np.random.Generator) -> np.ndarray:
    """How much ink covers each pixel of the sheet (0-1): the digit, enlarged, plus specks."""
    size = round(IMAGE_SIZE * style.scale)
    # Bicubic enlargement keeps strokes smooth, as a pen's are; MNIST's grey edges blur a bit.
    enlarged = Image.fromarray(digit).resize((size, size), Image.Resampling.BICUBIC)
    height = size + round(size * style.margin[0])
    width = size + round(size * style.margin[1])
    top = round((height - size) * style.position[0])
    left = round((width - size) * style.position[1])
    coverage = np.zeros((height, width))
    coverage[top : top + size, left : left + size] = np.asarray(enlarged) / 255.0
    add_specks(coverage, style, rng)
    return coverage


def add_specks(coverage: np.ndarray, style: WildStyle, rng: np.random.Generator) -> None:
    """Dust: dots well under a stroke's width (MNIST strokes are 2-3 px) anywhere on the sheet."""
    for _ in range(style.specks):
        y, x = rng.uniform(0, coverage.shape[0]), rng.uniform(0, coverage.shape[1])
        radius = style.scale * rng.uniform(0.3, 0.6)
        # Only the dot's neighbourhood changes: work on that window, not the whole sheet.
        reach = math.ceil(radius + 1)
        top, left = max(0, math.floor(y) - reach), max(0, math.floor(x) - reach)
        window = coverage[top : math.ceil(y) + reach + 1, left : math.ceil(x) + reach + 1]
        ys, xs = np.ogrid[top : top + window.shape[0], left : left + window.shape[1]]
        dot = np.clip(radius + 0.5 - np.hypot(ys - y, xs - x), 0.0, 1.0)
        np.maximum(window, dot, out=window)


def _lighting(shape: tuple[int, ...], style: WildStyle) -> np.ndarray:
    """Light falling off linearly across the sheet in the direction of `light_angle`."""
    ys = np.arange(shape[0], dtype=np.float32)[:, None]
    xs = np.arange(shape[1], dtype=np.float32)[None, :]
    along = xs * np.float32(math.cos(style.light_angle)) + ys * np.float32(
        math.sin(style.light_angle)
    )
    ramp = (along - along.min()) / max(float(np.ptp(along)), 1.0)
    return 1.0 - np.float32(style.shading) * ramp


def _jpeg_round_trip(image: Image.Image, quality: int) -> Image.Image:
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=quality)
    decoded = Image.open(io.BytesIO(buffer.getvalue()))
    decoded.load()
    return decoded


def render_number_photo(
    coverage: np.ndarray, rng: np.random.Generator, tilt: float = 0.0, **changes: Any
) -> Image.Image:
    """Ink at MNIST scale drawn as a photo: enlarged 2-5×, turned by `tilt` degrees, on a
    sheet with a margin, dust, lit; `changes` fix fields of the random WildStyle."""
    style = dataclasses.replace(random_style(rng), scale=float(rng.uniform(2.0, 5.0)))
    style = dataclasses.replace(style, **changes)
    height = round(coverage.shape[0] * style.scale)
    width = round(coverage.shape[1] * style.scale)
    enlarged = Image.fromarray(coverage.astype(np.float32)).resize(
        (max(1, width), max(1, height)), Image.Resampling.BICUBIC
    )
    tilted = enlarged.rotate(tilt, Image.Resampling.BICUBIC, expand=True)
    line = np.clip(np.asarray(tilted, dtype=np.float32), 0.0, 1.0)
    margin_y = round(line.shape[0] * rng.uniform(0.2, 0.8))
    margin_x = round(line.shape[0] * rng.uniform(0.2, 0.8))
    sheet = np.pad(line, ((margin_y, margin_y), (margin_x, margin_x))).astype(np.float64)
    add_specks(sheet, style, rng)
    return render_coverage(sheet, style, rng)


# --- the hard single digits: tight crops, blur, low resolution -----------------------------

HARD_KINDS = ("tight", "blur", "lowres")
# Low resolution: the digit's ink is this many pixels high, then the picture is enlarged by
# a factor in LOWRES_ZOOM (as a viewer or a phone's "zoom" would).
LOWRES_HEIGHT = (10, 16)
LOWRES_ZOOM = (3.0, 8.0)
BLUR_RANGE = (0.5, 1.2)  # blur's standard deviation in MNIST pixels (strokes are 2-3 wide)


def make_hard_set(
    images: np.ndarray | torch.Tensor,
    labels: np.ndarray | torch.Tensor,
    kind: str,
    n: int,
    seed: int,
) -> list[tuple[Image.Image, int]]:
    """n (picture, label) pairs of one hard kind from random digits, the same for the seed."""
    makers = {"tight": make_tight_crop, "blur": make_blurred, "lowres": make_low_resolution}
    rng = np.random.default_rng(seed)
    chosen = rng.choice(len(images), size=n, replace=False)
    digits = np.asarray(images)
    return [(makers[kind](digits[i], rng), int(labels[i])) for i in chosen]


def make_tight_crop(digit: np.ndarray, rng: np.random.Generator) -> Image.Image:
    """A photo of the digit cropped to its ink: strokes touch all four borders."""
    rows = np.flatnonzero(digit.any(axis=1))
    cols = np.flatnonzero(digit.any(axis=0))
    cropped = np.ascontiguousarray(digit[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1])
    style = dataclasses.replace(random_style(rng), margin=(0.0, 0.0), specks=0)
    scale = style.scale
    size = (round(cropped.shape[1] * scale), round(cropped.shape[0] * scale))
    enlarged = Image.fromarray(cropped).resize(size, Image.Resampling.BICUBIC)
    return render_coverage(np.asarray(enlarged) / 255.0, style, rng)


def make_blurred(digit: np.ndarray, rng: np.random.Generator) -> Image.Image:
    """An out-of-focus photo of the digit."""
    return make_wild_image(digit, rng, blur=float(rng.uniform(*BLUR_RANGE)))


def make_low_resolution(digit: np.ndarray, rng: np.random.Generator) -> Image.Image:
    """A scan with the digit 10-16 px high, enlarged afterwards."""
    height = rng.uniform(*LOWRES_HEIGHT)
    small = make_wild_image(digit, rng, scale=height / BOX_SIZE, specks=0)
    zoom = rng.uniform(*LOWRES_ZOOM)
    size = (round(small.width * zoom), round(small.height * zoom))
    return small.resize(size, Image.Resampling.BICUBIC)


def make_outlined(digit: np.ndarray, rng: np.random.Generator) -> Image.Image:
    """A photo of the digit drawn hollow, as an outline font or a pen stroke traced twice:
    each stroke is two thin lines (about one MNIST pixel wide) around an empty inside."""
    style = dataclasses.replace(random_style(rng), scale=float(rng.uniform(3.0, 6.0)), specks=0)
    side = round(IMAGE_SIZE * style.scale)
    enlarged = np.asarray(Image.fromarray(digit).resize((side, side), Image.Resampling.BICUBIC))
    strokes = (enlarged >= 128).astype(np.uint8)
    radius = max(1, round(style.scale / 2))
    disc = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * radius + 1, 2 * radius + 1))
    outline = cv2.dilate(strokes, disc) - cv2.erode(strokes, disc)
    margin = round(side * 0.3)
    return render_coverage(np.pad(outline.astype(np.float64), margin), style, rng)
