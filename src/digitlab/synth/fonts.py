"""Handwriting fonts: which ones train the reader, which ones only score it, and typing in them.

The fonts come from Debian packages (`.ci/run` installs them); a missing one is skipped. They
are grouped by family, so that a family's variants (Comic Neue's bold and italic, say) are
all on one side of the split: a held-out family is one the reader has never seen in any form.

The split was drawn once, before anything was measured, by
`random.Random(2026).sample(sorted(FONT_FAMILIES), 6)` — a third of the 19 families — and is
fixed here. Nothing is tuned on the held-out families; benchmarks and tests score on them.
Fonts whose digits are not legible handwriting were left out of both sides: Asana Math (a
printed math font), Joscelyn (a 16th-century secretary hand) and setofont-ex (no digit glyphs).
"""

from functools import cache
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from digitlab.mnist_format import BOX_SIZE

FONT_ROOT = Path("/usr/share/fonts")
FONT_FAMILIES: dict[str, tuple[str, ...]] = {
    "breip": ("truetype/breip/Breip.ttf",),
    "bwht": tuple(
        f"opentype/bwht/BecauseWe{name}-Regular.otf"
        for name in ("Build", "Connect", "Create", "Learn", "Mentor", "Organize")
    ),
    "cabinsketch": ("truetype/cabinsketch/CabinSketch-Regular.ttf",
                    "truetype/cabinsketch/CabinSketch-Bold.ttf"),
    "comic-neue": tuple(
        f"opentype/comic-neue/ComicNeue-{style}.otf"
        for style in ("Regular", "Bold", "Italic", "BoldItalic", "Light", "LightItalic")
    ),
    "dancingscript": ("opentype/dancingscript/DancingScript-Regular.otf",
                      "opentype/dancingscript/DancingScript-Bold.otf"),
    "dkg": tuple(
        f"truetype/fifthhorseman/{name}.ttf" for name in ("dkg", "dkgBd", "dkgIt", "dkgBI")
    ),
    "ecolier-court": ("truetype/ecolier-court/Ecolier-court.ttf",),
    "femkeklaver": ("truetype/femkeklaver/femkeklaver.ttf",),
    "havana": ("opentype/havana/Havana-Regular.otf",),
    "humor-sans": ("truetype/humor-sans/Humor-Sans.ttf",),
    "kaushanscript": ("opentype/kaushanscript/KaushanScript-Regular.otf",),
    "kiloji": tuple(
        f"truetype/kiloji/{name}.ttf" for name in ("kiloji", "kiloji_b", "kiloji_d", "kiloji_p")
    ),
    "klee": ("truetype/klee/KleeOne-Regular.ttf", "truetype/klee/KleeOne-SemiBold.ttf"),
    "kristi": ("truetype/kristi/Kristi.ttf",),
    "leckerli-one": ("truetype/leckerli-one/LeckerliOne-Regular.ttf",),
    "lobster": ("opentype/lobster/lobster.otf",),
    "purisa": tuple(
        f"opentype/tlwg/Purisa{style}.otf" for style in ("", "-Bold", "-Oblique", "-BoldOblique")
    ),
    "rufscript": ("truetype/rufscript/Rufscript010.ttf",),
    "seto": ("truetype/seto/setofont.ttf",),
}  # fmt: skip
# Evaluation only: never seen in training (see the module notes for how they were drawn).
HELD_OUT_FAMILIES = ("comic-neue", "kaushanscript", "leckerli-one", "lobster", "purisa", "seto")
TRAINING_FAMILIES = tuple(f for f in FONT_FAMILIES if f not in HELD_OUT_FAMILIES)
# The Debian packages that hold them (for `.ci/run` and error messages).
FONT_PACKAGES = (
    "fonts-breip fonts-bwht fonts-cabinsketch fonts-comic-neue fonts-dancingscript "
    "fonts-dkg-handwriting fonts-ecolier-court fonts-femkeklaver fonts-havana fonts-humor-sans "
    "fonts-kaushanscript fonts-kiloji fonts-klee fonts-kristi fonts-leckerli-one fonts-lobster "
    "fonts-tlwg-purisa-otf fonts-rufscript fonts-seto"
)
DIGIT_HEIGHT = BOX_SIZE  # typed digits are scaled to MNIST's ink height
RENDER_SIZE = 64  # point size fonts are drawn at before scaling down (smooth edges)
INK_LEVEL = 0.3  # coverage counted as ink when measuring a glyph's height


def installed(families: tuple[str, ...]) -> list[list[str]]:
    """The installed font files of each of `families` that has any (one list per family)."""
    found = [[str(FONT_ROOT / f) for f in FONT_FAMILIES[name] if (FONT_ROOT / f).is_file()]
             for name in families]  # fmt: skip
    return [files for files in found if files]


def training_fonts() -> list[list[str]]:
    return installed(TRAINING_FAMILIES)


def held_out_fonts() -> list[list[str]]:
    return installed(HELD_OUT_FAMILIES)


def pick_font(families: list[list[str]], rng: np.random.Generator) -> str:
    """A family uniformly, then one of its fonts: big families do not crowd out small ones."""
    family = families[int(rng.integers(len(families)))]
    return family[int(rng.integers(len(family)))]


@cache
def _font(path: str) -> ImageFont.FreeTypeFont:
    return ImageFont.truetype(path, RENDER_SIZE)


@cache
def digit_height(path: str) -> int:
    """How tall the font's digits are in pixels at RENDER_SIZE (their ink, 0-9 together)."""
    left, top, right, bottom = _font(path).getbbox("0123456789")
    return int(max(1, bottom - top))  # whole pixels already: the stubs say float


def type_text(text: str, path: str, tracking: float = 0.0) -> np.ndarray:
    """`text` typed in a font as ink coverage (0-1), its digits DIGIT_HEIGHT tall, cropped to
    the ink. `tracking` is extra space after each character, in digit heights (negative
    squeezes the characters together until they touch or overlap)."""
    font = _font(path)
    height = digit_height(path)
    step_extra = tracking * height
    x: float = height
    pad = 2 * height
    positions = []
    for char in text:
        positions.append(x)
        x += font.getlength(char) + step_extra
    canvas = Image.new("L", (max(1, round(x + pad)), 3 * height + pad), 0)
    draw = ImageDraw.Draw(canvas)
    baseline = 2 * height
    for char, left in zip(text, positions, strict=True):
        draw.text((left, baseline), char, fill=255, font=font, anchor="ls")
    ink = np.asarray(canvas, np.float32) / 255.0
    return crop_to_ink(_scaled(ink, DIGIT_HEIGHT / height))


def _scaled(ink: np.ndarray, factor: float) -> np.ndarray:
    size = (max(1, round(ink.shape[1] * factor)), max(1, round(ink.shape[0] * factor)))
    small = Image.fromarray(ink).resize(size, Image.Resampling.LANCZOS)
    return np.clip(np.asarray(small, np.float32), 0.0, 1.0)


def crop_to_ink(ink: np.ndarray, level: float = INK_LEVEL) -> np.ndarray:
    """The rows and columns of `ink` that hold coverage of at least `level` (one empty pixel
    when there are none)."""
    mask = ink >= level
    rows, columns = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    if rows.size == 0:
        return np.zeros((1, 1), np.float32)
    return ink[rows[0] : rows[-1] + 1, columns[0] : columns[-1] + 1]
