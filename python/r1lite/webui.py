"""The browser chat of `r1lite serve`: GET / serves a single page (webui/index.html, chat.css,
chat.js: package data, plain HTML/CSS/JS, nothing fetched from outside) that talks to the same
server's /v1/chat/completions with streaming. `r1lite serve --no-webui` leaves it out.

The page needs no API key to load (it holds no data); it asks for the key when /v1/models
answers 401 and keeps it in the browser's localStorage. Its Content-Security-Policy lets it
reach only its own origin, so the browser itself refuses any outside fetch.
"""

from __future__ import annotations

from importlib import resources

# served path -> (file under webui/, media type)
ASSETS = {
    "/": ("index.html", "text/html; charset=utf-8"),
    "/webui/chat.css": ("chat.css", "text/css; charset=utf-8"),
    "/webui/chat.js": ("chat.js", "text/javascript; charset=utf-8"),
}
PUBLIC_PATHS = frozenset(ASSETS)  # served without the API key (the page asks for it)

HEADERS = {
    "Content-Security-Policy": ("default-src 'none'; script-src 'self'; style-src 'self'; "
                                "connect-src 'self'; img-src 'self' data:; base-uri 'none'; "
                                "form-action 'none'; frame-ancestors 'none'"),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}


def asset(name: str) -> bytes:
    """The bytes of one file of the page (python/r1lite/webui/NAME, shipped in the wheel)."""
    return resources.files("r1lite").joinpath("webui", name).read_bytes()


def routes() -> list:
    """Starlette routes serving the page."""
    from starlette.responses import Response
    from starlette.routing import Route

    def endpoint(name: str, media_type: str):
        body = asset(name)  # read once, when the app is built

        async def serve_asset(request):
            return Response(body, media_type=media_type, headers=HEADERS)
        return serve_asset

    return [Route(path, endpoint(name, media), methods=["GET", "HEAD"])
            for path, (name, media) in ASSETS.items()]
