"""Marks that are not numbers, drawn independently of the generators training learns from.

Stroke doodles (stars, hearts, smileys, hatching, scribbles) drawn here with Pillow's
ImageDraw, not by `nondigits` (what the detector and the reader train on); letters and words
in the held-out handwriting fonts; printed forms with nothing written on them. Letters a digit
can look like (O o Q D I l i j J S s Z z B b G g q T t y A) are left out. `make_mark` gives the
ink coverage at MNIST scale (about 20-30 px high); `make_mark_set` draws marks as photos, for
the tests and benchmarks of "not a digit" and for the frozen set `digitlab evaluate` scores
(`tools/make_nondigits.py`).
"""

import math

import numpy as np
from PIL import Image, ImageDraw

from digitlab.synth import clutter
from digitlab.synth.fonts import crop_to_ink, held_out_fonts, pick_font, type_text
from digitlab.synth.numbers import DIGIT_HEIGHT
from digitlab.synth.photos import render_number_photo

SIDE = 140  # doodles are drawn at 5× MNIST size
KINDS = ("star", "heart", "smiley", "hatching", "scribble", "letter", "word", "form")
LOOKALIKES = set("OoQDIlijJSsZzBbGgqTtyA")
LETTERS = [c for c in "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz" if c not in LOOKALIKES]
TYPED = ("letter", "word")  # the kinds that need fonts
MAX_TILT = 5.0  # degrees either way a mark's photo is turned


def make_mark_set(
    n: int, seed: int, kinds: tuple[str, ...] = KINDS
) -> list[tuple[Image.Image, str]]:
    """n (photo, kind) pairs, the kinds in turn, letters and words in the held-out fonts
    (skipped when none is installed); the same for the same seed on every machine."""
    rng = np.random.default_rng(seed)
    fonts = held_out_fonts()
    usable = [kind for kind in kinds if fonts or kind not in TYPED]
    return [
        (mark_photo(usable[i % len(usable)], rng, fonts), usable[i % len(usable)]) for i in range(n)
    ]


def mark_photo(kind: str, rng: np.random.Generator, fonts: list[list[str]]) -> Image.Image:
    """One mark of `kind` drawn as a phone photo or a scan, turned by up to MAX_TILT."""
    tilt = float(rng.uniform(-MAX_TILT, MAX_TILT))
    return render_number_photo(make_mark(kind, rng, fonts), rng, tilt)


def make_mark(kind: str, rng: np.random.Generator, fonts: list[list[str]]) -> np.ndarray:
    """One mark of `kind` (one of KINDS) as ink coverage at MNIST scale. Letters and words are
    typed in `fonts` (font files by family)."""
    if kind in ("letter", "word"):
        length = 1 if kind == "letter" else int(rng.integers(2, 8))
        text = "".join(rng.choice(LETTERS, size=length))
        return type_text(text, pick_font(fonts, rng), float(rng.uniform(0.0, 0.2)))
    if kind == "form":
        return clutter.empty_form(rng)
    canvas = Image.new("L", (SIDE, SIDE), 0)
    DRAWERS[kind](ImageDraw.Draw(canvas), rng, int(rng.integers(6, 13)))
    mark = crop_to_ink(np.asarray(canvas, np.float32) / 255.0)
    height = DIGIT_HEIGHT * rng.uniform(0.9, 1.4)
    size = (max(1, round(mark.shape[1] * height / mark.shape[0])), max(1, round(height)))
    return np.asarray(Image.fromarray(mark).resize(size, Image.Resampling.LANCZOS), np.float32)


def _star(draw: ImageDraw.ImageDraw, rng: np.random.Generator, width: int) -> None:
    c, r = SIDE / 2, rng.uniform(40, 60)
    spikes = int(rng.choice([5, 6]))
    angle0 = rng.uniform(0, math.tau)
    points = [
        (c + (r if k % 2 == 0 else r * 0.45) * math.cos(angle0 + k * math.pi / spikes),
         c + (r if k % 2 == 0 else r * 0.45) * math.sin(angle0 + k * math.pi / spikes))
        for k in range(2 * spikes + 1)
    ]  # fmt: skip
    draw.line(points, fill=255, width=width, joint="curve")


def _heart(draw: ImageDraw.ImageDraw, rng: np.random.Generator, width: int) -> None:
    c, r = SIDE / 2, rng.uniform(40, 60)
    tilt = rng.uniform(-0.3, 0.3)
    points = []
    for t in np.linspace(0, math.tau, 80):
        x = 16 * math.sin(t) ** 3
        y = -(13 * math.cos(t) - 5 * math.cos(2 * t) - 2 * math.cos(3 * t) - math.cos(4 * t))
        x, y = x * math.cos(tilt) - y * math.sin(tilt), x * math.sin(tilt) + y * math.cos(tilt)
        points.append((c + r * x / 17, c + r * y / 17))
    draw.line(points, fill=255, width=width, joint="curve")


def _smiley(draw: ImageDraw.ImageDraw, rng: np.random.Generator, width: int) -> None:
    c, r = SIDE / 2, rng.uniform(45, 62)
    draw.ellipse((c - r, c - r, c + r, c + r), outline=255, width=width)
    for side in (-1, 1):
        x, y, e = c + side * r * 0.38, c - r * 0.3, r * 0.12
        draw.ellipse((x - e, y - e, x + e, y + e), fill=255)
    m = r * 0.55
    draw.arc((c - m, c - m * 0.9, c + m, c + m * 0.9), 20, 160, fill=255, width=width)


def _hatching(draw: ImageDraw.ImageDraw, rng: np.random.Generator, width: int) -> None:
    angle = rng.uniform(0, math.pi)
    dx, dy = math.cos(angle), math.sin(angle)
    for k in range(int(rng.integers(5, 9))):
        offset = (k - 3.5) * rng.uniform(10, 14)
        mx, my = SIDE / 2 - dy * offset, SIDE / 2 + dx * offset
        half = rng.uniform(35, 55)
        draw.line(
            [(mx - dx * half, my - dy * half), (mx + dx * half, my + dy * half)],
            fill=255,
            width=max(3, width // 2),
        )


def _scribble(draw: ImageDraw.ImageDraw, rng: np.random.Generator, width: int) -> None:
    # A random walk with momentum: a tangle of loops, as a pen scribbling to cross something out.
    x, y, heading = SIDE / 2, SIDE / 2, rng.uniform(0, math.tau)
    points = [(x, y)]
    for _ in range(int(rng.integers(80, 160))):
        heading += rng.normal(0, 0.5)
        x = float(np.clip(x + 4 * math.cos(heading), 15, SIDE - 15))
        y = float(np.clip(y + 4 * math.sin(heading), 15, SIDE - 15))
        points.append((x, y))
    draw.line(points, fill=255, width=width, joint="curve")


DRAWERS = {
    "star": _star,
    "heart": _heart,
    "smiley": _smiley,
    "hatching": _hatching,
    "scribble": _scribble,
}
