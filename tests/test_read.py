"""Reading whole numbers: whole-string accuracy per kind of picture on real MNIST test digits
(and handwriting fonts), the fields of a Reading, boxes in the original pixels, bad files."""

import json

import numpy as np
import pytest
import torch
from number_images import installed_fonts, make_number_set
from PIL import Image

from digitlab.data import to_float
from digitlab.predict import Predictor
from digitlab.preprocess import ink_to_mnist
from digitlab.read import read_image, read_images, read_paths
from digitlab.runs import RunPaths

# Whole strings of 2-6 digits right, at least (bench/read_numbers.py measures the targets on
# more pictures; these guard against regressions with a few dozen of each kind).
MIN_ACCURACY = {"spaced": 0.85, "close": 0.75, "touching": 0.1, "fonts": 0.75}
PICTURES = 30  # per kind


@pytest.fixture(scope="module")
def predictor(trained_run) -> Predictor:
    return Predictor.from_checkpoint(RunPaths(trained_run).model, "cpu")


@pytest.mark.parametrize("kind", list(MIN_ACCURACY))
def test_whole_string_accuracy_per_kind(mnist, predictor, kind):
    if kind == "fonts" and not installed_fonts():
        pytest.skip("no handwriting fonts installed (.ci/run installs them)")
    pairs = make_number_set(mnist.test_images, mnist.test_labels, kind, PICTURES, seed=11)
    readings = read_images(predictor, [picture for picture, _ in pairs])
    right = sum(r.text == text for r, (_, text) in zip(readings, pairs, strict=True))
    assert right / PICTURES >= MIN_ACCURACY[kind], f"{kind}: {right}/{PICTURES}"


def test_boxes_are_in_the_original_pixels(mnist, predictor):
    """A picture larger than the working size: boxes scaled back, each around its digit."""
    sheet = np.full((900, 2400), 250, np.uint8)
    labels = mnist.test_labels.numpy()
    placed = {}  # digit → (left, top) of its 280 px square
    said = [p.digit for p in predictor.predict_tensor(to_float(mnist.test_images[:300]))]
    for n, digit in enumerate((3, 0, 5)):
        # The first of its class the model reads right: this test checks boxes, not the model.
        index = next(i for i in np.flatnonzero(labels == digit) if said[i] == digit)
        image = mnist.test_images[int(index)].numpy()
        big = np.asarray(Image.fromarray(255 - image).resize((280, 280), Image.Resampling.BICUBIC))
        left, top = 300 + 700 * n, 300
        sheet[top : top + 280, left : left + 280] = big
        placed[digit] = (left, top)
    reading = read_image(predictor, Image.fromarray(sheet))
    assert reading.text == "305" and reading.error is None and reading.reason is None
    for found in reading.digits:
        x, y, w, h = found.box
        left, top = placed[found.digit]
        # MNIST's ink fills about the middle 20 of 28 px: 200 of the 280 px square.
        assert left <= x <= left + 80 and top <= y <= top + 80
        assert 120 <= h <= 260 and w <= 260 and x + w <= left + 280 and y + h <= top + 280
        assert found.view.shape == (1, 28, 28) and 0 < found.probability <= 1
    assert reading.confidence == pytest.approx(np.prod([d.probability for d in reading.digits]))
    as_json = json.loads(json.dumps(reading.to_dict()))
    assert as_json["text"] == "305" and as_json["path"] is None and as_json["error"] is None
    assert set(as_json["digits"][0]) == {"digit", "probability", "box", "reason"}
    assert as_json["digits"][0]["box"] == list(reading.digits[0].box)


def test_read_paths_reports_unreadable_and_blank_files(mnist, predictor, tmp_path):
    pairs = make_number_set(mnist.test_images, mnist.test_labels, "spaced", 2, seed=3)
    paths = []
    for n, (picture, _) in enumerate(pairs):
        paths.append(tmp_path / f"number{n}.png")
        picture.save(paths[-1])
    blank = tmp_path / "blank.png"
    Image.new("L", (64, 64), 255).save(blank)
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"\x89PNG\r\n\x1a\n not really")
    missing = tmp_path / "missing.png"
    progress: list[int] = []
    everything = [*paths, blank, broken, missing]
    readings = read_paths(predictor, everything, batch_size=2, on_progress=progress.append)
    assert [r.path for r in readings] == everything and progress == [2, 2, 1]
    # The same as reading the pictures themselves (accuracy is tested above).
    opened = [Image.open(path).convert("L") for path in paths]
    assert [r.text for r in readings[:2]] == [r.text for r in read_images(predictor, opened)]
    assert all(r.text and r.text.isdigit() and r.confidence for r in readings[:2])
    assert readings[2].text is None and readings[2].reason.startswith("no digits found")
    assert readings[2].error is None and readings[2].digits == []
    assert "broken.png" in readings[3].error and readings[3].text is None
    assert "missing.png" in readings[4].error
    assert readings[4].to_dict()["path"] == str(missing)


def test_cuts_do_not_depend_on_the_rejection_settings(mnist, trained_run, predictor):
    """--no-reject and --reject-threshold change what a rejected part says, never where a
    number is cut: the detector weighs the cuts at its stored threshold either way."""
    model = RunPaths(trained_run).model
    unchecked = Predictor.from_checkpoint(model, "cpu", reject=False)
    strict = Predictor.from_checkpoint(model, "cpu", reject_threshold=-1e9)
    assert unchecked.reject_threshold is None and unchecked.cut_threshold is not None
    pairs = make_number_set(mnist.test_images, mnist.test_labels, "touching", 6, seed=12)
    pictures = [picture for picture, _ in pairs]
    readings = {
        name: read_images(p, pictures)
        for name, p in (("default", predictor), ("unchecked", unchecked), ("strict", strict))
    }
    boxes = {name: [[d.box for d in r.digits] for r in rs] for name, rs in readings.items()}
    assert boxes["default"] == boxes["unchecked"] == boxes["strict"]
    assert all(r.text and "?" not in r.text for r in readings["unchecked"])
    assert all(r.text and set(r.text) == {"?"} for r in readings["strict"])


def test_detector_prefers_one_digit_to_two_touching(mnist, predictor):
    """What `read` weighs each candidate cut by: near 1 for a test digit, low for two touching."""
    from digitlab.synth.nondigits import side_by_side

    digits = to_float(mnist.test_images[:40])[:, 0].numpy()
    singles = predictor.digitness(torch.from_numpy(digits).unsqueeze(1))
    joined = [ink_to_mnist(side_by_side(digits[i], digits[i + 1], -1.0)) for i in range(0, 40, 2)]
    doubles = predictor.digitness(torch.from_numpy(np.stack(joined)).unsqueeze(1))
    assert singles is not None and doubles is not None
    print(f"digitness: single digits {singles.median():.2f}, touching pairs {doubles.median():.2f}")
    assert singles.median() > 0.9 and doubles.median() < 0.2
