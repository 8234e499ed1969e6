"""Reading numbers with the sequence reader: clean numbers of real MNIST test digits, several
numbers and lines in one picture, boxes in the original pixels, "not a number", bad files, and
whole-string accuracy on photos of the easy kinds.

The reader is the packaged model's (`digitlab train --recipe reader`, embedded by
scripts/make_pretrained.py --embed-reader); bench/read_numbers.py measures every kind.
"""

import json
import math

import numpy as np
import pytest
from compare import same
from PIL import Image

from digitlab.data import MNIST
from digitlab.pretrained import PACKAGED_MODEL
from digitlab.read import (
    NO_NUMBER,
    NOT_A_NUMBER,
    NumberReader,
    find_lines,
    read_image,
    read_images,
    read_paths,
    read_stream,
)
from digitlab.synth.clean_numbers import first_of_each, number_picture, page_picture, slot
from digitlab.synth.pictures import make_pictures

# Whole strings right, at least, on 30 photos of each kind (seed 11). The packaged reader read
# 29/30 spaced, 29/30 two_lines, and said "no number" for 27/30 pictures of marks.
MIN_ACCURACY = {"spaced": 0.9, "two_lines": 0.85, "none": 0.8}
PICTURES = 30


@pytest.fixture(scope="module")
def reader() -> NumberReader:
    return NumberReader.from_checkpoint(PACKAGED_MODEL, "cpu")


def digits_of(mnist: MNIST, text: str) -> list[np.ndarray]:
    """`text` written with MNIST test digits (the first of each class, then the second...)."""
    return [mnist.test_images[i].numpy() for i in first_of_each(mnist.test_labels.numpy(), text)]


@pytest.mark.parametrize("text", ["2026", "714", "97"])
def test_clean_numbers_are_read_with_a_box_per_digit(mnist, reader, text):
    picture = number_picture(digits_of(mnist, text))
    reading = read_image(reader, Image.fromarray(picture))
    assert reading.text == text and reading.reason is None and reading.error is None
    (number,) = reading.numbers
    assert number.text == text and number.line == 0 and 0 < number.confidence <= 1
    assert reading.confidence == pytest.approx(number.confidence)
    assert [d.digit for d in reading.digits] == [int(c) for c in text]
    for index, digit in enumerate(reading.digits):
        x, y, w, h = digit.box
        first, last = slot(index)
        assert first <= x and x + w - 1 <= last  # each box on its own digit
        assert y >= 0 and y + h <= picture.shape[0] and w > 0 and h > 0
        assert 0 < digit.probability <= 1
    nx, ny, nw, nh = number.box  # the number's box holds its digits' boxes
    assert all(
        nx <= x and ny <= y and x + w <= nx + nw and y + h <= ny + nh
        for x, y, w, h in (d.box for d in reading.digits)
    )


def test_two_lines_and_two_numbers_on_a_line(mnist, reader):
    page = page_picture(
        [[digits_of(mnist, "714"), digits_of(mnist, "97")], [digits_of(mnist, "2026")]]
    )
    reading = read_image(reader, Image.fromarray(page))
    assert reading.text == "714 97\n2026"
    assert [(n.text, n.line) for n in reading.numbers] == [("714", 0), ("97", 0), ("2026", 1)]
    first, second, below = (n.box for n in reading.numbers)
    assert first[0] + first[2] <= second[0]  # side by side on the top line
    assert max(first[1] + first[3], second[1] + second[3]) <= below[1]  # the line below
    assert reading.confidence == pytest.approx(math.prod(n.confidence for n in reading.numbers))
    assert [d.digit for d in reading.digits] == [7, 1, 4, 9, 7, 2, 0, 2, 6]


def test_boxes_are_in_the_original_pixels(mnist, reader):
    """A picture larger than the working size: every box scaled back onto its digit."""
    sheet = np.full((1200, 3000), 250, np.uint8)
    placed = []  # (left, top) of each digit's 280 px square
    for n, digit in enumerate(digits_of(mnist, "714")):
        big = np.asarray(Image.fromarray(255 - digit).resize((280, 280), Image.Resampling.BICUBIC))
        left, top = 900 + 300 * n, 500
        sheet[top : top + 280, left : left + 280] = np.minimum(
            sheet[top : top + 280, left : left + 280], big
        )
        placed.append((left, top))
    reading = read_image(reader, Image.fromarray(sheet))
    assert reading.text == "714"
    for (left, top), found in zip(placed, reading.digits, strict=True):
        x, y, w, h = found.box
        # MNIST's ink fills about the middle 20 of 28 px: 200 of the 280 px square.
        assert left - 10 <= x and x + w <= left + 290 and top - 10 <= y and y + h <= top + 290
        assert h >= 100
    x, y, w, h = reading.numbers[0].box
    assert x + 40 >= 900 and x + w <= 900 + 880 and y + 40 >= 500 and y + h <= 500 + 300


def test_to_dict_has_every_field(mnist, reader):
    reading = read_image(reader, Image.fromarray(number_picture(digits_of(mnist, "97"))))
    as_json = json.loads(json.dumps(reading.to_dict()))
    assert set(as_json) == {
        "path", "text", "numbers", "digits", "confidence", "reason", "error"
    }  # fmt: skip
    assert as_json["path"] is None and as_json["text"] == "97"
    (number,) = as_json["numbers"]
    assert set(number) == {"text", "confidence", "box", "digits"}
    assert number["digits"] == as_json["digits"]
    assert set(as_json["digits"][0]) == {"digit", "probability", "box"}
    assert as_json["digits"][0]["box"] == list(reading.digits[0].box)


def test_a_threshold_refuses_unsure_numbers(mnist, reader):
    """Under the reader's threshold a number is refused as "not a number"; the reading says so."""
    picture = Image.fromarray(number_picture(digits_of(mnist, "714")))
    sure = read_image(reader, picture)
    calibrated = {"temperature": reader.temperature, "metadata": reader.metadata}
    strict = NumberReader(reader.model, threshold=1.01, **calibrated)
    lenient = NumberReader(reader.model, threshold=0.0, **calibrated)
    refused = read_image(strict, picture)
    assert refused.text is None and refused.numbers == [] and refused.confidence is None
    assert refused.reason == f"{NO_NUMBER}: {NOT_A_NUMBER}"
    assert same(read_image(lenient, picture).to_dict(), sure.to_dict())


def test_the_temperature_changes_confidences_not_the_text(mnist, reader):
    pictures = [Image.fromarray(number_picture(digits_of(mnist, t))) for t in ("2026", "97")]
    softer = NumberReader(reader.model, temperature=3.0, metadata=reader.metadata)
    plain, soft = read_images(reader, pictures), read_images(softer, pictures)
    assert [r.text for r in plain] == [r.text for r in soft] == ["2026", "97"]
    assert all(s.confidence < p.confidence for s, p in zip(soft, plain, strict=True))


def test_a_picture_reads_the_same_alone_and_with_others(mnist, reader):
    """Line images are batched by padded width: what else is read never changes an answer."""
    pictures = [Image.fromarray(number_picture(digits_of(mnist, t))) for t in ("2026", "714")]
    pictures.append(
        Image.fromarray(page_picture([[digits_of(mnist, "97")], [digits_of(mnist, "55")]]))
    )
    together = [r.to_dict() for r in read_images(reader, pictures)]
    alone = [read_image(reader, picture).to_dict() for picture in pictures]
    assert same(together, alone)


def test_blank_and_empty_pictures_say_why(reader):
    assert (
        find_lines(Image.new("L", (300, 100), 255))
        == f"{NO_NUMBER}: the image is blank (one uniform colour)"
    )
    for picture in (Image.new("L", (300, 100), 255), Image.new("L", (0, 0))):
        reading = read_image(reader, picture)
        assert reading.text is None and reading.numbers == [] and reading.digits == []
        assert reading.reason.startswith(NO_NUMBER)


def test_read_paths_is_the_stream_collected_and_reports_bad_files(mnist, reader, tmp_path):
    paths = []
    for text in ("2026", "97"):
        paths.append(tmp_path / f"number-{text}.png")
        Image.fromarray(number_picture(digits_of(mnist, text))).save(paths[-1])
    blank = tmp_path / "blank.png"
    Image.new("L", (64, 64), 255).save(blank)
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"\x89PNG\r\n\x1a\n not really")
    missing = tmp_path / "missing.png"
    everything = [*paths, blank, broken, missing]
    readings = read_paths(reader, everything, batch_size=2)
    streamed = [r.to_dict() for r in read_stream(reader, everything)]
    assert same([r.to_dict() for r in readings], streamed)
    assert [r.path for r in readings] == everything
    assert [r.text for r in readings[:2]] == ["2026", "97"]
    assert readings[2].text is None and readings[2].reason.startswith(NO_NUMBER)
    assert readings[2].error is None and readings[2].digits == []
    assert "broken.png" in readings[3].error and readings[3].text is None
    assert "missing.png" in readings[4].error
    assert readings[4].to_dict()["path"] == str(missing)


@pytest.mark.slow  # 90 photos
@pytest.mark.parametrize("kind", list(MIN_ACCURACY))
def test_whole_string_accuracy_on_photos(mnist, reader, kind):
    pairs = make_pictures(mnist.test_images, mnist.test_labels, kind, PICTURES, seed=11)
    readings = read_images(reader, [picture for picture, _ in pairs])
    right = sum((r.text or "") == text for r, (_, text) in zip(readings, pairs, strict=True))
    print(f"{kind}: {right}/{PICTURES}")
    assert right / PICTURES >= MIN_ACCURACY[kind], f"{kind}: {right}/{PICTURES}"
