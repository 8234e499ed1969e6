"""A request-body size limit enforced while the body streams in, never after buffering it.

A declared Content-Length over the limit is refused before the app runs. A body without one
(chunked transfer) is counted chunk by chunk as the app reads it; the chunk that crosses the
limit raises a 413 instead of being delivered, so at most `limit` bytes are ever held.
"""

from starlette.datastructures import Headers
from starlette.exceptions import HTTPException
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

REQUEST_TOO_LARGE = 413


class BodySizeLimit:
    """ASGI middleware: refuse request bodies larger than `limit` bytes with 413 and JSON."""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = _declared_length(Headers(scope=scope))
        if declared is not None and declared > self.limit:
            await JSONResponse({"detail": self._message()}, REQUEST_TOO_LARGE)(scope, receive, send)
            return
        await self.app(scope, self._counting(receive), send)

    def _counting(self, receive: Receive) -> Receive:
        received = 0

        async def counted_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.limit:
                    # Raised inside the route's read of the body, so FastAPI's handler for
                    # HTTPException turns it into the usual JSON error.
                    raise HTTPException(REQUEST_TOO_LARGE, self._message())
            return message

        return counted_receive

    def _message(self) -> str:
        return f"the request body is larger than the {_human_size(self.limit)} limit"


def _declared_length(headers: Headers) -> int | None:
    try:
        return int(headers["content-length"])
    except (KeyError, ValueError):
        # No length (chunked) or a malformed one: the counting receive still applies.
        return None


def _human_size(size: int) -> str:
    if size >= 1024 * 1024:
        return f"{size / (1024 * 1024):g} MB"
    if size >= 1024:
        return f"{size / 1024:g} KB"
    return f"{size} bytes"
