"""WSGI middleware: ``app.wsgi_app = ArkTracking(app, tracker=tracker)``.

For Flask, pass the Flask app itself: the middleware wraps the *original*
``app.wsgi_app`` (calling ``app`` would come back here and recurse), reads ``ARKTRACK_*``
from ``app.config`` then the environment when no tracker is given, and stores the tracker
in ``app.extensions["arktrack"]``. Any other WSGI callable works too::

    application = ArkTracking(application, tracker=tracker)

Applying it twice wraps once. Requests other than ``/o/<token>`` and ``/c/<token>`` under
the ``base_url`` path reach the app untouched.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from http import HTTPStatus
from typing import Any

from .handler import route
from .tracker import Tracker

StartResponse = Callable[..., Any]
WSGIApp = Callable[[dict[str, Any], StartResponse], Iterable[bytes]]

_STATUS_LINES = {status.value: f"{status.value} {status.phrase}" for status in HTTPStatus}


class ArkTracking:
    app: WSGIApp
    tracker: Tracker

    def __init__(self, app: Any, *, tracker: Tracker | None = None) -> None:
        flask_like = hasattr(app, "wsgi_app") and hasattr(app, "config")
        inner: Any = app.wsgi_app if flask_like else app
        if isinstance(inner, ArkTracking):
            tracker = tracker or inner.tracker
            inner = inner.app
        self.app = inner
        self.tracker = tracker or Tracker.from_env(config=app.config if flask_like else None)
        if flask_like and isinstance(getattr(app, "extensions", None), dict):
            app.extensions["arktrack"] = self.tracker
        self._prefix = self.tracker.settings.path_prefix
        self._handle = self.tracker.handler.handle

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        path = environ.get("SCRIPT_NAME", "") + environ.get("PATH_INFO", "")
        matched = route(path, self._prefix)
        if matched is None:
            return self.app(environ, start_response)
        method = environ["REQUEST_METHOD"]
        response = self._handle(
            method,
            *matched,
            user_agent=environ.get("HTTP_USER_AGENT"),
            forwarded_for=environ.get("HTTP_X_FORWARDED_FOR"),
            peer=environ.get("REMOTE_ADDR"),
        )
        # A copy: middleware above may append to the list, and the fixed responses share it.
        start_response(_STATUS_LINES[response.status], list(response.headers))
        return [] if method == "HEAD" else [response.body]
