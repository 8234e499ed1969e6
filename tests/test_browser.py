"""End to end in a real headless Chromium: write on the page with the mouse, read the answer.

The server runs in a subprocess on a loopback port (serve_helpers.running_server) with the
lenet of conftest's `trained_run`. Digits from the MNIST test set are traced on the canvas:
every row's run of bright pixels becomes one mouse stroke, drawn with the page's own round
pen; one digit at a time for Predict, or several side by side across the wide canvas for Read.

Set DIGITLAB_UPDATE_SCREENSHOT=1 to save the page to docs/screenshot.png for the README;
otherwise the screenshot goes to a temporary folder (the page shows a latency that changes on
every run, so always writing it would leave the work tree dirty).
"""

import math
import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from serve_helpers import running_server

from digitlab.data import MNIST

playwright = pytest.importorskip("playwright.sync_api")

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
VIEWPORT = {"width": 760, "height": 700}
SCREENSHOT = Path(__file__).resolve().parents[1] / "docs" / "screenshot.png"
MAX_SCREENSHOT_BYTES = 150_000  # it goes in the README
# Pixels at least this bright are traced: the cores of MNIST strokes, about 2 px wide, which
# the page's pen (22 px on a 280 px canvas) widens to MNIST's usual stroke width.
TRACE_LEVEL = 180
TRACED_DIGITS = range(10)  # the first ten test digits: 7 2 1 0 4 1 4 9 5 9
# Numbers written with the test digits at these indices: "721", "0414" (which the segmenting
# reader read as "01114", cutting the open-topped 4 in two), "9590" (whose 5 has a detached bar,
# which the interim reader read as "990"), "6901" and "0740".
WRITTEN_NUMBERS = [(0, 1, 2), (3, 4, 5, 6), (7, 8, 9, 10), (11, 12, 13, 14), (25, 26, 27, 28)]
GAP_UNITS = 6  # between two digits' ink, in MNIST pixels (the pen adds about 1 per side)
MARGIN = 0.05  # of the canvas kept free on every side when writing a number

# Developers without Chromium skip these; CI sets DIGITLAB_REQUIRE_BROWSER so they must run.
pytestmark = [
    pytest.mark.browser,
    pytest.mark.slow,
    pytest.mark.skipif(
        not CHROMIUM.exists() and not os.environ.get("DIGITLAB_REQUIRE_BROWSER"),
        reason=f"no Chromium at {CHROMIUM} (apt install chromium)",
    ),
]


@pytest.fixture(scope="module")
def server_url(trained_run: Path) -> Iterator[str]:
    with running_server(trained_run) as url:
        yield url


@pytest.fixture(scope="module")
def browser() -> Iterator[playwright.Browser]:
    with playwright.sync_playwright() as driver:
        browser = driver.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture
def page(browser: playwright.Browser, server_url: str) -> Iterator[playwright.Page]:
    page = browser.new_page(viewport=VIEWPORT)
    page.goto(server_url)
    yield page
    page.close()


def canvas_box(page: playwright.Page) -> dict[str, float]:
    box = page.locator("#canvas").bounding_box()
    assert box is not None
    return box


def trace_digit(page: playwright.Page, digit: np.ndarray) -> None:
    """Draw a 28×28 MNIST digit as tall as the canvas, in its middle."""
    box = canvas_box(page)
    scale = box["height"] / 28
    trace_at(page, digit, box["x"] + (box["width"] - box["height"]) / 2, box["y"], scale)


def write_number(page: playwright.Page, digits: list[np.ndarray]) -> None:
    """Write 28×28 MNIST digits side by side across the canvas, GAP_UNITS apart, as large as
    fits, each cut to the columns holding its ink."""
    box = canvas_box(page)
    inked = [np.flatnonzero((digit >= TRACE_LEVEL).any(axis=0)) for digit in digits]
    widths = [int(columns[-1] - columns[0] + 1) for columns in inked]
    units = sum(widths) + GAP_UNITS * (len(digits) - 1)
    scale = (1 - 2 * MARGIN) * min(box["height"] / 28, box["width"] / units)
    left = box["x"] + (box["width"] - units * scale) / 2
    top = box["y"] + (box["height"] - 28 * scale) / 2
    for digit, columns, width in zip(digits, inked, widths, strict=True):
        trace_at(page, digit, left - columns[0] * scale, top, scale)
        left += (width + GAP_UNITS) * scale


def trace_at(page: playwright.Page, digit: np.ndarray, x: float, y: float, scale: float) -> None:
    """One mouse stroke per run of bright pixels, the digit's top-left corner at (x, y) on the
    page and each of its pixels `scale` page pixels wide."""
    for row, pixels in enumerate(digit):
        at_y = y + (row + 0.5) * scale
        for first, last in bright_runs(pixels):
            page.mouse.move(x + (first + 0.5) * scale, at_y)
            page.mouse.down()
            page.mouse.move(x + (last + 0.5) * scale, at_y)
            page.mouse.up()


def bright_runs(pixels: np.ndarray) -> list[tuple[int, int]]:
    """(first, last) column of each run of pixels at least TRACE_LEVEL bright in a row."""
    edges = np.diff(np.concatenate([[0], (pixels >= TRACE_LEVEL).astype(int), [0]]))
    return list(zip(np.flatnonzero(edges == 1), np.flatnonzero(edges == -1) - 1, strict=True))


def draw_a_two(page: playwright.Page) -> None:
    """One smooth stroke as a person draws a 2: an arc over the top, a diagonal, a base."""
    box = canvas_box(page)
    size = box["height"]  # in a square as tall as the canvas, in its middle
    left, top = box["x"] + (box["width"] - size) / 2, box["y"]
    arc = [
        (0.5 + 0.2 * math.cos(t), 0.35 + 0.17 * math.sin(t))
        for t in np.linspace(math.pi * 1.05, math.pi * 2.2, 24)
    ]
    points = arc + [(0.3, 0.78), (0.74, 0.78)]
    page.mouse.move(left + points[0][0] * size, top + points[0][1] * size)
    page.mouse.down()
    for x, y in points[1:]:
        page.mouse.move(left + x * size, top + y * size, steps=4)
    page.mouse.up()


def canvas_is_blank(page: playwright.Page) -> bool:
    return page.evaluate(
        """() => {
            const canvas = document.getElementById("canvas");
            const { width, height } = canvas;
            const { data } = canvas.getContext("2d").getImageData(0, 0, width, height);
            return data.every((value) => value === 255);
        }"""
    )


def overlay_boxes(page: playwright.Page) -> list[tuple[int, int]]:
    """The first and last column of each run of columns where the overlay has paint: one
    per box drawn (a box with its label is a solid run of columns)."""
    columns = page.evaluate(
        """() => {
            const overlay = document.getElementById("overlay");
            const { width, height } = overlay;
            const { data } = overlay.getContext("2d").getImageData(0, 0, width, height);
            const painted = new Array(width).fill(0);
            for (let i = 3; i < data.length; i += 4) {
                if (data[i] > 0) painted[((i - 3) / 4) % width] = 1;
            }
            return painted;
        }"""
    )
    return bright_runs(np.array(columns) * 255)


def record_boxes(page: playwright.Page) -> None:
    """From now on, keep every box the page strokes on the overlay in `window.drawnBoxes`
    (emptied when the overlay is cleared whole)."""
    page.evaluate(
        """() => {
            const overlay = document.getElementById("overlay");
            const context = overlay.getContext("2d");  // the page's own context: the same object
            window.drawnBoxes = [];
            const strokeRect = context.strokeRect.bind(context);
            context.strokeRect = (x, y, w, h) => {
                window.drawnBoxes.push([x, y, w, h]);
                strokeRect(x, y, w, h);
            };
            const clearRect = context.clearRect.bind(context);
            context.clearRect = (x, y, w, h) => {
                if (w >= overlay.width && h >= overlay.height) window.drawnBoxes = [];
                clearRect(x, y, w, h);
            };
        }"""
    )


def drawn_boxes(page: playwright.Page) -> list[tuple[float, float, float, float]]:
    return [tuple(box) for box in page.evaluate("() => window.drawnBoxes")]


def view_brightness(page: playwright.Page) -> int:
    """The sum of the 28×28 view's grey levels, as shown on the page."""
    return page.evaluate(
        """() => {
            const view = document.getElementById("view").getContext("2d");
            const { data } = view.getImageData(0, 0, 28, 28);
            let sum = 0;
            for (let i = 0; i < data.length; i += 4) sum += data[i];
            return sum;
        }"""
    )


def test_traced_mnist_digits_are_recognised(page: playwright.Page, mnist: MNIST) -> None:
    expect = playwright.expect
    for index in TRACED_DIGITS:
        label = int(mnist.test_labels[index])
        trace_digit(page, mnist.test_images[index].numpy())
        page.click("#predict")
        expect(page.locator("#prediction")).to_have_text(str(label))
        assert view_brightness(page) > 0  # the 28×28 view shows what the model saw
        page.click("#clear")
        expect(page.locator("#prediction")).to_have_text("")
        assert canvas_is_blank(page)


def test_clear_empties_the_answer(page: playwright.Page, mnist: MNIST) -> None:
    trace_digit(page, mnist.test_images[0].numpy())
    page.click("#predict")
    playwright.expect(page.locator("#prediction")).to_have_text(str(int(mnist.test_labels[0])))
    page.click("#clear")
    playwright.expect(page.locator("#prediction")).to_have_text("")
    assert canvas_is_blank(page)
    assert view_brightness(page) == 0
    assert page.locator("#bars .best").count() == 0


def test_blank_canvas_says_there_is_no_digit(page: playwright.Page) -> None:
    page.click("#predict")
    playwright.expect(page.locator("#status")).to_contain_text("No digit found")
    playwright.expect(page.locator("#prediction")).to_have_text("")
    page.click("#read")
    playwright.expect(page.locator("#read-status")).to_contain_text("No number found")
    playwright.expect(page.locator("#read-status")).to_have_class("empty")
    playwright.expect(page.locator("#reading")).to_have_text("")


def test_uploaded_photo_is_recognised(page: playwright.Page, mnist: MNIST, tmp_path: Path) -> None:
    from PIL import Image

    index = 3  # a 0
    photo = Image.fromarray(255 - mnist.test_images[index].numpy()).resize((140, 140))
    photo.save(tmp_path / "digit.png")
    page.set_input_files("#upload", tmp_path / "digit.png")
    label = str(int(mnist.test_labels[index]))
    playwright.expect(page.locator("#prediction")).to_have_text(label)
    playwright.expect(page.locator("#reading")).to_have_text(label)  # read as well
    assert not canvas_is_blank(page)  # the photo is shown where one draws
    # Its box, in canvas pixels: the 140 px photo is shown 280 px tall in the middle of 840.
    ((first, last),) = overlay_boxes(page)
    assert first >= 280 and last <= 560


def test_uploaded_page_shows_each_line_and_boxes_each_digit(
    page: playwright.Page, mnist: MNIST, tmp_path: Path
) -> None:
    from PIL import Image

    from digitlab.synth.clean_numbers import first_of_each, page_picture

    labels = mnist.test_labels.numpy()
    lines = [[[mnist.test_images[i].numpy() for i in first_of_each(labels, text)]
              for text in line.split()] for line in ("714 97", "2026")]  # fmt: skip
    Image.fromarray(page_picture(lines)).save(tmp_path / "page.png")
    record_boxes(page)
    page.set_input_files("#upload", tmp_path / "page.png")
    playwright.expect(page.locator("#read-status")).to_contain_text("sure of all 3 numbers")
    # Each line of writing is a line of text on the page.
    assert page.locator("#reading").inner_text() == "714 97\n2026"
    boxes = drawn_boxes(page)
    assert len(boxes) == 9  # every digit boxed
    tops = sorted({round(y) for _, y, _, _ in boxes})
    assert tops[-1] - tops[0] > 40  # on two lines


def test_hand_drawn_two_is_predicted(page: playwright.Page) -> None:
    draw_a_two(page)
    page.click("#predict")
    playwright.expect(page.locator("#prediction")).to_have_text("2")


def test_written_numbers_are_read_and_screenshot(
    page: playwright.Page, mnist: MNIST, tmp_path: Path
) -> None:
    expect = playwright.expect
    record_boxes(page)
    for indices in WRITTEN_NUMBERS:
        text = "".join(str(int(mnist.test_labels[i])) for i in indices)
        write_number(page, [mnist.test_images[i].numpy() for i in indices])
        page.click("#read")
        expect(page.locator("#reading")).to_have_text(text)
        expect(page.locator("#read-status")).to_contain_text(f"sure of all {len(text)} digits")
        boxes = sorted(drawn_boxes(page))
        assert len(boxes) == len(text)  # each digit boxed, left to right
        # Each box on its own digit: a box's middle lies beyond its left neighbour (neighbours
        # may overlap by a few pixels, the boxes of a slanted or tilted hand).
        pairs = zip(boxes, boxes[1:], strict=False)
        assert all(x + w < next_x + next_w / 2 for (x, _, w, _), (next_x, _, next_w, _) in pairs)
        assert overlay_boxes(page)  # and painted (neighbouring boxes may touch: one run)
        if indices != WRITTEN_NUMBERS[-1]:  # the last stays for the screenshot
            page.click("#clear")
            expect(page.locator("#reading")).to_have_text("")
            assert overlay_boxes(page) == []
    update = os.environ.get("DIGITLAB_UPDATE_SCREENSHOT") == "1"
    path = SCREENSHOT if update else tmp_path / "screenshot.png"
    path.parent.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=path, full_page=True)
    assert 0 < path.stat().st_size < MAX_SCREENSHOT_BYTES


def test_api_docs_render_offline(browser: playwright.Browser, server_url: str) -> None:
    """Swagger UI at /docs draws the API from local files only: any other host is refused."""
    page = browser.new_page(viewport=VIEWPORT)
    elsewhere: list[str] = []

    def only_this_server(route: playwright.Route) -> None:
        if route.request.url.startswith(f"{server_url}/"):
            route.continue_()
        else:
            elsewhere.append(route.request.url)
            route.abort()

    page.route("**/*", only_this_server)
    try:
        page.goto(f"{server_url}/docs")
        predict = page.locator(".opblock-post", has_text="/predict")
        playwright.expect(predict).to_contain_text("Recognise one handwritten digit")
        playwright.expect(page.locator(".opblock-get", has_text="/health")).to_be_visible()
        read = page.locator(".opblock-post", has_text="/read")
        playwright.expect(read).to_contain_text("Read the numbers in an image")
        # Opening the operation shows both request bodies from the OpenAPI 3.1 schema.
        predict.locator(".opblock-summary").click()
        playwright.expect(predict.locator(".body-param-content-type select")).to_contain_text(
            "multipart/form-data"
        )
        assert elsewhere == []
    finally:
        page.close()


def view_pixels(page: playwright.Page) -> list[int]:
    """The 28×28 view's RGBA bytes, as shown on the page."""
    return page.evaluate(
        """() => Array.from(
            document.getElementById("view").getContext("2d").getImageData(0, 0, 28, 28).data
        )"""
    )


def test_why_toggle_overlays_the_heat_map_on_the_view(page: playwright.Page, mnist: MNIST) -> None:
    expect = playwright.expect
    trace_digit(page, mnist.test_images[0].numpy())  # a 7
    page.click("#predict")
    expect(page.locator("#prediction")).to_have_text("7")
    plain = np.array(view_pixels(page)).reshape(28, 28, 4)
    assert (plain[..., 0] == plain[..., 1]).all()  # grey only
    expect(page.locator("#why-note")).to_be_hidden()

    page.check("#why")
    expect(page.locator("#why-note")).to_contain_text("made it a 7")
    tinted = np.array(view_pixels(page)).reshape(28, 28, 4)
    coloured = (tinted[..., 0] != tinted[..., 2]) | (tinted[..., 1] != tinted[..., 2])
    ink = plain[..., 0] > 0
    assert coloured.sum() > 0.3 * ink.sum()  # much of the ink is tinted red or blue
    assert not (coloured & ~ink).any()  # and nothing off the ink: no ink, no attribution

    page.uncheck("#why")
    expect(page.locator("#why-note")).to_be_hidden()
    assert view_pixels(page) == plain.flatten().tolist()  # the plain view again
    page.click("#clear")
    page.check("#why")
    expect(page.locator("#why-note")).to_be_hidden()  # nothing to explain on an empty page
    page.locator("#canvas").scroll_into_view_if_needed()  # the toggle is below it, off screen
    trace_digit(page, mnist.test_images[1].numpy())  # a 2: with the toggle on, explained at once
    page.click("#predict")
    expect(page.locator("#why-note")).to_contain_text("made it a 2")
