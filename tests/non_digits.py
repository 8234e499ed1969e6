"""Images that are not digits, rendered as photos: what "not a digit" must catch.

Drawn here, independently of `digitlab.synth.nondigits` (the detector's own training generator):
stroke doodles (stars, hearts, smileys, hatching, scribbles) drawn with Pillow's ImageDraw, and
letters from four handwriting fonts under /usr/share/fonts that the detector never trains on (it
trains on DejaVu and four other handwriting fonts, see tools/make_rejector.py). Letters a digit
can look like are left out: O o Q D I l i j J S s Z z B b G g q T t y A (as in
digitlab.synth.nondigits). Each mark is reduced to 28×28 and rendered as a phone photo or a scan by
`wild_digits.make_wild_image`, the same way the wild test digits are, so the two sets differ
only in what is drawn.
"""

import math
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont
from wild_digits import make_wild_image

SIDE = 140  # drawn at 5× MNIST size
KINDS = ("star", "heart", "smiley", "hatching", "scribble", "letter")
LOOKALIKES = set("OoQDIlijJSsZzBbGgqTtyA")
LETTERS = [c for c in "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz" if c not in LOOKALIKES]
# Not the fonts tools/make_rejector.py trains on (DejaVu, comic-neue, humor-sans, dkg, bwht).
HANDWRITING_FONT_DIRS = ("kaushanscript", "dancingscript", "breip", "femkeklaver")


def handwriting_fonts() -> list[Path]:
    found: list[Path] = []
    for name in HANDWRITING_FONT_DIRS:
        for root in (Path("/usr/share/fonts/truetype"), Path("/usr/share/fonts/opentype")):
            found += sorted((root / name).glob("*.[ot]tf"))
    return found


def make_non_digit(kind: str, rng: np.random.Generator, fonts: list[Path]) -> Image.Image:
    """One non-digit of `kind` (one of KINDS) as a photo-like RGB image."""
    canvas = Image.new("L", (SIDE, SIDE), 0)
    draw = ImageDraw.Draw(canvas)
    width = int(rng.integers(6, 13))
    if kind == "letter":
        font = ImageFont.truetype(
            str(fonts[int(rng.integers(len(fonts)))]), int(rng.integers(80, 115))
        )
        draw.text((SIDE / 2, SIDE / 2), str(rng.choice(LETTERS)), fill=255, font=font, anchor="mm")
    else:
        DRAWERS[kind](draw, rng, width)
    small = canvas.resize((28, 28), Image.Resampling.LANCZOS)
    return make_wild_image(np.asarray(small), rng)


def make_non_digit_set(n: int, seed: int) -> list[tuple[Image.Image, str]]:
    """n (photo, kind) pairs, the kinds in turn; the same for the same seed."""
    rng = np.random.default_rng(seed)
    fonts = handwriting_fonts()
    kinds = [k for k in KINDS if k != "letter" or fonts]
    return [
        (make_non_digit(kinds[i % len(kinds)], rng, fonts), kinds[i % len(kinds)]) for i in range(n)
    ]


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
