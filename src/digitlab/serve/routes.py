"""The routes: each reads its input, calls the library, and shapes the answer."""

import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from fastapi import APIRouter, Request
from fastapi.responses import FileResponse, Response

from digitlab.predict import Predictor
from digitlab.preprocess import Preprocessed
from digitlab.serve.batching import BatchingPredictor
from digitlab.serve.inputs import JSON, MULTIPART, UPLOAD_FIELD, read_digit
from digitlab.serve.schemas import Candidate, ErrorBody, Health, PredictJSON, PredictResponse

STATIC_DIR = Path(__file__).parent / "static"

router = APIRouter()

# /predict reads its body itself (JSON or multipart), so its OpenAPI request body is declared
# here rather than inferred from parameters.
_PREDICT_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            JSON: {"schema": PredictJSON.model_json_schema()},
            MULTIPART: {
                "schema": {
                    "type": "object",
                    "properties": {UPLOAD_FIELD: {"type": "string", "format": "binary"}},
                    "required": [UPLOAD_FIELD],
                }
            },
        },
    }
}
_PREDICT_ERRORS: dict[int | str, dict[str, Any]] = {
    413: {"model": ErrorBody, "description": "the body is larger than the server's limit"},
    415: {"model": ErrorBody, "description": "neither JSON nor a multipart upload"},
    422: {"model": ErrorBody, "description": "invalid JSON, fields, pixels or image"},
}


@router.get("/", include_in_schema=False)
async def page() -> FileResponse:
    return FileResponse(STATIC_DIR / "index.html")


@router.get("/health")
async def health(request: Request) -> Health:
    predictor: Predictor = request.app.state.predictor
    return Health(
        status="ok",
        model=predictor.model_name,
        checkpoint=request.app.state.checkpoint,
        temperature=predictor.temperature,
        reject_threshold=predictor.reject_threshold,
        missing=predictor.missing,
    )


@router.post(
    "/predict",
    response_model=PredictResponse,
    responses=_PREDICT_ERRORS,
    openapi_extra=_PREDICT_BODY,
    summary="Recognise one handwritten digit",
)
async def predict(request: Request) -> Response:
    """Send 28×28 MNIST pixels or an image (JSON base64 or a multipart upload)."""
    started = time.perf_counter()
    digit = await read_digit(request)
    answer = await _answer(request.app.state.batcher, digit, started)
    # Serialised by pydantic directly: skips FastAPI re-validating the 784-integer view.
    return Response(answer.model_dump_json(), media_type=JSON)


async def _answer(
    batcher: BatchingPredictor, digit: Preprocessed, started: float
) -> PredictResponse:
    model = batcher.predictor.model_name
    if digit.pixels is None:
        return PredictResponse(
            digit=None, reason=digit.reason, model=model, latency_ms=_ms(started)
        )
    prediction = await batcher.predict(digit.pixels)
    return PredictResponse(
        digit=prediction.digit,
        probability=prediction.probability if prediction.digit is not None else None,
        reason=prediction.reason,
        probabilities=prediction.probabilities,
        top3=[Candidate(digit=d, probability=p) for d, p in prediction.top3],
        view=_view(digit.pixels),
        model=model,
        latency_ms=_ms(started),
    )


def _view(pixels: torch.Tensor) -> list[list[int]]:
    """(1, 28, 28) floats in [0, 1] → 28 rows of 0-255 integers (numpy: cheaper than torch)."""
    rows: list[list[int]] = np.rint(pixels[0].numpy() * 255).astype(np.uint8).tolist()
    return rows


def _ms(started: float) -> float:
    return round((time.perf_counter() - started) * 1000, 3)
