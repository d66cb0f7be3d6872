"""A Flask app that serves arktrack's open pixel and click redirects next to its own pages.

Settings are read by ``ArkTracking(app)`` from ``app.config`` first, then from the
environment::

    export ARKTRACK_SECRET_KEY="$(python -c 'import secrets; print(secrets.token_urlsafe(32))')"
    export ARKTRACK_BASE_URL=http://127.0.0.1:8000   # where this app is reachable
    export ARKTRACK_STORAGE=sqlite:///arktrack.db    # the default; or postgresql://...

Run it from the repository root, with either server::

    gunicorn -w 2 -b 127.0.0.1:8000 integrations.flask_app:app
    flask --app integrations.flask_app run --port 8000

Then send a tracked email with ``integrations/smtp_mailer.py`` and the same three
settings: its pixel and links come back here as ``/o/<token>`` and ``/c/<token>``, every
other path reaches the routes below, and ``/stats`` shows the numbers
(``/stats?start=2024-01-01&end=2024-01-31`` for a date range).
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict

from flask import Flask, Response, jsonify, request

from arktrack import ArkTracking, ConfigError, Event
from arktrack.flask import current_tracker

app = Flask(__name__)
# Values put in app.config here (e.g. from your own settings module) win over the
# environment, e.g. app.config["ARKTRACK_STORAGE"] = "postgresql://...".
app.wsgi_app = ArkTracking(app)  # type: ignore[method-assign]
# Hooks run on arktrack's writer thread, outside any request: they get the tracker
# from here rather than from current_tracker().
tracker = app.extensions["arktrack"]
# Flask's logger stays at WARNING unless debugging; the click log below is INFO.
app.logger.setLevel(logging.INFO)


@tracker.on_click
def log_click(event: Event) -> None:
    # event.to_dict() is the webhook payload, if you forward clicks somewhere else.
    app.logger.info("email clicked: %s", json.dumps(event.to_dict()))


@app.get("/")
def index() -> str:
    return "Hello from the app. arktrack answers /o/ and /c/; everything else is ours.\n"


@app.get("/stats")
def stats() -> Response | tuple[Response, int]:
    try:
        report = current_tracker().stats(request.args.get("start"), request.args.get("end"))
    except ConfigError as exc:  # a malformed or reversed date range
        return jsonify(error=str(exc)), 400
    return jsonify(asdict(report.summary))
