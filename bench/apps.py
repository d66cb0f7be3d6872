"""Bare WSGI and ASGI apps that answer ``/o/...`` and ``/c/...`` with the very bytes the
tracked endpoints send, so that a bare-vs-tracked comparison measures arktrack alone.

    gunicorn -w 1 -k sync apps:wsgi          uvicorn apps:asgi

The token in the path is ignored: these apps stand for the fastest conceivable endpoint.
``tracked_apps`` wraps these same callables with arktrack.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from typing import Any

from arktrack.handler import PIXEL

# Where the benchmark's click links point. The bare app can't read it from a token, so the
# driver builds its click URLs with this same value and checks both apps send one Location.
DESTINATION = "https://example.com/welcome?utm_source=arktrack-bench"

# The tracked apps' settings. They live here, not in tracked_apps, because importing that
# module builds a tracker and the driver needs the names without one.
SECRET_ENV = "ARKBENCH_SECRET_KEY"
BASE_URL_ENV = "ARKBENCH_BASE_URL"
STORAGE_ENV = "ARKBENCH_STORAGE"

# Mirrors TrackingHandler's redirect; the driver compares live responses of both apps, so
# a change on either side shows up as a mismatch rather than a skewed comparison.
REDIRECT_HEADERS = [
    ("Location", DESTINATION),
    ("Content-Length", "0"),
    ("Cache-Control", "no-store"),
    ("Referrer-Policy", "no-referrer"),
]

StartResponse = Callable[..., Any]
Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]


def wsgi(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
    if environ.get("PATH_INFO", "").startswith("/c/"):
        status, headers, body = "302 Found", REDIRECT_HEADERS, b""
    else:
        status, headers, body = "200 OK", PIXEL.headers, PIXEL.body
    start_response(status, headers)
    return [] if environ["REQUEST_METHOD"] == "HEAD" else [body]


def _encoded(headers: list[tuple[str, str]]) -> list[tuple[bytes, bytes]]:
    return [(name.lower().encode("latin-1"), value.encode("latin-1")) for name, value in headers]


_ASGI_PIXEL = (200, _encoded(PIXEL.headers), PIXEL.body)
_ASGI_REDIRECT = (302, _encoded(REDIRECT_HEADERS), b"")


async def asgi(scope: Scope, receive: Receive, send: Send) -> None:
    if scope["type"] == "lifespan":
        # Answered rather than refused, so uvicorn starts and stops both variants alike.
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    if scope["type"] != "http":
        return
    status, headers, body = _ASGI_REDIRECT if scope["path"].startswith("/c/") else _ASGI_PIXEL
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": b"" if scope["method"] == "HEAD" else body})
