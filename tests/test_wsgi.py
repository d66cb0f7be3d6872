from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import pytest

from arktrack import ArkTracking, Tracker
from arktrack.pixel import GIF

from .conftest import BASE_URL, SECRET

flask = pytest.importorskip("flask")


def token_path(url: str | None) -> str:
    assert url is not None
    return url[len(BASE_URL) :]


def make_flask_app() -> Any:
    app = flask.Flask(__name__)

    @app.get("/")
    def index() -> str:
        return "home"

    @app.get("/c/not-a-token-route")
    def shadowed() -> str:  # pragma: no cover - must never be reached
        return "app"

    return app


def test_flask_serves_pixel_click_and_passes_the_rest(tracker: Tracker) -> None:
    app = make_flask_app()
    app.wsgi_app = ArkTracking(app, tracker=tracker)  # type: ignore[method-assign]
    client = app.test_client()

    pixel = client.get(token_path(tracker.open_url("m", "u@example.com")))
    assert pixel.status_code == 200
    assert pixel.data == GIF
    assert pixel.headers["Content-Type"] == "image/gif"
    assert "no-store" in pixel.headers["Cache-Control"]

    url = tracker.click_url(
        "https://example.com/landing?a=1", message_id="m", recipient="u@example.com"
    )
    click = client.get(token_path(url), headers={"User-Agent": "UA/1"})
    assert click.status_code == 302
    assert click.headers["Location"] == "https://example.com/landing?a=1"

    bad = client.get("/c/not-a-token-route")
    assert bad.status_code == 404
    assert "Location" not in bad.headers
    assert b"not valid" in bad.data

    assert client.get("/").data == b"home"
    assert client.get("/nope").status_code == 404

    head = client.head(token_path(tracker.open_url("m", "u@example.com")))
    assert head.status_code == 200
    assert head.data == b""

    assert client.post(token_path(url)).status_code == 405
    tracker.flush()
    assert [e.type.value for e in tracker.events()] == [
        "email.opened",
        "email.clicked",
        "email.opened",
    ]
    assert tracker.events()[1].user_agent == "UA/1"


def test_garbage_pixel_token_still_gets_the_gif(tracker: Tracker) -> None:
    app = make_flask_app()
    app.wsgi_app = ArkTracking(app, tracker=tracker)  # type: ignore[method-assign]
    response = app.test_client().get("/o/garbage%00%ff")
    assert response.status_code == 200
    assert response.data == GIF
    tracker.flush()
    assert tracker.events() == []


def test_applying_twice_wraps_once_and_keeps_original(tracker: Tracker) -> None:
    app = make_flask_app()
    original = app.wsgi_app
    app.wsgi_app = ArkTracking(app, tracker=tracker)  # type: ignore[method-assign]
    app.wsgi_app = ArkTracking(app)  # type: ignore[method-assign]
    assert isinstance(app.wsgi_app, ArkTracking)
    assert app.wsgi_app.app == original
    assert app.wsgi_app.tracker is tracker
    assert app.extensions["arktrack"] is tracker
    assert app.test_client().get("/").data == b"home"


def test_flask_config_then_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ARKTRACK_SECRET_KEY", SECRET)
    monkeypatch.setenv("ARKTRACK_BASE_URL", "https://env.example.com")
    app = make_flask_app()
    app.config["ARKTRACK_BASE_URL"] = "https://config.example.com/t"
    app.config["ARKTRACK_STORAGE"] = "memory://"
    app.config["ARKTRACK_TRUSTED_PROXIES"] = ["10.0.0.0/8", "127.0.0.1"]
    app.wsgi_app = ArkTracking(app)  # type: ignore[method-assign]
    tracker = app.wsgi_app.tracker
    assert tracker.settings.base_url == "https://config.example.com/t"
    assert len(tracker.settings.trusted_proxies) == 2
    client = app.test_client()
    url = tracker.open_url("m", "u@example.com")
    assert client.get(url.removeprefix("https://config.example.com")).data == GIF

    from arktrack.flask import current_tracker

    with app.app_context():
        assert current_tracker() is tracker
    tracker.close()


def test_flask_without_settings_names_the_missing_one(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ARKTRACK_SECRET_KEY", raising=False)
    from arktrack import ConfigError

    with pytest.raises(ConfigError, match="ARKTRACK_SECRET_KEY"):
        ArkTracking(make_flask_app())


def plain_app(environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [environ.get("PATH_INFO", "").encode()]


def test_any_wsgi_callable_with_prefix_and_proxies() -> None:
    tracker = Tracker(
        secret_key=SECRET,
        base_url="https://app.example.com/t",
        storage="memory://",
        trusted_proxies=["127.0.0.1"],
    )
    wrapped = ArkTracking(plain_app, tracker=tracker)
    assert ArkTracking(wrapped).app is plain_app  # applying twice wraps once

    from werkzeug.test import Client

    client = Client(wrapped)
    open_path = tracker.open_url("m", "u@example.com").removeprefix("https://app.example.com")
    response = client.get(
        open_path,
        headers={"X-Forwarded-For": "198.51.100.20"},
        environ_base={"REMOTE_ADDR": "127.0.0.1"},
    )
    assert response.data == GIF
    # Outside the prefix, /o/... belongs to the app.
    assert client.get(open_path.removeprefix("/t")).data == open_path.removeprefix("/t").encode()
    tracker.flush()
    assert tracker.events()[0].ip_address == "198.51.100.20"
    tracker.close()


def test_middleware_above_cannot_change_the_shared_responses(tracker: Tracker) -> None:
    from werkzeug.test import Client

    from arktrack.handler import PIXEL

    wrapped = ArkTracking(plain_app, tracker=tracker)

    def stamping(environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        def start(status: str, headers: list[tuple[str, str]]) -> Any:
            headers.append(("X-Stamp", "1"))  # a common pattern in WSGI middleware
            return start_response(status, headers)

        return wrapped(environ, start)

    before = list(PIXEL.headers)
    client = Client(stamping)
    for _ in range(3):
        response = client.get("/o/anything")
        assert response.headers.getlist("X-Stamp") == ["1"]
    assert PIXEL.headers == before
