"""The REST API through FastAPI's TestClient: every route and every error path.

A real lenet trained with the default recipe (conftest's `trained_run`) is served; digits come from
the MNIST test set, sent as pixels, as PNG/JPEG uploads and as base64 JSON.
"""

import asyncio
import base64
import io
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from compare import same
from fastapi.testclient import TestClient
from PIL import Image
from starlette.exceptions import HTTPException

from digitlab.data import MNIST, to_float
from digitlab.errors import CheckpointError, ConfigError
from digitlab.predict import Predictor
from digitlab.pretrained import PACKAGED_MODEL
from digitlab.read import FoundLines, NumberReader, find_lines
from digitlab.serve import create_app
from digitlab.serve.app import MAX_BODY_BYTES
from digitlab.serve.batching import BatchingPredictor, BatchingReader
from digitlab.serve.limits import BodySizeLimit
from digitlab.serve.schemas import MAX_PIXELS_SIDE
from digitlab.synth.clean_numbers import first_of_each, number_picture, page_picture

REQUIRED_IDS = ("canvas", "overlay", "read", "reading", "predict", "clear", "prediction")
FIRST = 300  # the test digits to pick each class's first from


@pytest.fixture(scope="module")
def run_dir(trained_run: Path) -> Path:
    return trained_run


@pytest.fixture(scope="module")
def client(run_dir: Path) -> Iterator[TestClient]:
    with TestClient(create_app(run_dir)) as client:  # `with` runs the lifespan
        yield client


@pytest.fixture(scope="module")
def digits(mnist: MNIST, run_dir: Path) -> list[tuple[np.ndarray, int]]:
    """The first test digit of each class that the model reads right (these tests check the
    API, not the model): (28×28 uint8 white on black, label)."""
    predictor = Predictor.from_checkpoint(run_dir / "model.safetensors", "cpu")
    said = [p.digit for p in predictor.predict_tensor(to_float(mnist.test_images[:FIRST]))]
    labels = mnist.test_labels[:FIRST].tolist()
    firsts = [next(i for i in range(FIRST) if labels[i] == said[i] == d) for d in range(10)]
    return [(mnist.test_images[i].numpy(), labels[i]) for i in firsts]


def as_photo(digit: np.ndarray, image_format: str = "PNG", scale: int = 5) -> bytes:
    """The digit as a user's picture: dark ink on light paper, upscaled."""
    image = Image.fromarray(255 - digit).resize((28 * scale,) * 2, Image.Resampling.BILINEAR)
    buffer = io.BytesIO()
    image.save(buffer, image_format)
    return buffer.getvalue()


def blank_png() -> bytes:
    buffer = io.BytesIO()
    Image.new("L", (200, 200), 255).save(buffer, "PNG")
    return buffer.getvalue()


def assert_is_prediction(answer: dict, label: int) -> None:
    assert answer["digit"] == label
    assert answer["reason"] is None
    assert len(answer["probabilities"]) == 10
    assert sum(answer["probabilities"]) == pytest.approx(1.0, abs=1e-4)
    assert answer["probability"] == max(answer["probabilities"])
    assert [c["digit"] for c in answer["top3"]][0] == label
    assert [c["probability"] for c in answer["top3"]] == sorted(
        (c["probability"] for c in answer["top3"]), reverse=True
    )
    view = np.array(answer["view"])
    assert view.shape == (28, 28) and view.min() >= 0 and view.max() == 255
    assert answer["model"] == "lenet"
    assert answer["latency_ms"] > 0


# --- the routes --------------------------------------------------------------------------


def test_health_names_the_model(client: TestClient, run_dir: Path) -> None:
    response = client.get("/health")
    assert response.status_code == 200
    health = response.json()
    keys = ("status", "model", "checkpoint", "reader", "reader_checkpoint", "missing")
    assert {k: health[k] for k in keys} == {
        "status": "ok",
        "model": "lenet",
        "checkpoint": str(run_dir / "model.safetensors"),
        # A classifier's run carries no reader: the newest reader run's, else the packaged one.
        "reader": "crnn",
        "reader_checkpoint": str(PACKAGED_MODEL),
        "missing": [],
    }
    assert health["temperature"] > 0 and health["reject_threshold"] is not None


@pytest.fixture(scope="module")
def openapi(client: TestClient) -> dict:
    return client.get("/openapi.json").json()


@pytest.mark.parametrize("path", ["/predict", "/read"])
def test_openapi_documents_both_request_bodies(openapi: dict, path: str) -> None:
    operation = openapi["paths"][path]["post"]
    content = operation["requestBody"]["content"]
    assert set(content) == {"application/json", "multipart/form-data"}
    assert content["multipart/form-data"]["schema"]["required"] == ["file"]
    for status in ("200", "413", "415", "422", "500"):
        response_schema = operation["responses"][status]["content"]["application/json"]["schema"]
        assert response_schema["$ref"].startswith("#/components/schemas/"), status
    assert "/health" in openapi["paths"]


def json_body_validator(openapi: dict, path: str):
    from jsonschema import Draft202012Validator

    schema = openapi["paths"][path]["post"]["requestBody"]["content"]["application/json"]
    return Draft202012Validator(schema["schema"])


@pytest.mark.parametrize("path", ["/predict", "/read"])
def test_json_body_schema_is_exactly_one_closed_object(openapi: dict, path: str) -> None:
    alternatives = json_body_validator(openapi, path).schema["oneOf"]
    assert [sorted(a["required"]) for a in alternatives] == [["pixels"], ["image"]]
    assert all(a["additionalProperties"] is False for a in alternatives)
    valid = json_body_validator(openapi, path).is_valid
    mnist = [[0] * 28] * 28
    assert valid({"pixels": mnist}) and valid({"image": "AAAA"})
    assert valid({"image": "data:image/png;base64,iVBORw0KGgo="})
    # The mismatch found by fuzzing: both fields (or neither) fitted the old schema.
    assert not valid({"pixels": mnist, "image": "AAAA"})
    assert not valid({})
    assert not valid({"picture": "AAAA"})
    assert not valid({"image": "not base64!"}) and not valid({"image": "AAA"})
    assert not valid({"pixels": [[0] * 27 + [256]] + [[0] * 28] * 27})
    assert not valid({"pixels": [[0] * 27 + [-1]] + [[0] * 28] * 27})
    assert not valid({"pixels": [[0] * 27 + [True]] + [[0] * 28] * 27})


def test_predict_pixels_are_exactly_28_by_28(openapi: dict) -> None:
    valid = json_body_validator(openapi, "/predict").is_valid
    assert not valid({"pixels": [[0] * 28] * 27})
    assert not valid({"pixels": [[0] * 29] * 28})


def test_read_pixels_are_any_size_within_the_limit(openapi: dict) -> None:
    valid = json_body_validator(openapi, "/read").is_valid
    assert valid({"pixels": [[0]]}) and valid({"pixels": [[0] * 300] * 100})
    assert valid({"pixels": [[255] * MAX_PIXELS_SIDE]})
    assert not valid({"pixels": [[255] * (MAX_PIXELS_SIDE + 1)]})
    assert not valid({"pixels": []}) and not valid({"pixels": [[]]})


def test_docs_page_is_served_without_a_cdn(client: TestClient) -> None:
    response = client.get("/docs")
    assert response.status_code == 200
    assert "'/openapi.json'" in response.text
    assets = re.findall(r'(?:src|href)="([^"]*)"', response.text)
    assert len(assets) == 3  # Swagger UI's script, its stylesheet, the favicon
    for url in assets:
        # Offline means every asset is a path on this server, none on another host.
        assert url.startswith("/docs/assets/"), url
    assert "http" not in response.text and "cdn" not in response.text
    for name, media_type, min_bytes in [
        ("swagger-ui-bundle.js", "text/javascript", 500_000),
        ("swagger-ui.css", "text/css", 50_000),
        ("favicon-32x32.png", "image/png", 100),
    ]:
        assert f'"/docs/assets/{name}"' in response.text
        served = client.get(f"/docs/assets/{name}")
        assert served.status_code == 200
        assert served.headers["content-type"].startswith(media_type)
        assert len(served.content) > min_bytes


def test_docs_oauth2_redirect_is_served(client: TestClient) -> None:
    response = client.get("/docs/oauth2-redirect")
    assert response.status_code == 200
    assert "oauth2" in response.text
    assert "oauth2RedirectUrl: window.location.origin + '/docs/oauth2-redirect'" in (
        client.get("/docs").text
    )


def test_redoc_is_not_served(client: TestClient) -> None:
    # ReDoc would need a CDN; one docs page that works offline is enough.
    assert client.get("/redoc").status_code == 404


def test_uvicorn_uses_httptools_and_uvloop(run_dir: Path) -> None:
    """The serve extra installs both; uvicorn's defaults ("auto"), which `digitlab serve`
    keeps, then pick them over the slower pure-Python h11 parser and asyncio loop."""
    import uvicorn
    import uvloop
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

    config = uvicorn.Config(create_app(run_dir))
    config.load()
    assert config.http_protocol_class is HttpToolsProtocol
    assert config.get_loop_factory() is uvloop.new_event_loop


def test_page_has_the_elements_and_no_external_resources(client: TestClient) -> None:
    page = client.get("/")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    for element in REQUIRED_IDS:
        assert f'id="{element}"' in page.text
    for asset in ("static/app.js", "static/style.css"):
        assert asset in page.text
        served = client.get(f"/{asset}")
        assert served.status_code == 200
        # No CDN: the page must work offline, so nothing is fetched from another host.
        assert "http://" not in served.text and "https://" not in served.text
    assert "http://" not in page.text and "https://" not in page.text


# --- predictions ---------------------------------------------------------------------------


def test_pixels_json_predicts_each_digit(client: TestClient, digits) -> None:
    for pixels, label in digits:
        response = client.post("/predict", json={"pixels": pixels.tolist()})
        assert response.status_code == 200
        answer = response.json()
        assert_is_prediction(answer, label)
        # Pixels already in MNIST format are what the model sees, unchanged.
        assert answer["view"] == pixels.tolist()


def test_png_upload_predicts_each_digit(client: TestClient, digits) -> None:
    for pixels, label in digits:
        upload = {"file": ("digit.png", as_photo(pixels), "image/png")}
        response = client.post("/predict", files=upload)
        assert response.status_code == 200
        assert_is_prediction(response.json(), label)


def test_base64_jpeg_and_data_url_predict(client: TestClient, digits) -> None:
    pixels, label = digits[3]
    encoded = base64.b64encode(as_photo(pixels, "JPEG")).decode()
    for image in (encoded, f"data:image/jpeg;base64,{encoded}"):
        response = client.post("/predict", json={"image": image})
        assert response.status_code == 200
        assert_is_prediction(response.json(), label)


def test_blank_image_gives_no_digit_and_a_reason(client: TestClient) -> None:
    response = client.post("/predict", files={"file": ("blank.png", blank_png(), "image/png")})
    assert response.status_code == 200
    answer = response.json()
    assert answer["digit"] is None
    assert "blank" in answer["reason"]
    assert answer["probabilities"] is None and answer["top3"] is None and answer["view"] is None
    assert answer["model"] == "lenet"


def test_black_pixels_give_no_digit_and_a_reason(client: TestClient) -> None:
    response = client.post("/predict", json={"pixels": [[0] * 28] * 28})
    assert response.status_code == 200
    assert response.json()["digit"] is None
    assert "no digit" in response.json()["reason"]


# --- reading numbers ---------------------------------------------------------------------------

NUMBER = "2026"


@pytest.fixture(scope="module")
def number(mnist: MNIST) -> np.ndarray:
    """NUMBER written with MNIST test digits: dark ink on white paper, (H, W) uint8."""
    indices = first_of_each(mnist.test_labels.numpy(), NUMBER)
    return number_picture([mnist.test_images[i].numpy() for i in indices])


def png_bytes(pixels: np.ndarray, image_format: str = "PNG") -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, image_format)
    return buffer.getvalue()


def assert_reads(answer: dict, text: str, width: int) -> None:
    assert answer["text"] == text
    assert [str(d["digit"]) for d in answer["digits"]] == list(text)
    assert answer["path"] is None and answer["reason"] is None and answer["error"] is None
    lefts = [d["box"][0] for d in answer["digits"]]
    assert lefts == sorted(lefts) and all(x + w <= width for x, _, w, _ in (
        d["box"] for d in answer["digits"]
    ))  # fmt: skip
    (number,) = answer["numbers"]
    assert number["text"] == text and number["digits"] == answer["digits"]
    assert 0 < answer["confidence"] == number["confidence"] <= 1
    assert answer["model"] == "crnn" and answer["latency_ms"] > 0


def test_read_png_upload(client: TestClient, number: np.ndarray) -> None:
    response = client.post("/read", files={"file": ("n.png", png_bytes(number), "image/png")})
    assert response.status_code == 200
    assert_reads(response.json(), NUMBER, number.shape[1])


def test_read_base64_jpeg_and_data_url(client: TestClient, number: np.ndarray) -> None:
    encoded = base64.b64encode(png_bytes(number, "JPEG")).decode()
    for image in (encoded, f"data:image/jpeg;base64,{encoded}"):
        response = client.post("/read", json={"image": image})
        assert response.status_code == 200
        assert_reads(response.json(), NUMBER, number.shape[1])


def test_read_pixels_of_any_size_either_polarity(client: TestClient, number: np.ndarray) -> None:
    for pixels in (number, 255 - number):  # dark on light as scanned, light on dark as MNIST
        response = client.post("/read", json={"pixels": pixels.tolist()})
        assert response.status_code == 200
        assert_reads(response.json(), NUMBER, number.shape[1])


def test_read_several_numbers_on_two_lines(client: TestClient, mnist: MNIST) -> None:
    labels = mnist.test_labels.numpy()
    lines = [[[mnist.test_images[i].numpy() for i in first_of_each(labels, text)]
              for text in line.split()] for line in ("714 97", "2026")]  # fmt: skip
    page = page_picture(lines)
    response = client.post("/read", files={"file": ("page.png", png_bytes(page), "image/png")})
    assert response.status_code == 200
    answer = response.json()
    assert answer["text"] == "714 97\n2026"
    assert [n["text"] for n in answer["numbers"]] == ["714", "97", "2026"]
    assert [d for n in answer["numbers"] for d in n["digits"]] == answer["digits"]
    top, right, bottom = (n["box"] for n in answer["numbers"])
    assert top[0] + top[2] <= right[0] and max(top[1] + top[3], right[1] + right[3]) <= bottom[1]
    assert answer["confidence"] == pytest.approx(
        np.prod([n["confidence"] for n in answer["numbers"]])
    )


def test_read_boxes_match_between_pixels_and_upload(client: TestClient, number) -> None:
    by_pixels = client.post("/read", json={"pixels": number.tolist()}).json()
    by_upload = client.post("/read", files={"file": ("n.png", png_bytes(number))}).json()
    assert [d["box"] for d in by_pixels["digits"]] == [d["box"] for d in by_upload["digits"]]


@pytest.mark.parametrize(
    "body",
    [{"pixels": [[255] * 300] * 100}, {"pixels": [[7]]}, {"image": "BLANK"}],
    ids=["white-pixels", "one-pixel", "blank-png"],
)
def test_read_blank_gives_no_text_and_a_reason(client: TestClient, body: dict) -> None:
    if body.get("image") == "BLANK":
        body = {"image": base64.b64encode(blank_png()).decode()}
    response = client.post("/read", json=body)
    assert response.status_code == 200
    answer = response.json()
    assert answer["text"] is None and answer["digits"] == [] and answer["numbers"] == []
    assert answer["confidence"] is None and answer["reason"].startswith("no number found")


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"pixels": [[0] * 28] * 28, "image": "AAAA"}, 'exactly one of "pixels" or "image"'),
        ({}, 'exactly one of "pixels" or "image"'),
        ({"pixels": [[0, 0], [0]]}, "the rows have different lengths"),
        ({"pixels": [[0, 256]]}, "got values from 0 to 256"),
        ({"pixels": [[-1, 0]]}, "got values from -1 to 0"),
        ({"pixels": [[0, 2**70]]}, "got values from 0 to 1180591620717411303424"),
        ({"pixels": [[0, True]]}, "not a boolean"),
        ({"pixels": [[0, 0.5]]}, "valid integer"),
        ({"pixels": []}, "got shape (0,)"),
        ({"pixels": [[]]}, "got shape (1, 0)"),
        ({"pixels": [[0] * (MAX_PIXELS_SIDE + 1)]}, f"from 1 to {MAX_PIXELS_SIDE}"),
        ({"pixels": [0, 1, 2]}, "pixels must be H rows of W integers"),
        ({"image": "not base64!"}, "not valid base64"),
        ({"image": "data:image/png,abc"}, "not a base64 one"),
        ({"image": base64.b64encode(b"hello").decode()}, "not an image"),
        ({"image": ""}, "the image is empty"),
    ],
    ids=[
        "both", "neither", "ragged", "too-bright", "negative", "huge", "boolean", "fraction",
        "no-rows", "empty-row", "too-wide", "flat", "bad-base64", "data-url", "not-image",
        "empty-image",
    ],
)  # fmt: skip
def test_read_invalid_json_is_422(client: TestClient, body: dict, message: str) -> None:
    response = client.post("/read", json=body)
    assert response.status_code == 422
    assert message in response.json()["detail"]


def test_read_upload_that_is_not_an_image_is_422(client: TestClient) -> None:
    response = client.post("/read", files={"file": ("n.png", b"these are not pixels")})
    assert response.status_code == 422
    assert "not an image" in response.json()["detail"]
    response = client.post("/read", files={"picture": ("n.png", b"x")})
    assert response.status_code == 422
    assert "field 'file'" in response.json()["detail"]


def test_read_unsupported_content_type_is_415(client: TestClient) -> None:
    response = client.post("/read", content=b"7", headers={"content-type": "text/plain"})
    assert response.status_code == 415
    assert "multipart/form-data" in response.json()["detail"]


def test_read_oversize_body_is_413(client: TestClient) -> None:
    body = b"x" * (MAX_BODY_BYTES + 1)
    response = client.post("/read", content=body, headers={"content-type": "application/json"})
    assert response.status_code == 413
    assert "larger than the 16 MB limit" in response.json()["detail"]


# --- 422: content that is invalid ----------------------------------------------------------


@pytest.mark.parametrize(
    ("pixels", "message"),
    [
        ([[0] * 28] * 27, "got shape (27, 28)"),
        ([[0] * 28] * 27 + [[0] * 27], "rows have different lengths"),
        ([[0] * 28] * 27 + [[0] * 27 + [256]], "from 0 to 256"),
        ([[0] * 28] * 27 + [[0] * 27 + [-1]], "from -1 to 0"),
        ([[0] * 28] * 27 + [[0] * 27 + [0.5]], "valid integer"),
        ([[0] * 28] * 27 + [[0] * 27 + ["x"]], "valid integer"),
        ([0] * 784, "pixels must be 28 rows of 28 integers"),
    ],
    ids=["27-rows", "ragged", "too-bright", "negative", "fraction", "string", "flat"],
)
def test_wrong_pixels_are_422(client: TestClient, pixels: list, message: str) -> None:
    response = client.post("/predict", json={"pixels": pixels})
    assert response.status_code == 422
    assert message in response.json()["detail"]


def test_upload_that_is_not_an_image_is_422(client: TestClient) -> None:
    # Decided: the bytes decide, not the part's declared type, so junk in a supported body
    # format is invalid content (422), like malformed JSON; 415 is for the body's own type.
    for declared in ("image/png", "text/plain"):
        upload = {"file": ("notes.png", b"these are not pixels", declared)}
        response = client.post("/predict", files=upload)
        assert response.status_code == 422
        assert "not an image" in response.json()["detail"]


def test_truncated_png_is_422(client: TestClient, digits) -> None:
    png = as_photo(digits[0][0])
    response = client.post("/predict", files={"file": ("cut.png", png[: len(png) // 2])})
    assert response.status_code == 422
    assert "truncated or corrupt" in response.json()["detail"]


def test_empty_upload_is_422(client: TestClient) -> None:
    response = client.post("/predict", files={"file": ("empty.png", b"", "image/png")})
    assert response.status_code == 422
    assert "empty" in response.json()["detail"]


def test_invalid_base64_is_422(client: TestClient) -> None:
    response = client.post("/predict", json={"image": "not base64!"})
    assert response.status_code == 422
    assert "not valid base64" in response.json()["detail"]


def test_base64_of_something_else_is_422(client: TestClient) -> None:
    response = client.post("/predict", json={"image": base64.b64encode(b"hello").decode()})
    assert response.status_code == 422
    assert "not an image" in response.json()["detail"]


def test_malformed_json_is_422(client: TestClient) -> None:
    response = client.post(
        "/predict", content=b'{"pixels": [[0, 1', headers={"content-type": "application/json"}
    )
    assert response.status_code == 422
    assert "not valid JSON" in response.json()["detail"]


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({}, 'exactly one of "pixels" or "image"'),
        ({"pixels": [[0] * 28] * 28, "image": "AAAA"}, 'exactly one of "pixels" or "image"'),
        ({"picture": "AAAA"}, "picture: Extra inputs are not permitted"),
        ([1, 2, 3], "the JSON body: Input should be an object"),
    ],
    ids=["missing", "both", "unknown-field", "not-an-object"],
)
def test_json_without_exactly_one_field_is_422(client: TestClient, body, message: str) -> None:
    response = client.post("/predict", json=body)
    assert response.status_code == 422
    assert message in response.json()["detail"]


def test_multipart_without_the_file_field_is_422(client: TestClient, digits) -> None:
    upload = {"image": ("digit.png", as_photo(digits[0][0]), "image/png")}
    response = client.post("/predict", files=upload)
    assert response.status_code == 422
    assert "field 'file'" in response.json()["detail"]


def test_multipart_with_a_text_field_instead_of_a_file_is_422(client: TestClient) -> None:
    response = client.post("/predict", files={"file": (None, "just text")})
    assert response.status_code == 422
    assert "field 'file'" in response.json()["detail"]


def test_malformed_multipart_is_422(client: TestClient) -> None:
    headers = {"content-type": "multipart/form-data"}  # no boundary
    response = client.post("/predict", content=b"--x\r\n", headers=headers)
    assert response.status_code == 422
    assert "cannot read the multipart body" in response.json()["detail"]


# --- 415: a body type we don't read ----------------------------------------------------------


@pytest.mark.parametrize(
    "content_type", ["text/plain", "image/png", "application/x-www-form-urlencoded", None]
)
def test_unsupported_content_type_is_415(client: TestClient, content_type: str | None) -> None:
    headers = {"content-type": content_type} if content_type else {}
    response = client.post("/predict", content=b"7", headers=headers)
    assert response.status_code == 415
    assert "multipart/form-data" in response.json()["detail"]


# --- 413: too large ----------------------------------------------------------------------------


def test_declared_oversize_body_is_413(client: TestClient) -> None:
    body = b"x" * (MAX_BODY_BYTES + 1)
    response = client.post("/predict", content=body, headers={"content-type": "application/json"})
    assert response.status_code == 413
    assert "larger than the 16 MB limit" in response.json()["detail"]


def test_chunked_oversize_body_is_413(client: TestClient) -> None:
    chunk = b"x" * (1024 * 1024)
    chunks = (chunk for _ in range(MAX_BODY_BYTES // len(chunk) + 1))  # no Content-Length
    response = client.post("/predict", content=chunks, headers={"content-type": "application/json"})
    assert response.status_code == 413
    assert "larger than the 16 MB limit" in response.json()["detail"]


def test_size_limit_stops_reading_at_the_limit() -> None:
    """A chunked body is refused on the chunk that crosses the limit, not after the last."""
    chunks_read = 0
    sent: list[dict] = []

    async def endless_body() -> dict:
        nonlocal chunks_read
        chunks_read += 1
        return {"type": "http.request", "body": b"x" * 100, "more_body": True}

    async def app(scope, receive, send) -> None:
        while (await receive())["more_body"]:
            pass

    async def send(message: dict) -> None:
        sent.append(message)

    limited = BodySizeLimit(app, limit=1000)
    scope = {"type": "http", "method": "POST", "path": "/", "headers": []}
    with pytest.raises(HTTPException) as raised:
        asyncio.run(limited(scope, endless_body, send))
    assert raised.value.status_code == 413
    assert chunks_read == 11  # 1,100 bytes: the first chunk past 1,000


# --- other failures ------------------------------------------------------------------------


def test_wrong_method_is_a_json_405(client: TestClient) -> None:
    response = client.get("/predict")
    assert response.status_code == 405
    assert response.json() == {"detail": "Method Not Allowed"}


def test_a_bug_gives_json_500_and_the_server_keeps_serving(run_dir: Path, digits) -> None:
    with TestClient(create_app(run_dir), raise_server_exceptions=False) as client:
        predictor = client.app.state.predictor  # type: ignore[attr-defined]
        working = predictor.predict_tensor

        def broken(pixels: torch.Tensor) -> None:
            raise RuntimeError("simulated bug")

        predictor.predict_tensor = broken
        pixels, label = digits[0]
        response = client.post("/predict", json={"pixels": pixels.tolist()})
        assert response.status_code == 500
        assert "internal server error" in response.json()["detail"]
        predictor.predict_tensor = working
        assert client.post("/predict", json={"pixels": pixels.tolist()}).json()["digit"] == label


# --- batching --------------------------------------------------------------------------------


def test_concurrent_predictions_share_one_forward_pass(run_dir: Path, digits) -> None:
    predictor = Predictor.from_checkpoint(run_dir / "model.safetensors", "cpu")
    batch_sizes: list[int] = []
    predict_tensor = predictor.predict_tensor

    def counting(pixels: torch.Tensor):
        batch_sizes.append(len(pixels))
        return predict_tensor(pixels)

    predictor.predict_tensor = counting  # type: ignore[method-assign]
    batcher = BatchingPredictor(predictor)
    inputs = [torch.from_numpy(pixels).float().div(255).unsqueeze(0) for pixels, _ in digits]

    async def predict_all():
        together = await asyncio.gather(*(batcher.predict(p) for p in inputs))
        alone = await batcher.predict(inputs[0])
        return together, alone

    together, alone = asyncio.run(predict_all())
    assert batch_sizes == [10, 1]  # ten concurrent requests, one pass; a lone one is not held
    assert [p.digit for p in together] == [label for _, label in digits]
    assert alone.digit == together[0].digit
    # Batched arithmetic may round differently in the last bits, nothing more.
    assert alone.probabilities == pytest.approx(together[0].probabilities, abs=1e-6)


def test_concurrent_readings_share_the_readers_forward_passes(number, mnist) -> None:
    """/read finds each picture's lines off the loop; the reader's forward passes run on the
    event loop, the line images of concurrent requests together, with the library's answers."""
    import threading

    reader = NumberReader.from_checkpoint(PACKAGED_MODEL, "cpu")
    pictures = [Image.fromarray(number), Image.fromarray(255 - number)]
    found = [find_lines(picture) for picture in pictures]
    assert all(isinstance(f, FoundLines) for f in found)
    direct = [reader.read_image(picture).to_dict() for picture in pictures]
    calls: list[tuple[int, int]] = []  # (pictures in the batch, thread)
    read_found = reader.read_found

    def recording(batch):
        calls.append((len(batch), threading.get_ident()))
        return read_found(batch)

    reader.read_found = recording  # type: ignore[method-assign]
    batcher = BatchingReader(reader)

    async def read_both():
        readings = await asyncio.gather(*(batcher.read(f) for f in found))
        return readings, threading.get_ident()

    readings, loop_thread = asyncio.run(read_both())
    assert calls == [(2, loop_thread)]  # one pass for both, on the loop's thread
    assert same([r.to_dict() for r in readings], direct)  # up to the batch's rounding
    assert readings[0].text == NUMBER


def test_a_failing_batch_fails_each_of_its_requests(run_dir: Path) -> None:
    predictor = Predictor.from_checkpoint(run_dir / "model.safetensors", "cpu")

    def broken(pixels: torch.Tensor):
        raise RuntimeError("simulated bug")

    predictor.predict_tensor = broken  # type: ignore[method-assign]
    batcher = BatchingPredictor(predictor)

    async def predict_three():
        calls = (batcher.predict(torch.zeros(1, 28, 28)) for _ in range(3))
        return await asyncio.gather(*calls, return_exceptions=True)

    results = asyncio.run(predict_three())
    assert [str(r) for r in results] == ["simulated bug"] * 3


# --- the app factory and its lifespan ------------------------------------------------------


def test_missing_checkpoint_fails_before_serving(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="does not exist"):
        create_app(tmp_path / "no-such-run")


def damaged_copy(run_dir: Path, to: Path, keep_bytes: int) -> Path:
    """A run folder whose model.safetensors is cut after `keep_bytes` (negative: from the end)."""
    to.mkdir()
    data = (run_dir / "model.safetensors").read_bytes()
    (to / "model.safetensors").write_bytes(data[:keep_bytes])
    return to


@pytest.mark.parametrize("keep_bytes", [-1, 1000, 0], ids=["last-byte", "header", "empty"])
def test_truncated_checkpoint_fails_before_serving(
    run_dir: Path, tmp_path: Path, keep_bytes: int
) -> None:
    damaged = damaged_copy(run_dir, tmp_path / "damaged", keep_bytes)
    with pytest.raises(CheckpointError, match="not a valid digitlab checkpoint"):
        create_app(damaged)


def test_checkpoint_that_does_not_fit_its_model_fails_before_serving(
    run_dir: Path, tmp_path: Path
) -> None:
    from safetensors import safe_open
    from safetensors.torch import load_file, save_file

    source = run_dir / "model.safetensors"
    with safe_open(str(source), framework="pt") as f:
        metadata = f.metadata()
    tensors = load_file(source)
    tensors.pop(next(iter(tensors)))  # a weight missing: the file is fine, the model is not
    save_file(tensors, str(tmp_path / "model.safetensors"), metadata=metadata)
    with pytest.raises(CheckpointError, match="does not fit model 'lenet'"):
        create_app(tmp_path)


def test_unknown_device_fails_before_serving(run_dir: Path) -> None:
    with pytest.raises(ConfigError, match="unknown device 'abacus'"):
        create_app(run_dir, device="abacus")


def test_serve_with_a_damaged_checkpoint_prints_one_line(run_dir: Path, tmp_path: Path) -> None:
    damaged = damaged_copy(run_dir, tmp_path / "damaged", -1)
    command = [sys.executable, "-m", "digitlab", "serve", "--checkpoint", str(damaged)]
    finished = subprocess.run(
        command + ["--port", "0"], capture_output=True, text=True, timeout=120
    )
    assert finished.returncode == 1
    assert "Traceback" not in finished.stderr
    lines = finished.stderr.splitlines()
    assert len(lines) == 1, finished.stderr
    assert lines[0].startswith("digitlab: ")
    assert "not a valid digitlab checkpoint" in lines[0]
    assert str(damaged / "model.safetensors") in lines[0]


def test_models_are_loaded_once_in_the_lifespan(run_dir: Path, monkeypatch) -> None:
    """create_app checks both checkpoints on the CPU; the lifespan loads each once, for
    serving, and no request loads anything."""
    import digitlab.serve.app as app_module

    loads: list[tuple[Path, str]] = []
    real_load = app_module.load_bundle

    def counting_load(path: Path, *args, **kwargs):
        loads.append((Path(path), kwargs.get("device", "auto")))
        return real_load(path, *args, **kwargs)

    monkeypatch.setattr(app_module, "load_bundle", counting_load)
    app = create_app(run_dir)
    checked = [(run_dir / "model.safetensors", "cpu"), (PACKAGED_MODEL, "cpu")]
    assert loads == checked  # checked at creation, on the CPU
    with TestClient(app) as client:
        # torch's thread count is per OS thread (OpenMP): ask the event loop's, which runs
        # every forward pass. One thread serves tiny batches fastest.
        assert client.portal.call(torch.get_num_threads) == 1  # type: ignore[union-attr]
        for _ in range(3):
            client.post("/predict", json={"pixels": [[0] * 28] * 28})
            client.post("/read", json={"pixels": [[0] * 28] * 28})
    served = [(run_dir / "model.safetensors", "auto"), (PACKAGED_MODEL, "auto")]
    assert loads == checked + served


def test_serve_reads_with_the_reader_it_is_given(run_dir, reader_run, untrained_run, number):
    """--reader RUN: that reader; a checkpoint that carries one: its own; a classifier's run
    as --reader, or a reader's run as the checkpoint, fails before serving."""
    app = create_app(run_dir, reader=reader_run)
    assert app.state.reader_checkpoint == str(reader_run / "model.safetensors")
    with TestClient(app) as client:
        answer = client.post("/read", files={"file": ("n.png", png_bytes(number))}).json()
        assert client.get("/health").json()["reader_checkpoint"] == str(
            reader_run / "model.safetensors"
        )
    assert answer["text"] == NUMBER
    assert create_app(PACKAGED_MODEL).state.reader_checkpoint == str(PACKAGED_MODEL)
    with pytest.raises(CheckpointError, match="carries no number reader"):
        create_app(run_dir, reader=untrained_run)
    with pytest.raises(CheckpointError, match="is a number reader"):
        create_app(reader_run)
