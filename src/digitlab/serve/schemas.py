"""The JSON shapes of the API: what `/predict` accepts and what every route returns.

The routes parse request bodies themselves (one endpoint takes JSON or a multipart upload,
which FastAPI can't express as one body parameter), so these models serve two purposes:
validating the JSON body and documenting every shape in the OpenAPI schema at `/docs`.
"""

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, model_validator

SIDE = 28  # MNIST digits are 28×28


class PredictJSON(BaseModel):
    """Exactly one of `pixels` or `image`."""

    model_config = ConfigDict(extra="forbid")

    pixels: list[list[int]] | None = Field(
        default=None,
        description="28 rows of 28 integers 0-255, white ink on black (MNIST format)",
    )
    image: str | None = Field(
        default=None,
        description="a PNG or JPEG (any image Pillow reads) as base64, or as a data URL",
    )

    @model_validator(mode="after")
    def _exactly_one(self) -> "PredictJSON":
        if (self.pixels is None) == (self.image is None):
            raise ValueError('give exactly one of "pixels" or "image"')
        return self


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
        default=None, description="why there is no digit; null when there is one"
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
Row = Annotated[list[float], Field(min_length=SIDE, max_length=SIDE)]
Map = Annotated[list[Row], Field(min_length=SIDE, max_length=SIDE)]


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


class Health(BaseModel):
    status: str = Field(description='"ok" once the model is loaded')
    model: str
    checkpoint: str


class ErrorBody(BaseModel):
    detail: str = Field(description="what is wrong with the request and how to fix it")
