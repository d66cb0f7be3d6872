"""Flask glue.

from arktrack import ArkTracking
app.wsgi_app = ArkTracking(app, tracker=tracker)   # or ArkTracking(app): ARKTRACK_* config

from arktrack.flask import current_tracker
@app.get("/admin/email-stats")
def email_stats():
    return current_tracker().stats().summary.__dict__
"""

from __future__ import annotations

from flask import current_app

from .errors import ConfigError
from .tracker import Tracker
from .wsgi import ArkTracking

__all__ = ["ArkTracking", "current_tracker"]


def current_tracker() -> Tracker:
    """The tracker that ``ArkTracking(app)`` installed on the current Flask app."""
    tracker = current_app.extensions.get("arktrack")
    if not isinstance(tracker, Tracker):
        raise ConfigError("app.wsgi_app", "ArkTracking(app) was not applied to this app")
    return tracker
