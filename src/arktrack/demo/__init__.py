"""``arktrack demo``: a tracking server with a sample email, a landing page and live
numbers, all on 127.0.0.1, so a newcomer can open, click and watch the stats change."""

from __future__ import annotations

import html
from importlib.resources import files
from urllib.parse import parse_qs

from ..asgi import ASGIApp, Receive, Scope, Send, tracking_app
from ..events import format_timestamp
from ..tracker import Tracker

SAMPLE_RECIPIENT = "ada@example.com"


def sample_email(base_url: str) -> str:
    template = (files(__package__) / "sample_email.html").read_text("utf-8")
    return template.replace("{{base}}", base_url)


def demo_app(tracker: Tracker, message_id: str) -> ASGIApp:
    """Serves ``/demo/email`` (the sample email, tracked), ``/demo/landing`` (where its
    links lead), ``/demo/stats`` (the numbers), and the tracking endpoints."""
    base = tracker.settings.base_url
    email = tracker.rewrite_html(
        sample_email(base), message_id=message_id, recipient=SAMPLE_RECIPIENT
    ).encode("utf-8")
    tracking = tracking_app(tracker)

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] not in PAGES:
            await tracking(scope, receive, send)
            return
        if scope["path"] == "/demo/email":
            body = email
        elif scope["path"] == "/demo/landing":
            query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
            body = _landing(base, query.get("article", ["?"])[0])
        elif scope["path"] == "/demo/stats":
            body = _stats_page(tracker, message_id)
        else:
            body = _index(base)
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [
                    (b"content-type", b"text/html; charset=utf-8"),
                    (b"cache-control", b"no-store"),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})

    return app


PAGES = ("/", "/demo/email", "/demo/landing", "/demo/stats")


def _page(title: str, content: str, refresh: bool = False) -> bytes:
    meta = '<meta http-equiv="refresh" content="2">' if refresh else ""
    return (
        f"<!DOCTYPE html><html><head><meta charset='utf-8'>{meta}<title>{title}</title>"
        "<style>body{font-family:sans-serif;max-width:46em;margin:2em auto;line-height:1.5}"
        "td,th{padding:2px 10px;text-align:left}</style></head>"
        f"<body>{content}</body></html>"
    ).encode()


def _index(base: str) -> bytes:
    return _page(
        "arktrack demo",
        "<h1>arktrack demo</h1><ol>"
        f"<li><a href='{base}/demo/email'>Open the sample email</a> (loads the pixel: an open)"
        "</li><li>Click a link in it (a click)</li>"
        f"<li><a href='{base}/demo/stats'>Watch the numbers</a></li></ol>",
    )


def _landing(base: str, article: str) -> bytes:
    return _page(
        "You made it",
        f"<h1>You reached “{html.escape(article)}”</h1>"
        "<p>The link went through arktrack's <code>/c/</code> redirect, which recorded the "
        f"click. <a href='{base}/demo/stats'>See the numbers</a>.</p>",
    )


def _stats_page(tracker: Tracker, message_id: str) -> bytes:
    tracker.flush(2.0)
    summary = tracker.stats().summary
    rows = "".join(
        f"<tr><td>{name}</td><td>{value}</td></tr>" for name, value in summary.labelled()
    )
    events = "".join(
        f"<tr><td>{format_timestamp(e.timestamp)}</td><td>{e.type.value}</td>"
        f"<td>{html.escape(e.url or '')}</td><td>{html.escape(e.user_agent or '')[:60]}</td>"
        "</tr>"
        for e in tracker.events(message_id=message_id)[-10:]
    )
    return _page(
        "arktrack stats",
        "<h1>All messages in this database</h1>"
        f"<table>{rows}</table><h2>This run's latest events</h2>"
        f"<table><tr><th>time</th><th>type</th><th>url</th><th>user agent</th></tr>{events}"
        "</table><p>This page refreshes every 2 seconds. From a shell: "
        "<code>arktrack stats</code>.</p>",
        refresh=True,
    )
