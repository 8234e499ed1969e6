"""POST /explain through FastAPI's TestClient: the maps, their documented shapes, every error.

The shared `default` lenet (conftest's `trained_run`) is served; digits come from the MNIST
test set, as pixels and as photo-like uploads.
"""

import io
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from fastapi.testclient import TestClient
from PIL import Image

from digitlab.data import MNIST, to_float
from digitlab.explain import explain_view
from digitlab.predict import Predictor
from digitlab.runs import RunPaths
from digitlab.serve import create_app

INDEX = 247  # a 4 that the default lenet reads as a 2: the two maps tell the story


@pytest.fixture(scope="module")
def client(trained_run: Path) -> Iterator[TestClient]:
    with TestClient(create_app(trained_run)) as client:
        yield client


@pytest.fixture(scope="module")
def pixels(mnist: MNIST) -> list[list[int]]:
    return mnist.test_images[INDEX].tolist()


def png_of(pixels: list[list[int]]) -> bytes:
    """A photo-like picture of the digit: dark ink on light paper, 5× larger."""
    image = Image.fromarray(255 - np.array(pixels, dtype=np.uint8)).resize((140, 140))
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    return buffer.getvalue()


def test_pixels_give_both_maps_as_the_library_does(client, pixels, trained_run, mnist) -> None:
    response = client.post("/explain", json={"pixels": pixels})
    assert response.status_code == 200
    answer = response.json()
    assert answer["reason"] is None and answer["method"] == "integrated gradients"
    assert answer["model"] == "lenet" and answer["latency_ms"] > 0
    assert answer["view"] == pixels
    view = to_float(mnist.test_images[INDEX : INDEX + 1])[0]
    expected = explain_view(Predictor.from_checkpoint(RunPaths(trained_run).model, "cpu"), view)
    for name, part in (("answer", expected.answer), ("runner_up", expected.runner_up)):
        served = answer[name]
        assert served["digit"] == part.digit
        assert served["probability"] == pytest.approx(part.probability, rel=1e-5)
        heat = torch.tensor(served["map"])
        assert heat.shape == (28, 28)
        torch.testing.assert_close(heat, part.map, atol=1e-5, rtol=1e-4)
        assert served["total"] == pytest.approx(float(heat.sum()), abs=1e-3)
        assert served["delta"] == pytest.approx(part.delta, abs=1e-4)
    assert answer["digit"] == answer["answer"]["digit"] != answer["runner_up"]["digit"]
    assert answer["probability"] >= answer["runner_up"]["probability"]


def test_an_upload_is_explained_over_the_view_the_model_saw(client, pixels) -> None:
    response = client.post("/explain", files={"file": ("four.png", png_of(pixels), "image/png")})
    assert response.status_code == 200
    answer = response.json()
    view = np.array(answer["view"])
    heat = np.array(answer["answer"]["map"])
    assert view.shape == heat.shape == (28, 28)
    # No ink, no attribution ("0" in the view may be a trace of ink under 0.5/255).
    assert np.abs(heat[view == 0]).sum() < 0.001 * np.abs(heat).sum()


def test_openapi_documents_the_maps_exact_shape(client) -> None:
    schema = client.get("/openapi.json").json()
    operation = schema["paths"]["/explain"]["post"]
    assert set(operation["requestBody"]["content"]) == {"application/json", "multipart/form-data"}
    assert {"200", "413", "415", "422", "501"} <= set(operation["responses"])
    heat = schema["components"]["schemas"]["ClassMap"]["properties"]["map"]
    assert heat["minItems"] == heat["maxItems"] == 28
    assert heat["items"]["minItems"] == heat["items"]["maxItems"] == 28
    assert heat["items"]["items"]["type"] == "number"
    assert "signed" in heat["description"] and "log-probability" in heat["description"]


def test_blank_input_has_no_digit_and_no_maps(client) -> None:
    response = client.post("/explain", json={"pixels": [[0] * 28] * 28})
    assert response.status_code == 200
    answer = response.json()
    assert answer["digit"] is None and "no digit found" in answer["reason"]
    assert answer["answer"] is None and answer["runner_up"] is None


@pytest.mark.parametrize(
    ("kwargs", "status", "message"),
    [
        ({"json": {"pixels": [[0] * 28] * 27}}, 422, "28 rows of 28"),
        ({"json": {"pixels": [[300] * 28] * 28}}, 422, "0 to 255"),
        ({"json": {}}, 422, "exactly one"),
        ({"files": {"file": ("x.png", b"not an image", "image/png")}}, 422, "not an image"),
        ({"content": b"hello", "headers": {"Content-Type": "text/plain"}}, 415, "text/plain"),
    ],
)
def test_bad_requests_fail_as_on_predict(client, kwargs, status, message) -> None:
    explained = client.post("/explain", **kwargs)
    predicted = client.post("/predict", **kwargs)
    assert explained.status_code == predicted.status_code == status
    assert message in explained.json()["detail"]
    assert explained.json() == predicted.json()


def test_an_onnx_server_says_explanations_need_torch(trained_run, pixels) -> None:
    with TestClient(create_app(trained_run, runtime="onnx")) as client:
        response = client.post("/explain", json={"pixels": pixels})
        assert response.status_code == 501
        assert "torch runtime" in response.json()["detail"]
        assert client.post("/predict", json={"pixels": pixels}).status_code == 200
