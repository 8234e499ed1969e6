"""Clean pictures of numbers for the CLI and API tests: MNIST test digits side by side.

Dark ink on white paper, each digit in its own 28-pixel slot with a gap between slots,
scaled up as a scan would be; several numbers on a line, several lines on a page. Reading is
tested hard elsewhere (`digitlab.synth.pictures`, bench/read_numbers.py); these pictures are
plain so that a test of the plumbing fails only for the plumbing.
"""

import numpy as np
from PIL import Image

SIDE = 28
GAP = 10  # pixels between two digits' 28-pixel slots, before scaling
NUMBER_GAP = 3 * SIDE  # between two numbers on a line, before scaling
LINE_GAP = SIDE  # between two lines, before scaling
SCALE = 3


def number_picture(digits: list[np.ndarray]) -> np.ndarray:
    """28×28 white-on-black digits → (H, W) uint8, dark ink on white paper, upscaled."""
    return page_picture([[digits]])


def page_picture(lines: list[list[list[np.ndarray]]]) -> np.ndarray:
    """Lines of numbers of 28×28 white-on-black digits (top line first, each line its numbers
    left to right) → (H, W) uint8, dark ink on white paper, upscaled. A one-number page is
    `number_picture`'s: its digits sit in the slots `slot` gives."""
    rows = [_line(numbers) for numbers in lines]
    width = max(row.shape[1] for row in rows)
    page = np.zeros((len(rows) * (SIDE + LINE_GAP) - LINE_GAP, width), np.uint8)
    for index, row in enumerate(rows):
        top = index * (SIDE + LINE_GAP)
        page[top : top + SIDE, : row.shape[1]] = row
    paper = Image.fromarray(255 - page)
    return np.asarray(paper.resize((paper.width * SCALE, paper.height * SCALE)))


def _line(numbers: list[list[np.ndarray]]) -> np.ndarray:
    parts = [_digits_row(digits) for digits in numbers]
    row = np.zeros((SIDE, sum(p.shape[1] for p in parts) + NUMBER_GAP * (len(parts) - 1)), np.uint8)
    left = 0
    for part in parts:
        row[:, left : left + part.shape[1]] = part
        left += part.shape[1] + NUMBER_GAP
    return row


def _digits_row(digits: list[np.ndarray]) -> np.ndarray:
    row = np.zeros((SIDE, len(digits) * (SIDE + GAP) + GAP), np.uint8)
    for i, digit in enumerate(digits):
        left = GAP + i * (SIDE + GAP)
        row[:, left : left + SIDE] = digit
    return row


def slot(index: int) -> tuple[int, int]:
    """The first and last column (in the upscaled picture) of digit `index`'s slot in a
    `number_picture`."""
    left = (GAP + index * (SIDE + GAP)) * SCALE
    return left, left + SIDE * SCALE - 1


def first_of_each(labels: np.ndarray, wanted: str) -> list[int]:
    """Test-set indices of the first (second, ...) digit of each class in `wanted`, e.g.
    "2026" → the first 2, the first 0, the second 2, the first 6."""
    seen: dict[str, int] = {}
    indices = []
    for char in wanted:
        nth = seen.get(char, 0)
        indices.append(int(np.flatnonzero(labels == int(char))[nth]))
        seen[char] = nth + 1
    return indices
