"""End to end in a real headless Chromium: draw digits on the page with the mouse, read the answer.

The server runs in a subprocess on a loopback port (serve_helpers.running_server) with a lenet
trained for one epoch. Digits from the MNIST test set are traced on the canvas: every row's
run of bright pixels becomes one mouse stroke, drawn with the page's own round pen.

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

# Developers without Chromium skip these; CI sets DIGITLAB_REQUIRE_BROWSER so they must run.
pytestmark = [
    pytest.mark.browser,
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


def trace_digit(page: playwright.Page, digit: np.ndarray) -> None:
    """Draw a 28×28 MNIST digit on the canvas: one mouse stroke per run of bright pixels."""
    box = page.locator("#canvas").bounding_box()
    assert box is not None
    scale = box["width"] / 28
    for row, pixels in enumerate(digit):
        at_y = box["y"] + (row + 0.5) * scale
        for first, last in bright_runs(pixels):
            page.mouse.move(box["x"] + (first + 0.5) * scale, at_y)
            page.mouse.down()
            page.mouse.move(box["x"] + (last + 0.5) * scale, at_y)
            page.mouse.up()


def bright_runs(pixels: np.ndarray) -> list[tuple[int, int]]:
    """(first, last) column of each run of pixels at least TRACE_LEVEL bright in a row."""
    edges = np.diff(np.concatenate([[0], (pixels >= TRACE_LEVEL).astype(int), [0]]))
    return list(zip(np.flatnonzero(edges == 1), np.flatnonzero(edges == -1) - 1, strict=True))


def draw_a_two(page: playwright.Page) -> None:
    """One smooth stroke as a person draws a 2: an arc over the top, a diagonal, a base."""
    box = page.locator("#canvas").bounding_box()
    assert box is not None
    left, top, size = box["x"], box["y"], box["width"]
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


def test_uploaded_photo_is_recognised(page: playwright.Page, mnist: MNIST, tmp_path: Path) -> None:
    from PIL import Image

    index = 3  # a 0
    photo = Image.fromarray(255 - mnist.test_images[index].numpy()).resize((140, 140))
    photo.save(tmp_path / "digit.png")
    page.set_input_files("#upload", tmp_path / "digit.png")
    playwright.expect(page.locator("#prediction")).to_have_text(str(int(mnist.test_labels[index])))
    assert not canvas_is_blank(page)  # the photo is shown where one draws


def test_hand_drawn_two_and_screenshot(page: playwright.Page, tmp_path: Path) -> None:
    draw_a_two(page)
    page.click("#predict")
    playwright.expect(page.locator("#prediction")).to_have_text("2")
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
    trace_digit(page, mnist.test_images[1].numpy())  # a 2: with the toggle on, explained at once
    page.click("#predict")
    expect(page.locator("#why-note")).to_contain_text("made it a 2")
