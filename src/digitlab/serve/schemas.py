"""The JSON shapes of the API: what `/predict` and `/read` accept and what every route returns.

The routes parse request bodies themselves (one endpoint takes JSON or a multipart upload,
which FastAPI can't express as one body parameter). Two kinds of models live here:

- `ImageJSON` parses a JSON body loosely (any rows of integers), so that the checks after
  it can say exactly what is wrong ("got shape (27, 28)", "rows have different lengths");
- `DigitPixelsBody`, `PixelsBody` and `ImageBody` are the exact documented shapes, combined
  by `routes.py` into a `oneOf` of closed objects for the OpenAPI schema at `/docs`.

Together the parser and the checks accept what the documented shapes accept and refuse the
rest with 422, which `tests/test_fuzz.py` checks by fuzzing the app from its own schema. One
thing JSON Schema cannot say: that every row of `pixels` has the same length (the
description says it; ragged rows are refused with 422).
"""

from typing import Annotated

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, model_validator

from digitlab.mnist_format import IMAGE_SIZE

GREY_MAX = 255
# `/read` takes pixels of any size up to this many rows and columns: a wide scan of a
# number fits, and the JSON of the largest (about 4 MB) stays well inside the body limit.
MAX_PIXELS_SIDE = 1024
# Standard base64 with its padding, optionally as a data URL (`data:image/png;base64,...`),
# as a canvas's `toDataURL` gives it. The server checks `image` with this same pattern.
BASE64_PATTERN = (
    r"^(data:[^,]*;base64,)?"
    r"([A-Za-z0-9+/]{4})*([A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$"
)

IMAGE_DESCRIPTION = (
    "a PNG or JPEG (any image Pillow reads) as base64, or as a data URL "
    "(data:image/png;base64,...); dark ink on light paper or light on dark, any size"
)


def _not_a_boolean(value: object) -> object:
    # JSON Schema's integers include 7.0 but not `true`; pydantic's lax int takes both.
    if isinstance(value, bool):
        raise ValueError("Input should be a valid integer, not a boolean")
    return value


# An integer as JSON Schema has it: 7 or 7.0, not 7.5, not `true`.
JSONInt = Annotated[int, BeforeValidator(_not_a_boolean)]


class ImageJSON(BaseModel):
    """A JSON body as sent: exactly one of `pixels` or `image` (the parser, not the docs)."""

    model_config = ConfigDict(extra="forbid")

    pixels: list[list[JSONInt]] | None = None
    image: str | None = None

    @model_validator(mode="after")
    def _exactly_one(self) -> "ImageJSON":
        if (self.pixels is None) == (self.image is None):
            raise ValueError('give exactly one of "pixels" or "image"')
        return self


Grey = Annotated[int, Field(ge=0, le=GREY_MAX)]


class DigitPixelsBody(BaseModel):
    """One digit already in MNIST format."""

    model_config = ConfigDict(extra="forbid", title="DigitPixels")

    pixels: Annotated[
        list[Annotated[list[Grey], Field(min_length=IMAGE_SIZE, max_length=IMAGE_SIZE)]],
        Field(
            min_length=IMAGE_SIZE,
            max_length=IMAGE_SIZE,
            description="28 rows of 28 integers 0-255, white ink on black (MNIST format)",
        ),
    ]


class PixelsBody(BaseModel):
    """A grey image of any size; its polarity is detected as for any photo."""

    model_config = ConfigDict(extra="forbid", title="Pixels")

    pixels: Annotated[
        list[Annotated[list[Grey], Field(min_length=1, max_length=MAX_PIXELS_SIDE)]],
        Field(
            min_length=1,
            max_length=MAX_PIXELS_SIDE,
            description=(
                f"a grey image: H rows of W integers 0-255 (1 to {MAX_PIXELS_SIDE} each), "
                "every row equally long; dark ink on light paper or light on dark"
            ),
        ),
    ]


class ImageBody(BaseModel):
    """An image file, base64-encoded."""

    model_config = ConfigDict(extra="forbid", title="Image")

    image: str = Field(pattern=BASE64_PATTERN, description=IMAGE_DESCRIPTION)


class Candidate(BaseModel):
    digit: int
    probability: float


class PredictResponse(BaseModel):
    """A digit with its probabilities, or `digit: null` and the `reason` there is none."""

    digit: int | None = Field(
        default=None, description="the most likely digit; null when none was found"
    )
    probability: float | None = Field(default=None, description="the probability of `digit`")
    reason: str | None = Field(
        default=None,
        description='why there is no digit, e.g. "not a digit"; null when there is one',
    )
    probabilities: list[float] | None = Field(
        default=None, description="10 probabilities, for digits 0-9"
    )
    top3: list[Candidate] | None = Field(
        default=None, description="the three most likely digits, best first"
    )
    view: list[list[int]] | None = Field(
        default=None, description="the 28×28 input the model saw, 0-255, white ink on black"
    )
    model: str = Field(description="the network's name, e.g. lenet")
    latency_ms: float = Field(description="time spent in the server on this request")


# 28 rows of 28 numbers; the lengths are part of the OpenAPI schema (minItems = maxItems = 28).
Row = Annotated[list[float], Field(min_length=IMAGE_SIZE, max_length=IMAGE_SIZE)]
Map = Annotated[list[Row], Field(min_length=IMAGE_SIZE, max_length=IMAGE_SIZE)]


class ClassMap(BaseModel):
    """One class's Integrated Gradients map over `view`."""

    digit: int
    probability: float
    map: Map = Field(
        description="28 rows of 28 signed numbers, unnormalised, row by row as in `view`: how "
        "much each pixel raised (> 0) or lowered (< 0) the model's log-probability of `digit`, "
        "from an empty (all black) 28×28 to `view`. Pixels without ink are exactly 0."
    )
    total: float = Field(
        description="the map's sum: log p(digit | view) - log p(digit | empty image), "
        "within `delta`"
    )
    delta: float = Field(
        description="the map's sum minus the exact change in log-probability: the error of "
        "the integral's approximation"
    )


class ExplainResponse(BaseModel):
    """The answer and the runner-up, each with its map; or `digit: null` and the `reason`."""

    digit: int | None = Field(
        default=None, description="the most likely digit; null when none was found"
    )
    probability: float | None = Field(default=None, description="the probability of `digit`")
    reason: str | None = Field(
        default=None, description="why there is no digit; null when there is one"
    )
    view: list[list[int]] | None = Field(
        default=None, description="the 28×28 input the model saw, 0-255, white ink on black"
    )
    answer: ClassMap | None = Field(default=None, description="the map of `digit`")
    runner_up: ClassMap | None = Field(
        default=None, description="the map of the second most likely digit"
    )
    method: str = Field(description='how the maps were made: "integrated gradients"')
    model: str = Field(description="the network's name, e.g. lenet")
    latency_ms: float = Field(description="time spent in the server on this request")


Box = Annotated[list[int], Field(min_length=4, max_length=4)]
BOX_DESCRIPTION = "[x, y, width, height] in the image's pixels, from its top-left corner"


class ReadDigitResponse(BaseModel):
    """One digit of a number."""

    digit: int = Field(description="the digit 0-9")
    probability: float = Field(description="the reader's probability of `digit` where it is")
    box: Box = Field(description=BOX_DESCRIPTION)


class ReadNumberResponse(BaseModel):
    """One number: its digits, where it is, and how sure the reader is of it."""

    text: str = Field(description="the digits, left to right")
    confidence: float = Field(description="calibrated probability that `text` is what is written")
    box: Box = Field(description=BOX_DESCRIPTION)
    digits: list[ReadDigitResponse] = Field(description="each digit, left to right")


class ReadResponse(BaseModel):
    """The numbers in an image, line by line, or `text: null` and the `reason`."""

    path: str | None = Field(default=None, description="always null here (it names CLI files)")
    text: str | None = Field(
        description="the numbers: a space between numbers on one line, a newline between lines "
        "(top first); null when none were found"
    )
    numbers: list[ReadNumberResponse] = Field(
        description="each number, line by line, left to right"
    )
    digits: list[ReadDigitResponse] = Field(description="every digit of `numbers`, in their order")
    confidence: float | None = Field(
        description="how sure the whole text is (0-1): the product of the numbers' confidences; "
        "null when there is no text"
    )
    reason: str | None = Field(default=None, description="why there is no text")
    error: str | None = Field(default=None, description="always null here (errors are 422)")
    model: str = Field(description="the reader's name, e.g. crnn")
    latency_ms: float = Field(description="time spent in the server on this request")


class Health(BaseModel):
    status: str = Field(description='"ok" once the model is loaded')
    model: str = Field(description="the digit classifier of /predict and /explain")
    checkpoint: str
    reader: str = Field(description="the number reader of /read")
    reader_checkpoint: str = Field(description="where the reader comes from")
    temperature: float | None = Field(
        default=None, description="the calibration temperature applied; null when it has none"
    )
    reject_threshold: float | None = Field(
        default=None, description="'not a digit' above this detector score; null when off"
    )
    missing: list[str] = Field(
        default_factory=list, description="what an older checkpoint lacks, one sentence each"
    )


class ErrorBody(BaseModel):
    detail: str = Field(description="what is wrong with the request and how to fix it")
