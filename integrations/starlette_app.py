"""A Starlette app that serves arktrack's open pixel and click redirects next to its own
routes, as pure ASGI middleware (``app``) or as a mounted sub-app (``mounted_app``).

Settings come from the environment::

    export ARKTRACK_SECRET_KEY="$(python -c 'import secrets; print(secrets.token_urlsafe(32))')"
    export ARKTRACK_BASE_URL=http://127.0.0.1:8000   # where this app is reachable
    export ARKTRACK_STORAGE=sqlite:///arktrack.db    # the default; or postgresql://...

Run it from the repository root::

    uvicorn --host 127.0.0.1 --port 8000 integrations.starlette_app:app

The middleware answers ``/o/<token>`` and ``/c/<token>`` under the path of
``ARKTRACK_BASE_URL`` and passes everything else to the routes. The alternative mounts
the endpoints as their own app, here at the path of ``ARKTRACK_BASE_URL``::

    export ARKTRACK_BASE_URL=http://127.0.0.1:8000/t
    uvicorn --host 127.0.0.1 --port 8000 integrations.starlette_app:mounted_app

which in your own code reads ``Mount("/t", app=tracking_app(tracker))``, with a
``base_url`` ending in ``/t``.

FastAPI is Starlette underneath, so the same two lines work there::

    app = FastAPI(lifespan=lifespan)
    app.add_middleware(ArkTrackingMiddleware, tracker=tracker)
    # or: app.mount("/t", tracking_app(tracker))
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import asdict

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse
from starlette.routing import Mount, Route

from arktrack import ConfigError, Event, Tracker
from arktrack.starlette import ArkTrackingMiddleware, tracking_app

logger = logging.getLogger(__name__)

tracker = Tracker.from_env()


@tracker.on_click
def log_click(event: Event) -> None:
    # Runs on arktrack's writer thread once the click is stored; event.to_dict() is the
    # webhook payload, if you forward clicks somewhere else.
    logger.info("email clicked: %s -> %s", event.to, event.url)


@asynccontextmanager
async def lifespan(app: Starlette) -> AsyncIterator[None]:
    yield
    # uvicorn ends the process by re-raising SIGTERM, so exit handlers never run. The
    # middleware drains queued events at shutdown by itself, but a mounted sub-app never
    # hears of the lifespan: close the tracker here, which drains it and releases the
    # database connections.
    await asyncio.to_thread(tracker.close)


async def index(request: Request) -> PlainTextResponse:
    return PlainTextResponse(
        "Hello from the app. arktrack answers /o/ and /c/; everything else is ours.\n"
    )


# A plain function: Starlette runs it in a thread, so the database query does not block
# the event loop.
def stats(request: Request) -> JSONResponse:
    try:
        report = tracker.stats(request.query_params.get("start"), request.query_params.get("end"))
    except ConfigError as exc:  # a malformed or reversed date range
        return JSONResponse({"error": str(exc)}, status_code=400)
    return JSONResponse(asdict(report.summary))


routes = [Route("/", index), Route("/stats", stats)]

app = Starlette(routes=routes, lifespan=lifespan)
app.add_middleware(ArkTrackingMiddleware, tracker=tracker)

# The mount goes last so the routes above keep their paths; with no path in base_url it
# mounts at the root, where it answers /o/ and /c/ and 404s whatever the routes did not take.
mounted_app = Starlette(
    routes=[*routes, Mount(tracker.settings.path_prefix, app=tracking_app(tracker))],
    lifespan=lifespan,
)
