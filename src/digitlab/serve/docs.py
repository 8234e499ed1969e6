"""`/docs` served offline: Swagger UI's files come from a Python package, not from a CDN.

FastAPI's own `/docs` page loads Swagger UI from a CDN, so it stays blank without internet.
This is FastAPI's "self-hosting JavaScript and CSS for docs" recipe, with the files taken from
the `swagger-ui-bundle-v2` package (imported as `swagger_ui_bundle`): it ships Swagger UI 5,
the first major version that reads the OpenAPI 3.1 schema FastAPI writes. The original
`swagger-ui-bundle` stops at Swagger UI 4, which shows "Unable to render this definition".
"""

from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.openapi.docs import get_swagger_ui_html, get_swagger_ui_oauth2_redirect_html
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles
from swagger_ui_bundle import swagger_ui_path

DOCS_URL = "/docs"
OAUTH2_REDIRECT_URL = "/docs/oauth2-redirect"
ASSETS_URL = "/docs/assets"
SWAGGER_UI_DIR = Path(str(swagger_ui_path))  # a folder of the installed package


def add_offline_docs(app: FastAPI) -> None:
    """Serve Swagger UI at /docs from local files. The app needs `docs_url=None, redoc_url=None`
    (ReDoc has no bundled package, and a second docs page is not worth a CDN dependency)."""
    # FastAPI's own /docs would answer first and still point at the CDN.
    assert app.docs_url is None, "create the app with docs_url=None"
    assert app.openapi_url is not None, "the docs page needs the OpenAPI schema"
    openapi_url = app.openapi_url
    title = f"{app.title} - Swagger UI"
    app.mount(ASSETS_URL, StaticFiles(directory=SWAGGER_UI_DIR), name="swagger_ui")

    @app.get(DOCS_URL, include_in_schema=False)
    async def swagger_ui(request: Request) -> HTMLResponse:
        # Relative to the root path, as FastAPI's own /docs is, so it works behind a proxy prefix.
        root = request.scope.get("root_path", "").rstrip("/")
        return get_swagger_ui_html(
            openapi_url=root + openapi_url,
            title=title,
            swagger_js_url=f"{root}{ASSETS_URL}/swagger-ui-bundle.js",
            swagger_css_url=f"{root}{ASSETS_URL}/swagger-ui.css",
            swagger_favicon_url=f"{root}{ASSETS_URL}/favicon-32x32.png",
            oauth2_redirect_url=root + OAUTH2_REDIRECT_URL,
        )

    @app.get(OAUTH2_REDIRECT_URL, include_in_schema=False)
    async def swagger_ui_redirect() -> HTMLResponse:
        return get_swagger_ui_oauth2_redirect_html()
