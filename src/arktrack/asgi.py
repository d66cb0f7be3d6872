"""ASGI layer: pure ASGI middleware and a mountable sub-app, with no framework import.

    app = ArkTrackingMiddleware(app, tracker=tracker)   # or app.add_middleware(...)
    Mount("/t", app=tracking_app(tracker))              # base_url ends in /t

Non-HTTP scopes (websockets, lifespan) pass through the middleware; at lifespan shutdown
it first drains the events still queued.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from .handler import NOT_ALLOWED, NOT_FOUND, PIXEL, REDIRECT_HEADERS, Response, route
from .tracker import Tracker

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

# Long enough for a backlog of thousands of events, short of a process manager's patience.
SHUTDOWN_FLUSH_SECONDS = 10.0


class ArkTrackingMiddleware:
    def __init__(self, app: ASGIApp, tracker: Tracker | None = None) -> None:
        self.app = app
        self.tracker = tracker or Tracker.from_env()
        self._prefix = self.tracker.settings.path_prefix

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            matched = route(scope["path"], self._prefix)
            if matched is not None:
                await _respond(self.tracker, scope, send, matched)
                return
        elif scope["type"] == "lifespan":
            send = _flushing_at_shutdown(self.tracker, send)
        await self.app(scope, receive, send)


def _flushing_at_shutdown(tracker: Tracker, send: Send) -> Send:
    """Drain pending events before the server hears that shutdown is complete: uvicorn
    ends the process by re-raising SIGTERM, so exit handlers never run."""

    async def wrapped(message: Message) -> None:
        if message["type"] in ("lifespan.shutdown.complete", "lifespan.shutdown.failed"):
            # close(), not flush(): what the writer cannot drain in time is still stored.
            await asyncio.to_thread(tracker.recorder.close, SHUTDOWN_FLUSH_SECONDS)
        await send(message)

    return wrapped


def tracking_app(tracker: Tracker) -> ASGIApp:
    """An ASGI app serving only ``/o/<token>`` and ``/c/<token>`` relative to where it is
    mounted (or under the ``base_url`` path); anything else is a 404. It also runs alone
    under an ASGI server, and drains pending events at lifespan shutdown."""

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await _lifespan(tracker, receive, send)
            return
        if scope["type"] != "http":
            return
        path: str = scope["path"]
        root: str = scope.get("root_path", "")
        if root and path.startswith(root):
            path = path[len(root) :]
        # Relative to the mount point, or under base_url's path when a proxy in front
        # passes that path on.
        matched = route(path, "") or route(path, tracker.settings.path_prefix)
        if matched is None:
            start, body = _messages(scope, NOT_FOUND)
            await send(start)
            await send(body)
        else:
            await _respond(tracker, scope, send, matched)

    return app


async def _respond(tracker: Tracker, scope: Scope, send: Send, matched: tuple[str, str]) -> None:
    if tracker.recorder.background:
        # Recording is only a queue append: no need to leave the event loop.
        response = _handle(tracker, scope, matched)
    else:
        response = await asyncio.to_thread(_handle, tracker, scope, matched)
    start, body = _messages(scope, response)
    await send(start)
    await send(body)


def _handle(tracker: Tracker, scope: Scope, matched: tuple[str, str]) -> Response:
    user_agent = forwarded_for = None
    for name, value in scope["headers"]:
        if name == b"user-agent":
            user_agent = value.decode("latin-1")
        elif name == b"x-forwarded-for":
            # Repeated headers form one list, in order, as WSGI servers join them.
            hops = value.decode("latin-1")
            forwarded_for = hops if forwarded_for is None else f"{forwarded_for}, {hops}"
    client = scope.get("client")
    return tracker.handler.handle(
        scope["method"],
        *matched,
        user_agent=user_agent,
        forwarded_for=forwarded_for,
        peer=client[0] if client else None,
    )


def _encode(headers: list[tuple[str, str]]) -> list[tuple[bytes, bytes]]:
    # A new list each time: middleware above may append to it.
    return [_ENCODED_HEADERS.get(header) or _encode_header(header) for header in headers]


def _encode_header(header: tuple[str, str]) -> tuple[bytes, bytes]:
    return header[0].lower().encode("latin-1"), header[1].encode("latin-1")


# Headers that recur are encoded once: all of the fixed responses' and all of a redirect's
# but its Location.
_ENCODED_HEADERS = {
    header: _encode_header(header)
    for headers in (PIXEL.headers, NOT_FOUND.headers, NOT_ALLOWED.headers, REDIRECT_HEADERS)
    for header in headers
}


def _messages(scope: Scope, response: Response) -> tuple[Message, Message]:
    """The two ASGI messages that send ``response``. A plain function, not a coroutine
    that sends them: on every hit that is one coroutine fewer to create and await."""
    headers = _encode(response.headers)
    body = b"" if scope["method"] == "HEAD" else response.body
    return (
        {"type": "http.response.start", "status": response.status, "headers": headers},
        {"type": "http.response.body", "body": body},
    )


async def _lifespan(tracker: Tracker, receive: Receive, send: Send) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await asyncio.to_thread(tracker.recorder.close, SHUTDOWN_FLUSH_SECONDS)
            await send({"type": "lifespan.shutdown.complete"})
            return
