"""The JSON shapes of the API: what `/predict` accepts and what every route returns.

The routes parse request bodies themselves (one endpoint takes JSON or a multipart upload,
which FastAPI can't express as one body parameter), so these models serve two purposes:
validating the JSON body and documenting every shape in the OpenAPI schema at `/docs`.
"""

from pydantic import BaseModel, ConfigDict, Field, model_validator


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


class Health(BaseModel):
    status: str = Field(description='"ok" once the model is loaded')
    model: str
    checkpoint: str
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
