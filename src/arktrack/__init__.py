"""arktrack: email open and click tracking inside your own web app.

from arktrack import Tracker, ArkTracking, rewrite_html

tracker = Tracker(secret_key="...", base_url="https://track.example.com")
html = tracker.rewrite_html(html, message_id="msg_123", recipient="user@example.com")
app.wsgi_app = ArkTracking(app, tracker=tracker)
"""

from __future__ import annotations

from .errors import ArkTrackError, ConfigError, InvalidToken, StorageError
from .events import Event, EventType
from .links import LinkReport, MessageReport, RewriteOptions, RewriteReport, SkipReason
from .stats import Stats, Summary
from .storage import MemoryStorage, Storage
from .tracker import Tracker, rewrite_html, rewrite_text
from .wsgi import ArkTracking

__all__ = [
    "ArkTrackError",
    "ArkTracking",
    "ConfigError",
    "Event",
    "EventType",
    "InvalidToken",
    "LinkReport",
    "MemoryStorage",
    "MessageReport",
    "RewriteOptions",
    "RewriteReport",
    "SkipReason",
    "Stats",
    "Storage",
    "StorageError",
    "Summary",
    "Tracker",
    "rewrite_html",
    "rewrite_text",
]
