"""Fuzz `/predict`, `/read` and `/explain` from the app's own OpenAPI schema with schemathesis.

Requests generated to fit the documented request body must be answered (200); requests
generated to break it must be refused with a 4xx; no request may cause a 5xx; every answer
must match the response schema documented for its status. Two refusals of valid-looking
bodies are allowed, because a schema can't express them: an image whose bytes decode to no
picture (the schema can only say "base64"), and `/read` pixel rows of unequal lengths.

The lenet of conftest's `trained_run` is served; examples are derandomized and few, so the
test is quick and gives the same requests on every run.
"""

from collections.abc import Iterator
from pathlib import Path

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from schemathesis import GenerationMode
from schemathesis.specs.openapi.checks import positive_data_acceptance

from digitlab.serve import create_app

FUZZED_PATHS = ["/predict", "/read", "/explain"]
EXAMPLES_PER_OPERATION = 50
# What a 422 for a body that fits the schema may be about: the content of the image.
IMAGE_CONTENT_PROBLEMS = ("not an image", "is empty", "truncated or corrupt", "more than")
RAGGED_ROWS = "the rows have different lengths"


@pytest.fixture(scope="module")
def api_schema(trained_run: Path) -> Iterator[schemathesis.BaseSchema]:
    from schemathesis.python import asgi

    app = create_app(trained_run)
    yield schemathesis.openapi.from_asgi("/openapi.json", app)
    asgi.shutdown_lifespans()  # the app's lifespan ran for the fuzzing; end it like a server


# Hypothesis strategies from the schema, with `given` in an ordinary test: schemathesis's
# own `from_fixture` + `parametrize` fails on pytest 9 (it reads a removed `_nodeid`).
@pytest.mark.parametrize("mode", list(GenerationMode), ids=lambda mode: mode.value)
@pytest.mark.parametrize("path", FUZZED_PATHS)
def test_api_matches_its_schema(
    api_schema: schemathesis.BaseSchema, path: str, mode: GenerationMode
) -> None:
    @given(case=api_schema[path]["POST"].as_strategy(generation_mode=mode))
    @settings(
        max_examples=EXAMPLES_PER_OPERATION,
        derandomize=True,
        database=None,
        deadline=None,
        phases=[Phase.explicit, Phase.generate],  # no shrinking: a failure shows as found
        suppress_health_check=list(HealthCheck),
    )
    def check(case: schemathesis.Case) -> None:
        response = case.call_and_validate(excluded_checks=[positive_data_acceptance])
        if mode.is_positive and response.status_code != 200:
            assert response.status_code == 422, (response.status_code, response.text)
            detail = response.json()["detail"]
            assert _refusal_the_schema_cannot_express(case, detail), (case.body, detail)

    check()


def _refusal_the_schema_cannot_express(case: schemathesis.Case, detail: str) -> bool:
    body = case.body if isinstance(case.body, dict) else {}
    if "image" in body or "file" in body:
        return any(problem in detail for problem in IMAGE_CONTENT_PROBLEMS)
    return case.path == "/read" and RAGGED_ROWS in detail
