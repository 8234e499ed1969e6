"""A request body → what the routes work on, or an HTTP error.

Three forms are accepted by both `/predict` and `/read`: JSON `{"pixels": [[...]]}`, JSON
`{"image": "<base64 or data URL>"}` and a multipart upload in the field `file`.
`read_digit` (for `/predict`) turns them into one digit in MNIST format (`Preprocessed`);
`read_lines` (for `/read`) into the line images of the picture's numbers (`read.find_lines`):
image files in the app's cleaning workers or threads, pixels (a grey picture of any size) in a
thread.
The status codes follow one rule: 415 when the body's media type (the request's Content-Type)
is one we don't read at all; 422 when the body is of a type we read but its content is
invalid — malformed JSON, a missing field, wrong pixels, or bytes that are no image. An
upload's own part type is not trusted either way: browsers label files loosely, so the bytes
decide.
"""

import base64
import re
from collections.abc import Sequence

import numpy as np
from PIL import Image
from pydantic import ValidationError
from pydantic_core import ErrorDetails
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException
from starlette.requests import Request

from digitlab.preprocess import Preprocessed, preprocess_pixels
from digitlab.read import FoundLines, find_lines
from digitlab.serve.cleaning import Cleaner
from digitlab.serve.schemas import BASE64_PATTERN, GREY_MAX, MAX_PIXELS_SIDE, ImageJSON

UNSUPPORTED_MEDIA_TYPE = 415
UNPROCESSABLE = 422

JSON = "application/json"
MULTIPART = "multipart/form-data"
UPLOAD_FIELD = "file"
# A body with hundreds of wrong values gets the first few named, not a page of errors.
MAX_PROBLEMS = 3
PIXELS_FORMAT = "pixels must be 28 rows of 28 integers from 0 to 255"
PICTURE_FORMAT = (
    f"pixels must be H rows of W integers from 0 to {GREY_MAX}, every row equally long, "
    f"with H and W from 1 to {MAX_PIXELS_SIDE}"
)
# Searched as JSON Schema validators search a `pattern` (Python's `$` also matches before
# a final newline, so `base64`'s own output with its trailing newline is accepted too).
_BASE64 = re.compile(BASE64_PATTERN)
# Below these sizes, parsing JSON or checking pixels is cheaper than a hop to a worker thread
# (a 28×28 digit as JSON is about 3 KB).
INLINE_JSON_BYTES = 64 * 1024


async def read_digit(request: Request) -> Preprocessed:
    """The digit in the request (for /predict), or HTTPException 415/422 saying what is wrong."""
    body = await _read_body(request, PIXELS_FORMAT)
    if isinstance(body, bytes):
        return await _preprocess_bytes(request, body)
    if body.pixels is not None:
        # 784 integers: checking and scaling them is cheaper than a hop to a worker thread.
        return preprocess_pixels(body.pixels)
    assert body.image is not None  # ImageJSON guarantees exactly one
    return await _preprocess_bytes(request, _decode_base64(body.image))


async def read_lines(request: Request) -> FoundLines | str:
    """The line images of the numbers in the request's picture (for /read), or the reason
    there are none; HTTPException 415/422 saying what is wrong with the request."""
    body = await _read_body(request, PICTURE_FORMAT)
    if isinstance(body, bytes):
        return await _find_lines_in_bytes(request, body)
    if body.pixels is not None:
        pixels = body.pixels
        return await run_in_threadpool(lambda: find_lines(grey_picture(pixels)))
    assert body.image is not None  # ImageJSON guarantees exactly one
    return await _find_lines_in_bytes(request, _decode_base64(body.image))


def grey_picture(pixels: Sequence[Sequence[int]]) -> Image.Image:
    """H rows of W integers 0-255 → a grey image, or HTTPException 422 saying what is wrong."""
    if len({len(row) for row in pixels}) > 1:
        raise HTTPException(UNPROCESSABLE, f"{PICTURE_FORMAT}; the rows have different lengths")
    array = np.asarray(pixels)
    if array.ndim != 2 or array.size == 0 or max(array.shape) > MAX_PIXELS_SIDE:
        raise HTTPException(UNPROCESSABLE, f"{PICTURE_FORMAT}; got shape {array.shape}")
    # Integers beyond 64 bits make an array of Python objects: out of range all the same.
    if array.dtype == object or array.min() < 0 or array.max() > GREY_MAX:
        low, high = min(map(min, pixels)), max(map(max, pixels))
        raise HTTPException(UNPROCESSABLE, f"{PICTURE_FORMAT}; got values from {low} to {high}")
    return Image.fromarray(array.astype(np.uint8), mode="L")


async def _read_body(request: Request, pixels_format: str) -> ImageJSON | bytes:
    """The parsed JSON body, or the uploaded file's bytes; `pixels_format` explains bad pixels."""
    media_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media_type == JSON:
        body = await request.body()
        if len(body) <= INLINE_JSON_BYTES:
            return _parse_json(body, pixels_format)
        # A large image as pixels or base64 takes milliseconds to parse: off the event loop.
        return await run_in_threadpool(_parse_json, body, pixels_format)
    if media_type == MULTIPART:
        return await _from_upload(request)
    got = f"Content-Type {media_type!r}" if media_type else "no Content-Type"
    raise HTTPException(
        UNSUPPORTED_MEDIA_TYPE,
        f"send {JSON} with a 'pixels' or 'image' field, or {MULTIPART} with the image in "
        f"the field '{UPLOAD_FIELD}'; got {got}",
    )


def _parse_json(body: bytes, pixels_format: str) -> ImageJSON:
    try:
        return ImageJSON.model_validate_json(body)
    except ValidationError as error:
        raise HTTPException(UNPROCESSABLE, _describe(error, pixels_format)) from None


async def _from_upload(request: Request) -> bytes:
    try:
        async with request.form(max_files=1, max_fields=10) as form:
            upload = form.get(UPLOAD_FIELD)
            if not isinstance(upload, UploadFile):
                raise HTTPException(
                    UNPROCESSABLE,
                    f"the multipart body needs the image as a file in the field '{UPLOAD_FIELD}'",
                )
            data = await upload.read()
    except HTTPException as error:
        if error.status_code != 400:
            raise
        # Starlette reports a malformed multipart body as 400; it is invalid content (422).
        raise HTTPException(
            UNPROCESSABLE, f"cannot read the multipart body: {error.detail}"
        ) from None
    return data


async def _preprocess_bytes(request: Request, data: bytes) -> Preprocessed:
    _check_not_empty(data)
    # Decoding and cleaning up a photo takes milliseconds: off the event loop, so other
    # requests keep flowing meanwhile (in the app's worker processes or threads).
    cleaner: Cleaner = request.app.state.cleaner
    return await cleaner.preprocess(data)


async def _find_lines_in_bytes(request: Request, data: bytes) -> FoundLines | str:
    _check_not_empty(data)
    cleaner: Cleaner = request.app.state.cleaner
    return await cleaner.find_lines(data)


def _check_not_empty(data: bytes) -> None:
    if not data:
        raise HTTPException(UNPROCESSABLE, "the image is empty (0 bytes)")


def _decode_base64(image: str) -> bytes:
    """Base64 text, or a data URL (`data:image/png;base64,...`) as a canvas produces, → bytes."""
    if image.startswith("data:") and not image.partition(",")[0].endswith(";base64"):
        raise HTTPException(UNPROCESSABLE, "'image' is a data URL but not a base64 one")
    if _BASE64.search(image) is None:
        raise HTTPException(
            UNPROCESSABLE, "'image' is not valid base64; send the file's bytes base64-encoded"
        )
    # The pattern has checked the alphabet and the padding, so this decodes.
    return base64.b64decode(image.rpartition(",")[2].removesuffix("\n"))


def _describe(error: ValidationError, pixels_format: str) -> str:
    """Pydantic's errors as one readable line, e.g. "pixels.3.5: Input should be ..."."""
    items = error.errors(include_url=False)
    if items[0]["type"] == "json_invalid":  # then it is the only one
        return f"the body is not valid JSON ({items[0]['ctx']['error']})"
    problems = [_problem(item) for item in items[:MAX_PROBLEMS]]
    if len(items) > MAX_PROBLEMS:
        problems.append(f"and {len(items) - MAX_PROBLEMS} more")
    if any(item["loc"][:1] == ("pixels",) for item in items):
        problems.insert(0, pixels_format)
    return "; ".join(problems)


def _problem(item: ErrorDetails) -> str:
    # Our own check (exactly one field) reads better without pydantic's "Value error, ".
    message = str(item["ctx"]["error"]) if item["type"] == "value_error" else item["msg"]
    where = ".".join(str(part) for part in item["loc"]) or "the JSON body"
    return f"{where}: {message}"
