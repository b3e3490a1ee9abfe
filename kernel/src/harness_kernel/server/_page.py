"""The web chat page at ``/``: three static files shipped inside the package.

Nothing is built and nothing is loaded from elsewhere (the Content-Security-Policy
says so to the browser too); the page talks to the service through the public
``/v1`` API only, with the key the person gives it.
"""

from __future__ import annotations

from importlib import resources

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

__all__ = ["PAGE_PATHS", "page_routes"]

_FILES = {
    "/": ("index.html", "text/html; charset=utf-8"),
    "/ui/app.js": ("app.js", "text/javascript; charset=utf-8"),
    "/ui/app.css": ("app.css", "text/css; charset=utf-8"),
}
PAGE_PATHS = frozenset(_FILES)
"""Served without a key: the page itself holds no data."""

_HEADERS = {
    "content-security-policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
        "img-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    ),
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
    "cache-control": "no-cache",
}


def page_routes() -> list[Route]:
    """Routes for the page's files, read once from the package."""
    web = resources.files(__package__).joinpath("web")
    routes = []
    for path, (name, media_type) in _FILES.items():
        body = web.joinpath(name).read_bytes()

        async def serve_file(
            request: Request, body: bytes = body, media_type: str = media_type
        ) -> Response:
            return Response(body, media_type=media_type, headers=_HEADERS)

        routes.append(Route(path, serve_file, methods=["GET"], name=f"page:{name}"))
    return routes
