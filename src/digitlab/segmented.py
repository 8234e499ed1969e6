"""Read whole numbers: image files or pictures → the string of digits in each, left to right.

Each picture's ink is found as for one digit (`preprocess.find_ink`), cut into digits by
`segment`, each digit put in MNIST format (`preprocess.ink_to_mnist`), and all the digits of
a chunk of pictures go through the model in one forward pass. When a piece of ink may be two
touching digits, the model itself scores the candidate cuts.
"""

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from digitlab.errors import DigitlabError
from digitlab.predict import Predictor, chunked

# Width / height of each digit's ink (above a quarter of full strength) in the MNIST training
# set: the median and the standard deviation of its log, for 0-9.
DIGIT_LOG_ASPECTS = torch.tensor([0.9, 0.39, 0.93, 0.79, 0.79, 0.93, 0.72, 0.77, 0.76, 0.67]).log()
DIGIT_LOG_ASPECT_SPREADS = torch.tensor([0.2, 0.46, 0.22, 0.21, 0.21, 0.26, 0.22, 0.21, 0.22, 0.21])
# The shape prior never falls below this: real digits (a 0 or 6 written wide, a slanted font)
# stray further from MNIST's shapes than its Gaussian allows, and a clearly read whole digit
# must not lose to slices of it only for its shape. Measured: bench/read_numbers.py.
MIN_SHAPE_PRIOR = 0.1


NOT_A_DIGIT_MARK = "?"
# What `find_digits` gives for a picture: each digit's (1, 28, 28) view and its box, x y w h.
FoundDigits = list[tuple[torch.Tensor, tuple[int, int, int, int]]]


@dataclass(frozen=True)
class ReadDigit:
    """One digit of a number, as the model read it."""

    digit: int | None  # None is reserved for "not a digit"
    probability: float
    box: tuple[int, int, int, int]  # x, y, w, h in the original image's pixels
    view: torch.Tensor = field(repr=False)  # (1, 28, 28): what the model saw
    reason: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "digit": self.digit,
            "probability": self.probability,
            "box": list(self.box),
            "reason": self.reason,
        }


@dataclass(frozen=True)
class Reading:
    """What one picture gave: a string of digits, no digits (with the reason), or an error."""

    path: Path | None
    text: str | None  # the digits left to right; None when there are none (see `reason`)
    digits: list[ReadDigit]
    confidence: float | None  # how sure the whole string is: the product of its digits'
    reason: str | None = None  # why there is no text, e.g. "no digits found: the image is blank"
    error: str | None = None  # the file could not be read

    def to_dict(self) -> dict[str, Any]:
        return {
            "path": None if self.path is None else str(self.path),
            "text": self.text,
            "digits": [digit.to_dict() for digit in self.digits],
            "confidence": self.confidence,
            "reason": self.reason,
            "error": self.error,
        }


def read_image(predictor: Predictor, image: Image.Image) -> Reading:
    """The number in one picture."""
    return read_images(predictor, [image])[0]


def read_images(predictor: Predictor, images: Sequence[Image.Image]) -> list[Reading]:
    """The number in each picture; the digits of all of them share one forward pass."""
    return read_found(predictor, [find_digits(predictor, image) for image in images])


def read_found(predictor: Predictor, found: Sequence[FoundDigits | str]) -> list[Reading]:
    """The readings of pictures whose digits `find_digits` has found (or said why there are
    none), with every digit of them in one forward pass. `path` is left None."""
    views = [view for item in found if not isinstance(item, str) for view, _ in item]
    predictions = iter(predictor.predict_tensor(torch.stack(views)) if views else [])
    readings = []
    for item in found:
        if isinstance(item, str):
            readings.append(Reading(None, None, [], None, reason=item))
            continue
        digits = [
            ReadDigit(prediction.digit, prediction.probability, box, view, prediction.reason)
            for (view, box), prediction in zip(item, predictions, strict=False)
        ]
        readings.append(_reading(None, digits))
    return readings


def read_paths(
    predictor: Predictor,
    paths: Sequence[Path],
    *,
    batch_size: int = 256,
    on_progress: Callable[[int], None] | None = None,
) -> list[Reading]:
    """Open and read image files in chunks; unreadable files become readings with an error."""
    from digitlab.images import open_image

    readings: list[Reading] = []
    for chunk in chunked(paths, batch_size):
        opened: list[Image.Image | str] = []
        for path in chunk:
            try:
                opened.append(open_image(path))
            except DigitlabError as err:
                opened.append(str(err))
        images = [image for image in opened if not isinstance(image, str)]
        read = iter(read_images(predictor, images))
        for path, image in zip(chunk, opened, strict=True):
            if isinstance(image, str):
                readings.append(Reading(path, None, [], None, error=image))
            else:
                readings.append(replace(next(read), path=path))
        if on_progress is not None:
            on_progress(len(chunk))
    return readings


def find_digits(predictor: Predictor, image: Image.Image) -> FoundDigits | str:
    """(MNIST view, box in the image's pixels) of each digit, left to right; or why none.
    The model only scores candidate cuts here; `read_found` reads the digits."""
    from digitlab.preprocess import find_ink, ink_to_mnist
    from digitlab.segment import segment

    found = find_ink(image)
    if isinstance(found, str):
        return found.replace("no digit found", "no digits found")
    segments = segment(found, score=_scorer(predictor))
    if isinstance(segments, str):
        return segments
    return [
        (torch.from_numpy(ink_to_mnist(piece.ink)).unsqueeze(0), _scaled(piece.box, found.scale))
        for piece in segments
    ]


def _scorer(predictor: Predictor) -> Callable[[Sequence[np.ndarray]], list[float]]:
    """How sure we are that each ink patch is one digit: the model's probability for the best
    digit times how typical the patch's width / height is for that digit, times how much the
    "not a digit" detector takes it for exactly one whole digit (when the checkpoint has one).

    The model, trained on single digits only, is often sure of a slice of a digit or of two
    digits together as well. The shape says that a third of a 0 is no 1's shape; the detector,
    trained on such pairs and slices as non-digits, catches what the shape lets through.
    """
    from digitlab.preprocess import BOX_INK_LEVEL, ink_to_mnist

    def score(patches: Sequence[np.ndarray]) -> list[float]:
        if not patches:
            return []
        views = torch.stack([torch.from_numpy(ink_to_mnist(p)).unsqueeze(0) for p in patches])
        probabilities = predictor.predict_probabilities(views)  # (N, 10)
        aspects = torch.tensor([_aspect(patch >= BOX_INK_LEVEL) for patch in patches])
        spread = (aspects.log()[:, None] - DIGIT_LOG_ASPECTS) / DIGIT_LOG_ASPECT_SPREADS
        prior = torch.exp(-0.5 * spread**2).clamp(min=MIN_SHAPE_PRIOR)
        best = (probabilities * prior).amax(dim=1)
        whole = predictor.digitness(views)
        return (best if whole is None else best * whole).tolist()

    return score


def _aspect(mask: np.ndarray) -> float:
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    if rows.size == 0:
        return 1.0
    return float(cols[-1] - cols[0] + 1) / float(rows[-1] - rows[0] + 1)


def _scaled(box: tuple[int, int, int, int], scale: float) -> tuple[int, int, int, int]:
    """An ink-map box in the original image's pixels."""
    x, y, w, h = box
    return (
        math.floor(x * scale),
        math.floor(y * scale),
        math.ceil(w * scale),
        math.ceil(h * scale),
    )


def _reading(path: Path | None, digits: list[ReadDigit]) -> Reading:
    if not digits:
        return Reading(path, None, [], None, reason="no digits found")
    # A character the detector calls "not a digit" shows as NOT_A_DIGIT_MARK in the text.
    text = "".join(NOT_A_DIGIT_MARK if d.digit is None else str(d.digit) for d in digits)
    confidence = math.prod(d.probability for d in digits)
    return Reading(path, text, digits, confidence)
