"""The routes: each reads its input, calls the library, and shapes the answer."""

import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from fastapi import APIRouter, Request
from fastapi.responses import FileResponse, Response
from pydantic import BaseModel
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException

from digitlab.errors import ConfigError
from digitlab.predict import Predictor
from digitlab.preprocess import Preprocessed
from digitlab.read import NumberReader
from digitlab.serve.batching import BatchingPredictor, BatchingReader
from digitlab.serve.inputs import JSON, MULTIPART, UPLOAD_FIELD, read_digit, read_lines
from digitlab.serve.schemas import (
    Candidate,
    ClassMap,
    DigitPixelsBody,
    ErrorBody,
    ExplainResponse,
    Health,
    ImageBody,
    PixelsBody,
    PredictResponse,
    ReadResponse,
)

STATIC_DIR = Path(__file__).parent / "static"
NOT_IMPLEMENTED = 501
METHOD = "integrated gradients"  # how /explain makes its maps (digitlab.explain)

router = APIRouter()


def _request_body(pixels: type[BaseModel]) -> dict[str, Any]:
    """The OpenAPI request body of a route that reads its body itself (JSON or multipart,
    which FastAPI can't infer from parameters): JSON with exactly one of `pixels` (in the
    route's own shape) or `image`, or a multipart upload."""
    upload = {
        "type": "string",
        "format": "binary",
        "description": "the image file (any image Pillow reads)",
    }
    return {
        "requestBody": {
            "required": True,
            "content": {
                JSON: {
                    "schema": {
                        # Closed objects with one required field each: never both, never neither.
                        "oneOf": [pixels.model_json_schema(), ImageBody.model_json_schema()]
                    }
                },
                MULTIPART: {
                    "schema": {
                        "type": "object",
                        "properties": {UPLOAD_FIELD: upload},
                        "required": [UPLOAD_FIELD],
                    }
                },
            },
        }
    }


_ERRORS: dict[int | str, dict[str, Any]] = {
    413: {"model": ErrorBody, "description": "the body is larger than the server's limit"},
    415: {"model": ErrorBody, "description": "neither JSON nor a multipart upload"},
    422: {"model": ErrorBody, "description": "invalid JSON, fields, pixels or image"},
    500: {"model": ErrorBody, "description": "a bug in the server (it keeps serving)"},
}
_EXPLAIN_ERRORS: dict[int | str, dict[str, Any]] = _ERRORS | {
    501: {
        "model": ErrorBody,
        "description": "this server cannot explain: it runs ONNX Runtime, or lacks captum",
    },
}


@router.get("/", include_in_schema=False)
async def page() -> FileResponse:
    return FileResponse(STATIC_DIR / "index.html")


@router.get("/health")
async def health(request: Request) -> Health:
    predictor: Predictor = request.app.state.predictor
    reader: NumberReader = request.app.state.reader
    return Health(
        status="ok",
        model=predictor.model_name,
        checkpoint=request.app.state.checkpoint,
        reader=reader.model_name,
        reader_checkpoint=request.app.state.reader_checkpoint,
        temperature=predictor.temperature,
        reject_threshold=predictor.reject_threshold,
        missing=predictor.missing,
    )


@router.post(
    "/predict",
    response_model=PredictResponse,
    responses=_ERRORS,
    openapi_extra=_request_body(DigitPixelsBody),
    summary="Recognise one handwritten digit",
)
async def predict(request: Request) -> Response:
    """Send 28×28 MNIST pixels or an image (JSON base64 or a multipart upload)."""
    started = time.perf_counter()
    digit = await read_digit(request)
    answer = await _answer(request.app.state.batcher, digit, started)
    # Serialised by pydantic directly: skips FastAPI re-validating the 784-integer view.
    return Response(answer.model_dump_json(), media_type=JSON)


@router.post(
    "/read",
    response_model=ReadResponse,
    responses=_ERRORS,
    openapi_extra=_request_body(PixelsBody),
    summary="Read the numbers in an image: every line, left to right",
)
async def read(request: Request) -> Response:
    """Send an image (JSON base64 or a multipart upload) or grey pixels of any size; the
    answer has the numbers as text (lines joined by a newline), each number's and each digit's
    box, the digits' probabilities and each number's confidence."""
    started = time.perf_counter()
    # Finding the lines takes milliseconds: in the cleaning workers (or a thread), so that
    # other requests keep flowing meanwhile. The reader's forward pass comes back to the event
    # loop, where concurrent readings share it.
    found = await read_lines(request)
    batcher: BatchingReader = request.app.state.reader_batcher
    reading = await batcher.read(found)
    answer = ReadResponse(
        **reading.to_dict(), model=batcher.reader.model_name, latency_ms=_ms(started)
    )
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


@router.post(
    "/explain",
    response_model=ExplainResponse,
    responses=_EXPLAIN_ERRORS,
    openapi_extra=_request_body(DigitPixelsBody),
    summary="Show which pixels made the answer, and the runner-up",
)
async def explain(request: Request) -> Response:
    """The same bodies as /predict. Integrated Gradients maps for the answer and the runner-up:
    tens of milliseconds for lenet on one CPU core, more for larger models."""
    from digitlab.explain import check_explainable, explain_view

    started = time.perf_counter()
    predictor: Predictor = request.app.state.predictor
    try:
        check_explainable(predictor.model)
    except ConfigError as error:
        raise HTTPException(NOT_IMPLEMENTED, str(error)) from None
    digit = await read_digit(request)
    model = predictor.model_name
    if digit.pixels is None:
        answer = ExplainResponse(
            reason=digit.reason, method=METHOD, model=model, latency_ms=_ms(started)
        )
        return Response(answer.model_dump_json(), media_type=JSON)
    # Gradients through the model take far longer than a prediction: off the event loop, so
    # /predict keeps answering meanwhile.
    explanation = await run_in_threadpool(explain_view, predictor, digit.pixels)
    answer = ExplainResponse(
        digit=explanation.answer.digit,
        probability=explanation.answer.probability,
        view=_view(digit.pixels),
        answer=_class_map(explanation.answer),
        runner_up=_class_map(explanation.runner_up),
        method=METHOD,
        model=model,
        latency_ms=_ms(started),
    )
    return Response(answer.model_dump_json(), media_type=JSON)


def _class_map(part: Any) -> ClassMap:
    return ClassMap(
        digit=part.digit,
        probability=part.probability,
        map=part.map.tolist(),
        total=part.total,
        delta=part.delta,
    )


def _view(pixels: torch.Tensor) -> list[list[int]]:
    """(1, 28, 28) floats in [0, 1] → 28 rows of 0-255 integers (numpy: cheaper than torch)."""
    rows: list[list[int]] = np.rint(pixels[0].numpy() * 255).astype(np.uint8).tolist()
    return rows


def _ms(started: float) -> float:
    return round((time.perf_counter() - started) * 1000, 3)
