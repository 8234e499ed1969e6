"""Read the numbers in pictures: image files or images → text, numbers, digits and their boxes.

Two stages, so that the first can run in worker processes without a model:

1. `find_lines(image)`: the picture's ink (`preprocess.find_ink`), its lines and the numbers
   on each (`lines.find_numbers`), as line images;
2. `NumberReader.read_found(found)`: every line image of a batch of pictures through the
   sequence reader (`digitlab.reader`), decoded into digits with their boxes in the picture,
   each number's confidence, and the pictures' readings.

A number whose decoded string is empty is no number (a word, a doodle); one whose calibrated
confidence is under the reader's threshold is refused as "not a number". A picture with no
number left answers `text: None` and says why.
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
from digitlab.lines import NumberImage, find_numbers
from digitlab.reader import (
    CRNN,
    batch_lines,
    greedy_decode,
    padded_width,
    scale_log_probs,
    string_log_probability,
)

# Reading looks at pictures in more detail than one digit needs: lines of small digits on a
# page must keep a few pixels of height each after the picture is reduced.
READ_WORKING_SIZE = 1024
NO_NUMBER = "no number found"
NOT_A_NUMBER = "not a number"
Box = tuple[int, int, int, int]  # x, y, w, h in the picture's pixels


@dataclass(frozen=True)
class ReadDigit:
    digit: int
    probability: float
    box: Box

    def to_dict(self) -> dict[str, Any]:
        return {"digit": self.digit, "probability": self.probability, "box": list(self.box)}


@dataclass(frozen=True)
class ReadNumber:
    text: str
    confidence: float  # calibrated probability that `text` is what is written
    box: Box
    digits: list[ReadDigit]
    line: int  # 0 = the top line of the picture

    def to_dict(self) -> dict[str, Any]:
        return {
            "text": self.text,
            "confidence": self.confidence,
            "box": list(self.box),
            "digits": [d.to_dict() for d in self.digits],
        }


@dataclass(frozen=True)
class Reading:
    """What one picture gave: its numbers in reading order, none (with the reason), or an error."""

    path: Path | None
    numbers: list[ReadNumber] = field(default_factory=list)
    reason: str | None = None  # why there is no number, e.g. "no number found: ..."
    error: str | None = None  # the file could not be read

    @property
    def text(self) -> str | None:
        """The numbers, a space between numbers on one line, a newline between lines."""
        if not self.numbers:
            return None
        lines: dict[int, list[str]] = {}
        for number in self.numbers:
            lines.setdefault(number.line, []).append(number.text)
        return "\n".join(" ".join(texts) for _, texts in sorted(lines.items()))

    @property
    def digits(self) -> list[ReadDigit]:
        return [digit for number in self.numbers for digit in number.digits]

    @property
    def confidence(self) -> float | None:
        """How sure the whole text is: the product of its numbers' confidences."""
        return math.prod(n.confidence for n in self.numbers) if self.numbers else None

    def to_dict(self) -> dict[str, Any]:
        return {
            "path": None if self.path is None else str(self.path),
            "text": self.text,
            "numbers": [n.to_dict() for n in self.numbers],
            "digits": [d.to_dict() for d in self.digits],
            "confidence": self.confidence,
            "reason": self.reason,
            "error": self.error,
        }


@dataclass(frozen=True)
class FoundLines:
    """A picture's numbers as line images, before reading (what `find_lines` gives)."""

    numbers: list[NumberImage]
    scale: float  # picture pixels per ink-map pixel


def find_lines(image: Image.Image) -> FoundLines | str:
    """The picture's numbers as line images, or why there are none. No model is needed."""
    from digitlab.preprocess import find_ink

    found = find_ink(image, working_size=READ_WORKING_SIZE)
    if isinstance(found, str):
        return found.replace("no digit found", NO_NUMBER)
    floor = found.noise_floor
    ink = np.clip((found.ink - floor) / max(1e-6, 1.0 - floor), 0.0, 1.0).astype(np.float32)
    numbers = find_numbers(ink)
    if not numbers:
        return f"{NO_NUMBER}: no line of writing in the picture"
    return FoundLines(numbers, found.scale)


class NumberReader:
    """A sequence reader loaded once: line images → digits, with calibrated confidences.

    `temperature` calibrates the string probabilities (fitted on held-out generated numbers);
    a number under `threshold` confidence is refused as not a number (None: never refused)."""

    def __init__(
        self,
        model: CRNN,
        *,
        temperature: float = 1.0,
        threshold: float | None = None,
        device: torch.device | str = "cpu",
        metadata: dict[str, Any] | None = None,
    ) -> None:
        self.device = torch.device(device)
        self.model = model.to(self.device).eval()
        self.temperature = temperature
        self.threshold = threshold
        self.metadata = metadata or {}

    def read_images(self, images: Sequence[Image.Image]) -> list[Reading]:
        """The numbers in each picture; every line image of them in a few forward passes."""
        return self.read_found([find_lines(image) for image in images])

    def read_image(self, image: Image.Image) -> Reading:
        return self.read_images([image])[0]

    def read_found(self, found: Sequence[FoundLines | str]) -> list[Reading]:
        """Readings of pictures whose lines `find_lines` found (or said why there are none)."""
        lines = [number for item in found if not isinstance(item, str) for number in item.numbers]
        decoded = iter(self.decode([number.pixels for number in lines]))
        readings = []
        for item in found:
            if isinstance(item, str):
                readings.append(Reading(None, reason=item))
                continue
            numbers = []
            for number in item.numbers:
                digits, confidence = next(decoded)
                if digits and (self.threshold is None or confidence >= self.threshold):
                    numbers.append(_read_number(number, digits, confidence, item.scale))
            refused = len(numbers) < len(item.numbers)
            reason = None if numbers else f"{NO_NUMBER}: {NOT_A_NUMBER}" if refused else NO_NUMBER
            readings.append(Reading(None, numbers, reason=reason))
        return readings

    def decode(self, line_images: Sequence[np.ndarray]) -> list[tuple[list, float]]:
        """Each line image's decoded digits (`reader.DecodedDigit`) and the calibrated
        probability of that string."""
        results = []
        for log_probs in self.log_probs(line_images):
            scaled = scale_log_probs(log_probs, self.temperature)
            digits = greedy_decode(scaled)
            strings = [[d.digit for d in digits]]
            results.append((digits, float(string_log_probability(scaled[None], strings).exp())))
        return results

    @torch.inference_mode()
    def log_probs(self, line_images: Sequence[np.ndarray]) -> list[torch.Tensor]:
        """Each line image's (T, 11) raw log-probabilities. Images are batched by padded
        width, so an image's answer never depends on what else is in the batch."""
        results: list[torch.Tensor] = [torch.zeros(0)] * len(line_images)
        by_width: dict[int, list[int]] = {}
        for index, pixels in enumerate(line_images):
            by_width.setdefault(padded_width(pixels.shape[1]), []).append(index)
        for indices in by_width.values():
            batch, _ = batch_lines([torch.from_numpy(line_images[i]) for i in indices])
            out = self.model(batch.to(self.device)).float().cpu()
            for index, log_probs in zip(indices, out, strict=True):
                results[index] = log_probs
        return results


def _read_number(number: NumberImage, digits: list, confidence: float, scale: float) -> ReadNumber:
    read = [
        ReadDigit(d.digit, d.probability, _picture_box(number.box(*d.columns), scale))
        for d in digits
    ]
    whole = _picture_box(number.box(0, number.pixels.shape[1] - 1), scale)
    text = "".join(str(d.digit) for d in read)
    return ReadNumber(text, confidence, whole, read, number.line)


def _picture_box(box: tuple[float, float, float, float], scale: float) -> Box:
    """An ink-map box (x, y, w, h) in the picture's pixels, whole pixels covering it."""
    x, y, w, h = box
    left, top = math.floor(x * scale), math.floor(y * scale)
    return left, top, math.ceil((x + w) * scale) - left, math.ceil((y + h) * scale) - top


def read_paths(
    reader: NumberReader,
    paths: Sequence[Path],
    *,
    batch_size: int = 64,
    on_progress: Callable[[int], None] | None = None,
) -> list[Reading]:
    """Open and read image files in chunks; unreadable files become readings with an error."""
    from digitlab.images import open_image

    readings: list[Reading] = []
    for start in range(0, len(paths), batch_size):
        chunk = paths[start : start + batch_size]
        found: list[FoundLines | str] = []
        errors: dict[int, str] = {}
        for index, path in enumerate(chunk):
            try:
                found.append(find_lines(open_image(path)))
            except DigitlabError as err:
                errors[index] = str(err)
        read = iter(reader.read_found(found))
        for index, path in enumerate(chunk):
            error = errors.get(index)
            readings.append(Reading(path, error=error) if error else replace(next(read), path=path))
        if on_progress is not None:
            on_progress(len(chunk))
    return readings


READER_PREFIX = "reader."  # a reader carried by a classifier's checkpoint (the packaged one)


def load_number_reader(
    checkpoint: str | Path | None = None, device: torch.device | str = "cpu"
) -> NumberReader:
    """The sequence reader of a checkpoint: a reader run's own model, or the reader a
    classifier's checkpoint carries (tensors `reader.*`); None = the newest run, else the
    packaged model."""
    from safetensors import safe_open

    from digitlab.checkpoint import METADATA_KEY
    from digitlab.errors import CheckpointError
    from digitlab.runs import resolve_checkpoint

    path = resolve_checkpoint(checkpoint)
    with safe_open(str(path), framework="pt") as f:
        metadata = __import__("json").loads((f.metadata() or {})[METADATA_KEY])
        own = metadata.get("model") == "crnn"
        prefix = "" if own else READER_PREFIX
        state = {
            name[len(prefix) :]: f.get_tensor(name)
            for name in f.keys()  # noqa: SIM118 (not a dict)
            if name.startswith(prefix)
            and (not own or "." in name and not name.startswith("rejector."))
        }
    if not state:
        raise CheckpointError(f"{path} holds no number reader")
    model = CRNN()
    model.load_state_dict(state)
    info = metadata.get("reader") or {}
    return NumberReader(
        model,
        temperature=float(info.get("temperature") or 1.0),
        threshold=info.get("threshold"),
        device=device,
        metadata=metadata,
    )
