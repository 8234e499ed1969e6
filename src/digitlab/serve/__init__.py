"""The REST API and the draw-a-digit web page (FastAPI); see `create_app`.

Imported only by `digitlab serve`, so `import digitlab` never pulls in FastAPI.
"""

from digitlab.serve.app import create_app

__all__ = ["create_app"]
