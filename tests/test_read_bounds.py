"""Bounded work per picture: the worst pictures the size limits accept are read in at most 2 s of
CPU and 500 MB above the loaded model, and pictures of lines, hatching or noise answer "no
number". (Before the sequence reader, a 4 kB PNG of ruled lines cost `read` 22 s and 1.6 GB.)

Each picture is read in a fresh process that has loaded the packaged reader first, so its
peak memory is the reading's alone."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw

CPU_SECONDS = 2.0
EXTRA_MB = 500

READ_ONE = """
import json, resource, sys, time
from PIL import Image
from digitlab.read import NumberReader, read_image

def peak_mb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

reader = NumberReader.from_checkpoint(None, "cpu")
loaded = peak_mb()
started = time.process_time()
reading = read_image(reader, Image.open(sys.argv[1]))
print(json.dumps({"cpu": time.process_time() - started, "extra_mb": peak_mb() - loaded,
                  "text": reading.text, "reason": reading.reason}))
"""


def ruled_paper() -> Image.Image:
    """The issue's 200×900 page of printed lines with nothing written."""
    page = Image.new("L", (900, 200), 255)
    draw = ImageDraw.Draw(page)
    for y in range(10, 200, 25):
        draw.line([(0, y), (900, y)], fill=120, width=1)
    return page


def hatching() -> Image.Image:
    page = Image.new("L", (2000, 2000), 255)
    draw = ImageDraw.Draw(page)
    for x in range(-2000, 2000, 8):
        draw.line([(x, 0), (x + 2000, 2000)], fill=0, width=2)
    return page


def salt_and_pepper() -> Image.Image:
    rng = np.random.default_rng(0)
    grains = rng.integers(0, 10, size=(2000, 2000), dtype=np.uint8)
    return Image.fromarray(
        np.where(grains == 0, 0, np.where(grains == 1, 255, 200)).astype(np.uint8)
    )


def wide_strip() -> Image.Image:
    strip = np.full((40, 100_000), 255, np.uint8)
    strip[:, ::7] = 0
    return Image.fromarray(strip)


def forty_megapixels() -> Image.Image:
    """The size limit: 40 Mpx of sparse specks."""
    rng = np.random.default_rng(1)
    return Image.fromarray(
        np.where(rng.integers(0, 20, (6000, 6600), np.uint8) == 0, 0, 255).astype(np.uint8)
    )


@pytest.mark.slow  # five fresh processes
@pytest.mark.parametrize(
    "make", [ruled_paper, hatching, salt_and_pepper, wide_strip, forty_megapixels]
)
def test_worst_pictures_cost_little_and_read_no_number(make, tmp_path: Path):
    picture = tmp_path / f"{make.__name__}.png"
    make().save(picture)
    done = subprocess.run(
        [sys.executable, "-c", READ_ONE, str(picture)], capture_output=True, text=True, check=True
    )
    cost = json.loads(done.stdout.strip().splitlines()[-1])
    assert cost["cpu"] <= CPU_SECONDS, cost
    assert cost["extra_mb"] <= EXTRA_MB, cost
    assert cost["text"] is None and cost["reason"], cost
