"""Uploads cleaned in worker processes (digitlab.serve.cleaning): the answers of the threads,
for /predict and /read, bad images as 422, a dead worker replaced, the workers stopped with the
server; and threads where the platform cannot run the workers."""

import io
import os
import signal
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from digitlab.cli import main
from digitlab.data import MNIST
from digitlab.pretrained import PACKAGED_MODEL
from digitlab.serve import cleaning, create_app
from digitlab.serve.cleaning import (
    MAX_DEFAULT_WORKERS,
    SEND_INLINE_BYTES,
    ProcessCleaner,
    ThreadCleaner,
    default_workers,
    why_no_workers,
)
from digitlab.synth.clean_numbers import first_of_each, page_picture

UPLOADS = 12  # MNIST test digits sent by both kinds of server


def as_photo(digit: np.ndarray) -> bytes:
    """Dark ink on light paper, 140×140, as the load benchmark sends."""
    image = Image.fromarray(255 - digit).resize((140, 140), Image.Resampling.BILINEAR)
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    return buffer.getvalue()


def post(client: TestClient, route: str, data: bytes) -> dict:
    """A PNG uploaded to `route`: the answer, less its timing."""
    response = client.post(route, files={"file": ("picture.png", data, "image/png")})
    assert response.status_code == 200, response.text
    answer = response.json()
    del answer["latency_ms"]
    return answer


def upload(client: TestClient, data: bytes) -> dict:
    return post(client, "/predict", data)


@pytest.fixture(scope="module")
def photos(mnist: MNIST) -> list[bytes]:
    return [as_photo(digit) for digit in mnist.test_images[:UPLOADS].numpy()]


@pytest.fixture(scope="module")
def workers_client(trained_run: Path) -> Iterator[TestClient]:
    with TestClient(create_app(trained_run, workers=2), raise_server_exceptions=False) as client:
        yield client


def test_workers_answer_exactly_as_threads_do(workers_client, trained_run, photos, mnist):
    with TestClient(create_app(trained_run)) as threads:
        expected = [upload(threads, photo) for photo in photos]
    answers = [upload(workers_client, photo) for photo in photos]
    assert answers == expected
    labels = mnist.test_labels[:UPLOADS].tolist()
    assert sum(a["digit"] == label for a, label in zip(answers, labels, strict=True)) >= 10


def png(pixels: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, "PNG")
    return buffer.getvalue()


@pytest.fixture(scope="module")
def page(mnist: MNIST) -> bytes:
    """Two lines of numbers written with MNIST test digits, as a PNG."""
    labels = mnist.test_labels.numpy()
    lines = [[[mnist.test_images[i].numpy() for i in first_of_each(labels, text)]
              for text in line.split()] for line in ("714 97", "2026")]  # fmt: skip
    return png(page_picture(lines))


def read(client: TestClient, data: bytes) -> dict:
    return post(client, "/read", data)


def test_workers_find_the_lines_the_threads_find(workers_client, trained_run, page):
    """/read's lines are found in the workers; the reading is the one the threads give."""
    assert isinstance(workers_client.app.state.cleaner, ProcessCleaner)  # type: ignore[attr-defined]
    with TestClient(create_app(trained_run)) as threads:
        expected = read(threads, page)
    assert read(workers_client, page) == expected
    assert expected["text"] == "714 97\n2026"
    response = workers_client.post("/read", files={"file": ("x.png", b"no image", "image/png")})
    assert response.status_code == 422 and "not an image" in response.json()["detail"]


def test_a_large_upload_reaches_a_worker_whole(workers_client, trained_run, mnist):
    """Uploads larger than a pipe holds are written to the worker from a thread."""
    rng = np.random.default_rng(0)
    digit = np.kron(255 - mnist.test_images[0].numpy(), np.ones((25, 25), np.uint8))  # 700×700
    noisy = np.clip(digit + rng.normal(0, 12, digit.shape), 0, 255).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(noisy).save(buffer, "PNG")
    data = buffer.getvalue()
    assert len(data) > SEND_INLINE_BYTES
    with TestClient(create_app(trained_run)) as threads:
        expected = upload(threads, data)
    assert upload(workers_client, data) == expected
    assert expected["digit"] == int(mnist.test_labels[0])


def test_an_upload_that_is_no_image_is_422_from_a_worker(workers_client):
    response = workers_client.post("/predict", files={"file": ("x.png", b"not an image", "")})
    assert response.status_code == 422
    assert "not an image file" in response.json()["detail"]


def test_a_dead_worker_is_replaced_and_the_server_keeps_serving(trained_run, photos):
    with TestClient(create_app(trained_run, workers=1), raise_server_exceptions=False) as client:
        expected = upload(client, photos[0])
        cleaner = client.app.state.cleaner  # type: ignore[attr-defined]
        dead = cleaner._processes[0].process
        os.kill(dead.pid, signal.SIGKILL)
        dead.join(timeout=30)
        # The request that meets the dead worker may fail (a JSON 500) if the server has not
        # noticed the death yet; the one after it is cleaned by a new worker.
        first = client.post("/predict", files={"file": ("digit.png", photos[0], "image/png")})
        assert first.status_code in (200, 500)
        if first.status_code == 500:
            assert "internal server error" in first.json()["detail"]
        assert upload(client, photos[0]) == expected
        replacement = cleaner._processes[0].process
        assert replacement.pid != dead.pid and replacement.is_alive()
    assert not replacement.is_alive()  # stopped with the server


@pytest.mark.parametrize(("cores", "workers"), [(1, 0), (2, 2), (3, 3), (64, MAX_DEFAULT_WORKERS)])
def test_default_workers_follow_the_cores(monkeypatch, cores, workers):
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(cores)), raising=False)
    assert default_workers() == workers


def test_serve_workers_cannot_be_negative(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["serve", "--workers", "-1"])
    assert exit_info.value.code == 2
    assert "at least 0" in capsys.readouterr().err


@pytest.fixture
def no_fork_server(monkeypatch) -> None:
    """This machine as Windows is to serve: no fork server."""
    monkeypatch.setattr(cleaning, "has_fork_server", lambda: False)


def test_without_a_fork_server_serve_cleans_in_threads(no_fork_server, mnist, page, caplog):
    assert default_workers() == 0  # `digitlab serve` picks none there
    with TestClient(create_app(PACKAGED_MODEL, workers=2)) as client:
        assert isinstance(client.app.state.cleaner, ThreadCleaner)  # type: ignore[attr-defined]
        answer = upload(client, as_photo(mnist.test_images[0].numpy()))
        assert answer["digit"] == int(mnist.test_labels[0])
        assert read(client, page)["text"] == "714 97\n2026"
    assert "cleaning uploads in threads, not 2 worker processes" in caplog.text
    assert "no fork server" in caplog.text


class _LoopWithoutReaders:
    """An event loop that cannot watch pipes, as Windows' proactor loop."""

    def add_reader(self, fd: int, callback: object) -> None:
        raise NotImplementedError

    def remove_reader(self, fd: int) -> bool:
        raise NotImplementedError


def test_an_event_loop_that_cannot_watch_pipes_means_threads(monkeypatch):
    import asyncio

    monkeypatch.setattr(cleaning, "has_fork_server", lambda: True)
    loop = asyncio.new_event_loop()
    try:
        assert why_no_workers(loop) is None
    finally:
        loop.close()
    why = why_no_workers(_LoopWithoutReaders())  # type: ignore[arg-type]
    assert why == "the event loop (_LoopWithoutReaders) cannot watch pipes"


def test_under_uvloop_large_answers_and_uploads_cross_whole(page, mnist):
    """`digitlab serve` runs on uvloop, which makes a watched pipe non-blocking: a page's line
    images (an answer larger than the pipe's buffer) and a large upload must still cross whole."""
    uvloop = pytest.importorskip("uvloop")
    digit = np.kron(255 - mnist.test_images[0].numpy(), np.ones((25, 25), np.uint8))  # 700×700
    noisy = np.clip(digit + np.random.default_rng(0).normal(0, 12, digit.shape), 0, 255)
    large = png(noisy.astype(np.uint8))
    assert len(large) > 4 * SEND_INLINE_BYTES

    async def clean() -> tuple:
        cleaner = ProcessCleaner(1)
        await cleaner.start()
        try:
            return await cleaner.find_lines(page), await cleaner.preprocess(large)
        finally:
            cleaner.close()

    found, digit_view = uvloop.run(clean())
    assert [number.line for number in found.numbers] == [0, 0, 1]
    assert digit_view.pixels is not None and digit_view.pixels.shape == (1, 28, 28)
