"""The REST API and the draw-a-digit web page (FastAPI); see `create_app`.

Imported only by `digitlab serve`, so `import digitlab` never pulls in FastAPI. Its packages
are the `serve` extra; without them importing this says which extra to install.
"""

from digitlab.extras import require

for _package in ("fastapi", "uvicorn", "python_multipart", "swagger_ui_bundle"):
    require(_package, "digitlab serve")

from digitlab.serve.app import create_app  # noqa: E402  (after the check, which names the extra)

__all__ = ["create_app"]
