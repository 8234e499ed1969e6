"""Open any image file safely: size and pixel limits, decoding, EXIF orientation, alpha, 16-bit.

`open_image` turns a path or bytes into an upright 8-bit grey Pillow image, or raises
ImageError naming the file and what to do. What is done with the picture afterwards (finding
a digit, reading a number) is `preprocess`'s and `read`'s job.
"""

import io
import struct
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from digitlab.errors import ImageError

# Limits on what `open_image` accepts, so an upload can't exhaust memory: 20 MB is far more
# than any photo of a digit needs, and 40 megapixels (a 1-byte-per-pixel grey copy is 40 MB)
# covers every phone camera while refusing decompression bombs (tiny files, huge pictures).
MAX_BYTES = 20 * 1024 * 1024
MAX_PIXELS = 40_000_000

_WIDE_MODES = ("I", "I;16", "I;16L", "I;16B", "I;16N", "F")
_ALPHA_MODES = ("RGBA", "LA", "PA", "RGBa", "La")
# What Pillow raises while decoding a damaged file.
_DECODE_ERRORS = (OSError, SyntaxError, ValueError, EOFError, IndexError, struct.error)


def open_image(
    source: str | Path | bytes, *, max_bytes: int = MAX_BYTES, max_pixels: int = MAX_PIXELS
) -> Image.Image:
    """Open a file or bytes as an upright 8-bit grey ("L") image, within the size limits.

    Reads anything Pillow reads (the first frame of animations); transparency is composited
    onto white (onto black when the visible ink itself is light). Raises ImageError naming
    the file and the problem.
    """
    name, data = _read_limited(source, max_bytes)
    image = _decode(data, name, max_pixels)
    return to_grey(_upright(image))


def _read_limited(source: str | Path | bytes, max_bytes: int) -> tuple[str, bytes]:
    """(name for messages, the bytes), refusing more than max_bytes before reading them all."""
    if isinstance(source, bytes):
        name, data = "the image data", source
    else:
        name = str(source)
        try:
            with open(source, "rb") as file:
                # Read one byte past the limit: enough to tell "too large" without reading
                # (or holding in memory) the rest of a huge file.
                data = file.read(max_bytes + 1)
        except FileNotFoundError:
            raise ImageError(f"{name}: no such file; check the path") from None
        except (OSError, ValueError) as error:  # a folder, no permission, a NUL in the name
            reason = getattr(error, "strerror", None) or error
            raise ImageError(f"{name}: cannot read the file ({reason})") from None
    if len(data) > max_bytes:
        raise ImageError(
            f"{name}: the file is larger than the {_megabytes(max_bytes)} limit; "
            "resize or compress the image"
        )
    return name, data


def _megabytes(size: int) -> str:
    return f"{size / (1024 * 1024):g} MB"


def _decode(data: bytes, name: str, max_pixels: int) -> Image.Image:
    """Decode the first frame, checking the pixel count from the header before decoding."""
    try:
        image = Image.open(io.BytesIO(data))  # lazy: reads only the header
    except Image.DecompressionBombError:
        raise _too_many_pixels(name, max_pixels) from None
    except UnidentifiedImageError:
        raise ImageError(
            f"{name}: not an image file Pillow can read; use PNG, JPEG, BMP, GIF, TIFF or WebP"
        ) from None
    except _DECODE_ERRORS as error:
        raise _corrupt(name, error) from None
    if image.width * image.height > max_pixels:
        raise _too_many_pixels(name, max_pixels)
    try:
        image.load()
    except Image.DecompressionBombError:
        raise _too_many_pixels(name, max_pixels) from None
    except _DECODE_ERRORS as error:
        raise _corrupt(name, error) from None
    return image


def _corrupt(name: str, error: Exception) -> ImageError:
    return ImageError(
        f"{name}: the image is truncated or corrupt ({error}); save or download it again"
    )


def _too_many_pixels(name: str, max_pixels: int) -> ImageError:
    return ImageError(
        f"{name}: the image has more than {max_pixels:,} pixels; downscale it and try again"
    )


def _upright(image: Image.Image) -> Image.Image:
    """Apply the EXIF orientation tag, as cameras expect viewers to."""
    try:
        return ImageOps.exif_transpose(image)
    except _DECODE_ERRORS:
        # A damaged EXIF block shouldn't make a readable picture unreadable; like most
        # viewers, show it as stored.
        return image


def to_grey(image: Image.Image) -> Image.Image:
    """8-bit grey: transparency flattened, 16-bit and float images scaled (not clipped)."""
    if _has_alpha(image):
        return _flatten_alpha(image)
    if image.mode == "L":
        return image
    if image.mode in _WIDE_MODES:
        return Image.fromarray(_scale_wide(np.asarray(image), image.mode))
    try:
        return image.convert("L")
    except ValueError:  # modes such as LAB or HSV convert to grey only via RGB
        return image.convert("RGB").convert("L")


def _has_alpha(image: Image.Image) -> bool:
    return image.mode in _ALPHA_MODES or "transparency" in image.info


def _flatten_alpha(image: Image.Image) -> Image.Image:
    """Composite onto white, or onto black if the visible pixels are light (white ink)."""
    rgba = image.convert("RGBA")
    grey_alpha = np.asarray(rgba.convert("LA"), dtype=np.float64)
    grey, alpha = grey_alpha[..., 0], grey_alpha[..., 1]
    visible_mean = (grey * alpha).sum() / max(alpha.sum(), 1.0)
    backdrop = Image.new("RGBA", rgba.size, "black" if visible_mean > 127.5 else "white")
    return Image.alpha_composite(backdrop, rgba).convert("L")


def _scale_wide(values: np.ndarray, mode: str) -> np.ndarray:
    """16/32-bit integer or float grey levels → uint8, scaled to the range they were stored in.

    I;16 is always 0-65535. "I" and "F" carry no range, so take the smallest usual one that
    holds the data: 0-1 (float only), 0-255, 0-65535, or else the image's own maximum.
    """
    levels = np.nan_to_num(values.astype(np.float64), nan=0.0, posinf=0.0, neginf=0.0)
    top = float(levels.max(initial=0.0))
    if mode.startswith("I;16"):
        full_scale = 65535.0
    else:
        usual = ([1.0] if mode == "F" else []) + [255.0, 65535.0]
        full_scale = next((limit for limit in usual if top <= limit), top)
    return np.round(np.clip(levels / full_scale, 0.0, 1.0) * 255).astype(np.uint8)
