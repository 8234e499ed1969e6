"""Read the numbers in pictures: image files or images → text, numbers, digits and their boxes.

    reader = NumberReader.from_checkpoint()       # the newest reader run, else the packaged one
    reading = read_image(reader, Image.open("meter.jpg"))
    reading.text                                  # "2026", or "714 2026\n13" for two lines

Two stages, so that the first can run in worker processes without a model:

1. `find_lines(image)`: the picture's ink (`ink.find_ink`), its lines and the numbers
   on each (`lines.find_numbers`), as line images;
2. `NumberReader.read_found(found)`: every line image of a batch of pictures through the
   sequence reader (`digitlab.reader`), decoded into digits with their boxes in the picture,
   each number's confidence, and the pictures' readings.

A number whose decoded string is empty is no number (a word, a doodle); one whose calibrated
confidence is under the reader's threshold is refused as "not a number". A picture with no
number left answers `text: None` and says why. `read_stream` reads many files in order, the
first stage in worker processes if asked; `read_paths` collects it.
"""

import functools
import math
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from PIL import Image

from digitlab.errors import CheckpointError, DigitlabError
from digitlab.lines import LAYOUT, NumberImage, find_numbers
from digitlab.reader import (
    batch_lines,
    greedy_decode,
    padded_width,
    scale_log_probs,
    string_log_probability,
)
from digitlab.workers import BATCH, stream

if TYPE_CHECKING:
    from digitlab.bundle import Bundle

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
    from digitlab.ink import find_ink

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
        model: torch.nn.Module,
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

    @classmethod
    def from_bundle(cls, bundle: "Bundle") -> "NumberReader":
        """The reader of a loaded checkpoint (`digitlab.bundle.load_bundle`): a reader run's
        own, or the one a classifier's checkpoint carries; a CheckpointError if it has none."""
        if bundle.reader is None:
            raise CheckpointError(
                f"{bundle.path} carries no number reader (it is a {bundle.metadata['model']} "
                "digit classifier): pass a reader run (`digitlab train --recipe reader`) to "
                "--checkpoint, or drop --checkpoint to use the packaged reader"
            )
        return bundle.reader

    @classmethod
    def from_checkpoint(
        cls, path: str | Path | None = None, device: str = "auto"
    ) -> "NumberReader":
        """`from_bundle(load_bundle(path, ...))`: a `.safetensors` file or a run folder; None =
        the newest reader run under ./runs, else the packaged model's reader."""
        from digitlab.bundle import load_bundle

        return cls.from_bundle(load_bundle(path, device=device, task="numbers"))

    @property
    def missing(self) -> list[str]:
        """What this reader lacks, one sentence each: a run stopped before its end has no
        calibration (empty for a finished reader)."""
        if (self.metadata.get("reader") or {}).get("temperature") is not None:
            return []
        return [
            "this reader is not calibrated (its run did not finish): confidences are raw and "
            "no unsure number is refused; finish it with `digitlab train --resume RUN`"
        ]

    @property
    def model_name(self) -> str:
        """The reader's registry name, e.g. "crnn"."""
        return str((self.metadata.get("reader") or {}).get("model") or self.metadata["model"])

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
    inked = np.flatnonzero((number.pixels >= LAYOUT.stroke_level).any(axis=0))
    read = [
        ReadDigit(d.digit, d.probability, _picture_box(number.box(*span), scale))
        for d, span in zip(digits, _digit_spans(digits, inked, number.pixels.shape[1]), strict=True)
    ]
    ends = (int(inked[0]), int(inked[-1])) if inked.size else (0, number.pixels.shape[1] - 1)
    whole = _picture_box(number.box(*ends), scale)
    text = "".join(str(d.digit) for d in read)
    return ReadNumber(text, confidence, whole, read, number.line)


def _digit_spans(digits: list, inked: np.ndarray, width: int) -> list[tuple[int, int]]:
    """Each digit's line-image columns. The frames that emit a digit (its CTC alignment) are
    often a few columns of its glyph: its span reaches halfway to its neighbours' frames, then
    shrinks to the columns holding ink (`inked`, sorted), so its box is its glyph's."""
    spans = []
    for index, digit in enumerate(digits):
        first, last = digit.columns
        left = 0 if index == 0 else (digits[index - 1].columns[1] + first) // 2 + 1
        right = (
            width - 1 if index == len(digits) - 1 else (last + digits[index + 1].columns[0]) // 2
        )
        own = inked[(inked >= left) & (inked <= right)]
        spans.append((int(own[0]), int(own[-1])) if own.size else (first, min(last, width - 1)))
    return spans


def _picture_box(box: tuple[float, float, float, float], scale: float) -> Box:
    """An ink-map box (x, y, w, h) in the picture's pixels, whole pixels covering it."""
    x, y, w, h = box
    left, top = math.floor(x * scale), math.floor(y * scale)
    return left, top, math.ceil((x + w) * scale) - left, math.ceil((y + h) * scale) - top


def read_image(reader: NumberReader, image: Image.Image) -> Reading:
    """The numbers in one picture."""
    return reader.read_image(image)


def read_images(reader: NumberReader, images: Sequence[Image.Image]) -> list[Reading]:
    """The numbers in each picture; the line images of all of them in a few forward passes."""
    return reader.read_images(images)


def read_stream(
    reader: NumberReader,
    paths: Iterable[Path],
    *,
    workers: int = 1,
    batch_size: int = BATCH,
) -> Iterator[Reading]:
    """Read the numbers in each of `paths`, yielding one `Reading` per file in input order.

    `workers` = 1 does everything in this process; more starts that many worker processes
    (`digitlab.workers`) that open each picture and find its lines, with no model, while this
    process reads the line images of a batch of files together. Unreadable files become
    readings with `error` set."""
    finish = functools.partial(_read_files, reader)
    return stream(paths, find_lines_chunk, finish, workers=workers, batch_size=batch_size)


def read_paths(
    reader: NumberReader, paths: Sequence[Path], *, workers: int = 1, batch_size: int = BATCH
) -> list[Reading]:
    """`read_stream` collected."""
    return list(read_stream(reader, paths, workers=workers, batch_size=batch_size))


@dataclass(frozen=True)
class _FoundFile:
    """One file's lines as `find_lines` found them (or why there are none), or its error."""

    path: Path
    found: FoundLines | str | None  # None when the file could not be read
    error: str | None = None


def find_lines_chunk(paths: Sequence[Path]) -> list[_FoundFile]:
    """Open each file and find its numbers' line images (in a worker process or here)."""
    from digitlab.images import open_image

    found = []
    for path in paths:
        try:
            found.append(_FoundFile(path, find_lines(open_image(path))))
        except DigitlabError as err:
            found.append(_FoundFile(path, None, error=str(err)))
    return found


def find_lines_in(data: bytes) -> FoundLines | str:
    """`find_lines` of an image file's bytes (what `digitlab serve`'s workers do for /read);
    ImageError if they are no readable image."""
    from digitlab.images import open_image

    return find_lines(open_image(data))


def _read_files(reader: NumberReader, files: list[_FoundFile]) -> list[Reading]:
    """Read the line images of a batch of files in a few forward passes."""
    readable = [f.found for f in files if f.found is not None]
    read = iter(reader.read_found(readable))
    return [
        replace(next(read), path=f.path) if f.found is not None else Reading(f.path, error=f.error)
        for f in files
    ]
