"""A `/predict` request body → the digit in MNIST format (`Preprocessed`), or an HTTP error.

Three forms are accepted: JSON `{"pixels": [[...]]}` (already MNIST format), JSON
`{"image": "<base64 or data URL>"}` and a multipart upload in the field `file`.
The status codes follow one rule: 415 when the body's media type (the request's Content-Type)
is one we don't read at all; 422 when the body is of a type we read but its content is
invalid — malformed JSON, a missing field, wrong pixels, or bytes that are no image. An
upload's own part type is not trusted either way: browsers label files loosely, so the bytes
decide.
"""

import base64
import binascii

from pydantic import ValidationError
from pydantic_core import ErrorDetails
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException
from starlette.requests import Request

from digitlab.preprocess import Preprocessed, preprocess_path, preprocess_pixels
from digitlab.serve.schemas import PredictJSON

UNSUPPORTED_MEDIA_TYPE = 415
UNPROCESSABLE = 422

JSON = "application/json"
MULTIPART = "multipart/form-data"
UPLOAD_FIELD = "file"
# A body with hundreds of wrong values gets the first few named, not a page of errors.
MAX_PROBLEMS = 3
PIXELS_FORMAT = "pixels must be 28 rows of 28 integers from 0 to 255"


async def read_digit(request: Request) -> Preprocessed:
    """The digit in the request, or HTTPException 415/422 saying what is wrong."""
    media_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media_type == JSON:
        return await _from_json(await request.body())
    if media_type == MULTIPART:
        return await _from_upload(request)
    got = f"Content-Type {media_type!r}" if media_type else "no Content-Type"
    raise HTTPException(
        UNSUPPORTED_MEDIA_TYPE,
        f"send {JSON} with a 'pixels' or 'image' field, or {MULTIPART} with the image in "
        f"the field '{UPLOAD_FIELD}'; got {got}",
    )


async def _from_json(body: bytes) -> Preprocessed:
    try:
        request = PredictJSON.model_validate_json(body)
    except ValidationError as error:
        raise HTTPException(UNPROCESSABLE, _describe(error)) from None
    if request.pixels is not None:
        # 784 integers: checking and scaling them is cheaper than a hop to a worker thread.
        return preprocess_pixels(request.pixels)
    assert request.image is not None  # PredictJSON guarantees exactly one
    return await _from_image_bytes(_decode_base64(request.image))


async def _from_upload(request: Request) -> Preprocessed:
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
    return await _from_image_bytes(data)


async def _from_image_bytes(data: bytes) -> Preprocessed:
    if not data:
        raise HTTPException(UNPROCESSABLE, "the image is empty (0 bytes)")
    # Decoding and cleaning up a photo takes milliseconds: off the event loop, so other
    # requests keep flowing meanwhile.
    return await run_in_threadpool(preprocess_path, data)


def _decode_base64(image: str) -> bytes:
    """Base64 text, or a data URL (`data:image/png;base64,...`) as a canvas produces, → bytes."""
    if image.startswith("data:"):
        header, _, image = image.partition(",")
        if not header.endswith(";base64"):
            raise HTTPException(UNPROCESSABLE, "'image' is a data URL but not a base64 one")
    try:
        return base64.b64decode(image, validate=True)
    except (binascii.Error, ValueError):
        raise HTTPException(
            UNPROCESSABLE, "'image' is not valid base64; send the file's bytes base64-encoded"
        ) from None


def _describe(error: ValidationError) -> str:
    """Pydantic's errors as one readable line, e.g. "pixels.3.5: Input should be ..."."""
    items = error.errors(include_url=False)
    if items[0]["type"] == "json_invalid":  # then it is the only one
        return f"the body is not valid JSON ({items[0]['ctx']['error']})"
    problems = [_problem(item) for item in items[:MAX_PROBLEMS]]
    if len(items) > MAX_PROBLEMS:
        problems.append(f"and {len(items) - MAX_PROBLEMS} more")
    if any(item["loc"][:1] == ("pixels",) for item in items):
        problems.insert(0, PIXELS_FORMAT)
    return "; ".join(problems)


def _problem(item: ErrorDetails) -> str:
    # Our own check (exactly one field) reads better without pydantic's "Value error, ".
    message = str(item["ctx"]["error"]) if item["type"] == "value_error" else item["msg"]
    where = ".".join(str(part) for part in item["loc"]) or "the JSON body"
    return f"{where}: {message}"
