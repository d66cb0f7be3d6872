"""Starlette and FastAPI: the generic ASGI layer is all they need.

    from arktrack.starlette import ArkTrackingMiddleware, tracking_app

    app.add_middleware(ArkTrackingMiddleware, tracker=tracker)   # serves base_url's path
    # or
    app = Starlette(routes=[..., Mount("/t", app=tracking_app(tracker))])

Both are pure ASGI (never ``BaseHTTPMiddleware``), so streaming responses, background
tasks and websockets of the host app are untouched.
"""

from __future__ import annotations

from .asgi import ArkTrackingMiddleware, tracking_app

__all__ = ["ArkTrackingMiddleware", "tracking_app"]
