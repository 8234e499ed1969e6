"""Clean pictures of numbers for the CLI and API tests: MNIST test digits side by side.

Dark ink on white paper, each digit in its own 28-pixel slot with a gap between slots,
scaled up as a scan would be. The reading itself is tested hard elsewhere (number_images);
these pictures are plain so that a test of the plumbing fails only for the plumbing.
"""

import numpy as np
from PIL import Image

SIDE = 28
GAP = 10  # pixels between two digits' 28-pixel slots, before scaling
SCALE = 3


def number_picture(digits: list[np.ndarray]) -> np.ndarray:
    """28×28 white-on-black digits → (H, W) uint8, dark ink on white paper, upscaled."""
    row = np.zeros((SIDE, len(digits) * (SIDE + GAP) + GAP), np.uint8)
    for i, digit in enumerate(digits):
        left = GAP + i * (SIDE + GAP)
        row[:, left : left + SIDE] = digit
    paper = Image.fromarray(255 - row)
    return np.asarray(paper.resize((paper.width * SCALE, paper.height * SCALE)))


def slot(index: int) -> tuple[int, int]:
    """The first and last column (in the upscaled picture) of digit `index`'s slot."""
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
