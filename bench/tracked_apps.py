"""The bare apps of ``apps`` behind arktrack, with SQLite storage.

    gunicorn -w 1 -k sync tracked_apps:wsgi          uvicorn tracked_apps:asgi

Settings come from ``ARKBENCH_SECRET_KEY``, ``ARKBENCH_BASE_URL`` and ``ARKBENCH_STORAGE``
(names in ``apps``), which the driver sets per run so each run gets a fresh database.
The tracker is built at import, i.e. in the gunicorn worker, after the fork.
"""

from __future__ import annotations

import os

import apps

from arktrack import ArkTracking, Tracker
from arktrack.starlette import ArkTrackingMiddleware

tracker = Tracker(
    secret_key=os.environ[apps.SECRET_ENV],
    base_url=os.environ[apps.BASE_URL_ENV],
    storage=os.environ[apps.STORAGE_ENV],
)

wsgi = ArkTracking(apps.wsgi, tracker=tracker)
asgi = ArkTrackingMiddleware(apps.asgi, tracker=tracker)
