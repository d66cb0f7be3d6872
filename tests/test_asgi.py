from __future__ import annotations

import pytest

from arktrack import Tracker
from arktrack.asgi import Message, Receive, Scope, Send
from arktrack.pixel import GIF

from .conftest import BASE_URL, SECRET

starlette = pytest.importorskip("starlette")

from starlette.applications import Starlette  # noqa: E402
from starlette.responses import PlainTextResponse  # noqa: E402
from starlette.routing import Mount, Route, WebSocketRoute  # noqa: E402
from starlette.testclient import TestClient  # noqa: E402
from starlette.websockets import WebSocket  # noqa: E402

from arktrack.starlette import ArkTrackingMiddleware, tracking_app  # noqa: E402


async def home(request: object) -> PlainTextResponse:
    return PlainTextResponse("home")


async def echo(websocket: WebSocket) -> None:
    await websocket.accept()
    await websocket.send_text(await websocket.receive_text())
    await websocket.close()


def host_app() -> Starlette:
    return Starlette(routes=[Route("/", home), WebSocketRoute("/ws", echo)])


def path_of(url: str | None, base: str = BASE_URL) -> str:
    assert url is not None
    return url[len(base) :]


@pytest.mark.parametrize("background", [True, False], ids=["background", "inline"])
def test_middleware(background: bool) -> None:
    tracker = Tracker(
        secret_key=SECRET, base_url=BASE_URL, storage="memory://", background=background
    )
    app = host_app()
    app.add_middleware(ArkTrackingMiddleware, tracker=tracker)
    with TestClient(app, follow_redirects=False) as client:
        pixel = client.get(path_of(tracker.open_url("m", "u@example.com")))
        assert pixel.status_code == 200
        assert pixel.content == GIF
        assert pixel.headers["content-type"] == "image/gif"
        url = tracker.click_url("https://example.com/x", message_id="m", recipient="u@example.com")
        click = client.get(path_of(url), headers={"user-agent": "UA/2"})
        assert click.status_code == 302
        assert click.headers["location"] == "https://example.com/x"
        assert client.get("/c/forged.token").status_code == 404
        assert client.head(path_of(tracker.open_url("m", "u@example.com"))).content == b""
        assert client.post(path_of(url)).status_code == 405
        assert client.get("/").text == "home"
        with client.websocket_connect("/ws") as ws:  # non-HTTP scopes pass through
            ws.send_text("hi")
            assert ws.receive_text() == "hi"
    tracker.flush()
    assert [e.type.value for e in tracker.events()] == [
        "email.opened",
        "email.clicked",
        "email.opened",
    ]
    assert tracker.events()[1].user_agent == "UA/2"
    tracker.close()


def test_mounted_sub_app() -> None:
    host = "https://app.example.com"
    tracker = Tracker(secret_key=SECRET, base_url=f"{host}/t", storage="memory://")
    app = Starlette(routes=[Route("/", home), Mount("/t", app=tracking_app(tracker))])
    with TestClient(app, follow_redirects=False) as client:
        assert client.get(path_of(tracker.open_url("m", "u"), host)).content == GIF
        url = tracker.click_url("https://example.com/y", message_id="m", recipient="u")
        assert client.get(path_of(url, host)).headers["location"] == "https://example.com/y"
        assert client.get("/t/other").status_code == 404
        assert client.get("/").text == "home"
    tracker.close()


async def _collect(app: object, scope: Scope) -> list[Message]:
    sent: list[Message] = []

    async def receive() -> Message:
        return {"type": "http.request", "body": b""}

    async def send(message: Message) -> None:
        sent.append(message)

    assert callable(app)
    await app(scope, receive, send)
    return sent


@pytest.mark.anyio
async def test_trusted_proxy_header_over_raw_asgi() -> None:
    tracker = Tracker(
        secret_key=SECRET, base_url=BASE_URL, storage="memory://", trusted_proxies="127.0.0.1"
    )

    async def never(scope: Scope, receive: Receive, send: Send) -> None:
        raise AssertionError("the app must not see tracking requests")

    middleware = ArkTrackingMiddleware(never, tracker=tracker)
    scope: Scope = {
        "type": "http",
        "method": "GET",
        "path": path_of(tracker.open_url("m", "u")),
        "headers": [
            (b"x-forwarded-for", b"198.51.100.30"),
            (b"user-agent", b"UA/3"),
            (b"x-forwarded-for", b"127.0.0.1"),  # repeated headers join, in order
        ],
        "client": ("127.0.0.1", 5000),
    }
    start, body = await _collect(middleware, scope)
    assert start["status"] == 200
    assert body["body"] == GIF
    tracker.flush()
    [event] = tracker.events()
    assert (event.ip_address, event.user_agent) == ("198.51.100.30", "UA/3")
    tracker.close()


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"
