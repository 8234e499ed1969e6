"""`digitlab.lines`: a picture's ink → its lines and the numbers on each, as line images."""

import time

import numpy as np
import pytest

from digitlab.lines import LAYOUT, LINE_HEIGHT, find_numbers
from digitlab.synth import clutter
from digitlab.synth.numbers import write_digits


@pytest.fixture(scope="module")
def digits(mnist):
    """A few MNIST test digits, 0-1 floats."""
    return [mnist.test_images[i].numpy() for i in range(40)]


def number(digits, start, count, gap=0.4):
    rng = np.random.default_rng(start)
    return write_digits(digits[start : start + count], [gap] * (count - 1), rng)


def as_ink(coverage, scale=3):
    """MNIST-scale coverage enlarged as a scan would be, with a margin of paper."""
    import cv2

    big = cv2.resize(coverage, None, fx=scale, fy=scale, interpolation=cv2.INTER_LINEAR)
    return np.pad(np.clip(big, 0, 1), 20).astype(np.float32)


def test_one_number_is_one_line_image_of_the_readers_height(digits):
    found = find_numbers(as_ink(number(digits, 0, 5)))
    assert len(found) == 1
    assert found[0].pixels.shape[0] == LINE_HEIGHT
    assert found[0].line == 0
    assert found[0].pixels.max() > 0.9  # strokes stay strokes


def test_two_lines_are_read_top_first(digits):
    sheet = clutter.stacked([number(digits, 0, 4), number(digits, 4, 3)], [12], [0, 15])
    found = find_numbers(as_ink(sheet))
    assert [n.line for n in found] == [0, 1]
    top, bottom = (n.box(0, n.pixels.shape[1] - 1) for n in found)
    assert top[1] + top[3] <= bottom[1]  # the first line's box lies above the second's


def test_numbers_far_apart_on_one_line_are_two_numbers(digits):
    line = clutter.side_by_side([number(digits, 0, 3), number(digits, 3, 3)], [60])
    found = find_numbers(as_ink(line))
    assert [n.line for n in found] == [0, 0]
    assert found[0].box(0, 1)[0] < found[1].box(0, 1)[0]


def test_spaced_digits_stay_one_number(digits):
    assert len(find_numbers(as_ink(number(digits, 0, 6, gap=0.8)))) == 1


def test_a_tilted_line_is_levelled(digits):
    line = number(digits, 0, 8, gap=0.2)
    level = find_numbers(as_ink(line))[0]
    tilted = find_numbers(as_ink(clutter.tilted(line, 5.0)))
    assert len(tilted) == 1
    # Levelled, the digits fill the line image as much as the level line's do.
    fill = [float((n.pixels > 0.5).any(axis=1).mean()) for n in (level, tilted[0])]
    assert fill[1] == pytest.approx(fill[0], abs=0.15)


def test_ruled_paper_alone_has_no_numbers():
    sheet = np.zeros((200, 900), np.float32)
    sheet[20::30, :] = 1.0
    assert find_numbers(sheet) == []


def test_a_ruled_line_under_a_number_stays_in_its_crop_but_splits_nothing(digits):
    sheet = clutter.with_printed_lines(number(digits, 0, 4), np.random.default_rng(3))
    assert len(find_numbers(as_ink(sheet))) == 1


def test_boxes_map_back_to_the_original_picture(digits):
    ink = as_ink(number(digits, 0, 3))
    found = find_numbers(ink)[0]
    x, y, w, h = found.box(0, found.pixels.shape[1] - 1)
    rows, cols = np.nonzero(ink >= 0.35)
    assert x <= cols.min() + 1 and x + w >= cols.max() - 1
    assert y <= rows.min() + 1 and y + h >= rows.max() - 1


@pytest.mark.parametrize("worst", ["hatching", "noise", "strip"])
def test_cost_is_bounded_for_worst_cases(worst):
    rng = np.random.default_rng(0)
    if worst == "hatching":
        ink = np.zeros((1024, 1024), np.float32)
        for k in range(-1024, 1024, 6):
            idx = np.arange(1024)
            cols = idx + k
            keep = (cols >= 0) & (cols < 1024)
            ink[idx[keep], cols[keep]] = 1.0
    elif worst == "noise":
        ink = (rng.uniform(size=(1024, 1024)) < 0.2).astype(np.float32)
    else:  # a strip as find_ink leaves a 100,000-px-wide picture: 1024 wide, 4 high
        ink = (rng.uniform(size=(4, 1024)) < 0.5).astype(np.float32)
    started = time.process_time()
    found = find_numbers(ink)
    assert time.process_time() - started < 2.0
    assert len(found) <= LAYOUT.max_numbers
    assert all(n.pixels.shape[1] <= LAYOUT.max_line_width for n in found)
