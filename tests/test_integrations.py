"""The example apps in ``integrations/``, driven the way a user would run them: settings
from ``ARKTRACK_*`` variables, requests through each framework's test client, and mail
through a real (if tiny) SMTP server on 127.0.0.1."""

from __future__ import annotations

import email
import email.policy
import importlib.util
import logging
import os
import re
import socketserver
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from email.message import EmailMessage
from pathlib import Path
from types import ModuleType
from urllib.parse import urlsplit

import pytest
from selectolax.lexbor import LexborHTMLParser
from starlette.testclient import TestClient

import arktrack.tracker
from arktrack import ConfigError, EventType, Tracker
from arktrack.pixel import GIF

from .conftest import SECRET

ROOT = Path(__file__).resolve().parents[1]

HTML = """<!DOCTYPE html>
<html>
<head><title>News</title></head>
<body>
  <p>Read <a href="https://example.com/article?id=1&amp;utm_source=email">the article</a>.</p>
  <p><a href='https://example.org/pricing'>Pricing</a>, or
     <a href="mailto:help@example.com">write to us</a>.</p>
</body>
</html>
"""
DESTINATIONS = ["https://example.com/article?id=1&utm_source=email", "https://example.org/pricing"]
TEXT = "Read the article: https://example.com/article?id=1&utm_source=email\n"


def load_example(
    name: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, base_url: str
) -> ModuleType:
    """Import ``integrations/<name>.py`` afresh with its settings in the environment, as
    a server process would on start-up."""
    monkeypatch.delenv("ARKTRACK_TRUSTED_PROXIES", raising=False)
    monkeypatch.setenv("ARKTRACK_SECRET_KEY", SECRET)
    monkeypatch.setenv("ARKTRACK_BASE_URL", base_url)
    monkeypatch.setenv("ARKTRACK_STORAGE", f"sqlite:///{tmp_path / 'arktrack.db'}")
    return import_fresh(name, monkeypatch)


def import_fresh(name: str, monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    module_name = f"integrations.{name}"
    spec = importlib.util.spec_from_file_location(module_name, ROOT / "integrations" / f"{name}.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    # Flask finds the app's root path through sys.modules; the entry goes with the test.
    monkeypatch.setitem(sys.modules, module_name, module)
    spec.loader.exec_module(module)
    return module


def links(html: str) -> list[str]:
    return [node.attributes["href"] or "" for node in LexborHTMLParser(html).css("a[href]")]


def pixels(html: str) -> list[str]:
    return [node.attributes["src"] or "" for node in LexborHTMLParser(html).css("img[src]")]


def local(url: str) -> str:
    """The path and query of ``url``, as a test client wants it."""
    parts = urlsplit(url)
    return parts.path + (f"?{parts.query}" if parts.query else "")


def tracked(tracker: Tracker, message_id: str, recipient: str) -> tuple[list[str], str]:
    """Rewrite the sample email; return its two tracked links and its pixel URL."""
    html = tracker.rewrite_html(HTML, message_id=message_id, recipient=recipient)
    hrefs = links(html)
    assert hrefs[2] == "mailto:help@example.com"
    (pixel,) = pixels(html)
    return hrefs[:2], pixel


# -- Flask ----------------------------------------------------------------------------------


@pytest.fixture
def flask_example(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[ModuleType]:
    module = load_example("flask_app", monkeypatch, tmp_path, "http://localhost")
    yield module
    module.tracker.close()


def test_flask_click_redirects_and_pixel_is_served(flask_example: ModuleType) -> None:
    tracker: Tracker = flask_example.tracker
    hrefs, pixel = tracked(tracker, "msg_1", "ada@example.com")
    assert all(href.startswith("http://localhost/c/") for href in hrefs)
    client = flask_example.app.test_client()

    for href, destination in zip(hrefs, DESTINATIONS, strict=True):
        response = client.get(local(href))
        assert response.status_code == 302
        assert response.headers["Location"] == destination

    response = client.get(local(pixel))
    assert response.status_code == 200
    assert response.mimetype == "image/gif"
    assert response.data == GIF
    assert "no-cache" in response.headers["Cache-Control"]


def test_flask_rejects_a_tampered_click(flask_example: ModuleType) -> None:
    hrefs, _ = tracked(flask_example.tracker, "msg_1", "ada@example.com")
    path = local(hrefs[0])
    token = path.removeprefix("/c/")
    forged = "/c/" + ("A" if token[0] != "A" else "B") + token[1:]
    response = flask_example.app.test_client().get(forged)
    assert response.status_code == 404
    assert "Location" not in response.headers


def test_flask_routes_of_the_app_still_work(flask_example: ModuleType) -> None:
    client = flask_example.app.test_client()
    response = client.get("/")
    assert response.status_code == 200
    assert "Hello from the app" in response.text
    response = client.get("/stats")
    assert response.status_code == 200
    assert response.json == {
        "opens": 0,
        "clicks": 0,
        "delivered": 0,
        "open_rate": 0.0,
        "click_rate": 0.0,
        "click_to_open_rate": 0.0,
    }
    assert client.get("/stats?start=2024-02-01&end=2024-01-01").status_code == 400
    # Only /o/<token> and /c/<token> are arktrack's; a near miss is the app's own 404.
    response = client.get("/c")
    assert response.status_code == 404
    assert "tracking link" not in response.text


def test_flask_stats_reflect_the_events(flask_example: ModuleType) -> None:
    tracker: Tracker = flask_example.tracker
    ada_links, ada_pixel = tracked(tracker, "msg_1", "ada@example.com")
    _, bob_pixel = tracked(tracker, "msg_1", "bob@example.com")
    tracked(tracker, "msg_2", "carol@example.com")
    client = flask_example.app.test_client()
    for url in (ada_pixel, ada_pixel, ada_links[1], bob_pixel):
        assert client.get(local(url)).status_code in (200, 302)
    assert tracker.flush(10)

    assert client.get("/stats").json == {
        "opens": 2,
        "clicks": 1,
        "delivered": 3,
        "open_rate": 66.67,
        "click_rate": 33.33,
        "click_to_open_rate": 50.0,
    }
    (click,) = tracker.events(type=EventType.CLICKED)
    assert (click.email_id, click.to, click.url) == ("msg_1", "ada@example.com", DESTINATIONS[1])
    opens = tracker.events(type=EventType.OPENED)
    assert sorted(event.to or "" for event in opens) == [
        "ada@example.com",
        "ada@example.com",
        "bob@example.com",
    ]


def test_flask_click_hook_logs_the_webhook_payload(
    flask_example: ModuleType, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger=flask_example.app.logger.name)
    hrefs, _ = tracked(flask_example.tracker, "msg_1", "ada@example.com")
    flask_example.app.test_client().get(local(hrefs[0]))
    assert flask_example.tracker.flush(10)
    (line,) = [r.getMessage() for r in caplog.records if "email clicked" in r.getMessage()]
    assert '"type": "email.clicked"' in line
    assert '"to": "ada@example.com"' in line
    assert f'"url": "{DESTINATIONS[0]}"' in line


def test_flask_example_says_which_setting_is_missing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ARKTRACK_SECRET_KEY", raising=False)
    monkeypatch.setenv("ARKTRACK_BASE_URL", "http://localhost")
    monkeypatch.setenv("ARKTRACK_STORAGE", "memory://")
    with pytest.raises(ConfigError) as raised:
        import_fresh("flask_app", monkeypatch)
    assert raised.value.setting == "ARKTRACK_SECRET_KEY"


# -- Starlette ------------------------------------------------------------------------------

# (app object, base URL): the middleware serves base_url's path wherever it is; the mount
# sits at that path, including the root.
STARLETTE_VARIANTS = [
    ("app", "http://testserver"),
    ("app", "http://testserver/t"),
    ("mounted_app", "http://testserver"),
    ("mounted_app", "http://testserver/t"),
]


@dataclass
class StarletteExample:
    module: ModuleType
    client: TestClient
    base_url: str

    @property
    def tracker(self) -> Tracker:
        tracker: Tracker = self.module.tracker
        return tracker


@pytest.fixture(params=STARLETTE_VARIANTS, ids=lambda v: f"{v[0]}-{urlsplit(v[1]).path or '/'}")
def starlette_example(
    request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> Iterator[StarletteExample]:
    attribute, base_url = request.param
    module = load_example("starlette_app", monkeypatch, tmp_path, base_url)
    try:
        # The context runs the lifespan, as uvicorn does.
        with TestClient(getattr(module, attribute), follow_redirects=False) as client:
            yield StarletteExample(module, client, base_url)
    finally:
        module.tracker.close()


def test_starlette_click_redirects_and_pixel_is_served(
    starlette_example: StarletteExample,
) -> None:
    hrefs, pixel = tracked(starlette_example.tracker, "msg_1", "ada@example.com")
    assert all(href.startswith(f"{starlette_example.base_url}/c/") for href in hrefs)
    client = starlette_example.client

    for href, destination in zip(hrefs, DESTINATIONS, strict=True):
        response = client.get(local(href))
        assert response.status_code == 302
        assert response.headers["location"] == destination

    response = client.get(local(pixel))
    assert response.status_code == 200
    assert response.headers["content-type"] == "image/gif"
    assert response.content == GIF
    assert "no-cache" in response.headers["cache-control"]

    token = urlsplit(hrefs[0]).path.rsplit("/", 1)[1]
    forged = local(hrefs[0]).replace(token, ("A" if token[0] != "A" else "B") + token[1:])
    response = client.get(forged)
    assert response.status_code == 404
    assert "location" not in response.headers


def test_starlette_routes_of_the_app_still_work(starlette_example: StarletteExample) -> None:
    client = starlette_example.client
    response = client.get("/")
    assert response.status_code == 200
    assert "Hello from the app" in response.text
    response = client.get("/stats")
    assert response.status_code == 200
    assert response.json()["delivered"] == 0
    assert client.get("/stats?start=yesterday").status_code == 400
    assert client.get("/nowhere").status_code == 404


def test_starlette_stats_reflect_the_events(starlette_example: StarletteExample) -> None:
    tracker = starlette_example.tracker
    ada_links, ada_pixel = tracked(tracker, "msg_1", "ada@example.com")
    _, bob_pixel = tracked(tracker, "msg_2", "bob@example.com")
    client = starlette_example.client
    for url in (ada_pixel, ada_links[0], ada_links[0], bob_pixel):
        assert client.get(local(url)).status_code in (200, 302)
    assert tracker.flush(10)

    assert client.get("/stats").json() == {
        "opens": 2,
        "clicks": 1,
        "delivered": 2,
        "open_rate": 100.0,
        "click_rate": 50.0,
        "click_to_open_rate": 50.0,
    }
    clicks = tracker.events(type=EventType.CLICKED)
    assert [(e.email_id, e.to, e.url) for e in clicks] == [
        ("msg_1", "ada@example.com", DESTINATIONS[0])
    ] * 2


def test_starlette_shutdown_drains_pending_events(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    module = load_example("starlette_app", monkeypatch, tmp_path, "http://testserver")
    tracker: Tracker = module.tracker
    caplog.set_level(logging.INFO, logger=module.__name__)
    release = threading.Event()
    # Holds the writer thread past the moment the app starts shutting down: the events
    # can only be stored by then if the shutdown waits for them.
    tracker.on_open(lambda event: release.wait(10))
    hrefs, pixel = tracked(tracker, "msg_1", "ada@example.com")
    timer = threading.Timer(0.3, release.set)
    try:
        with TestClient(module.app, follow_redirects=False) as client:
            client.get(local(pixel))
            client.get(local(hrefs[1]))
            assert not tracker.flush(0.05)
            timer.start()
        assert [(e.type, e.to) for e in tracker.events()] == [
            (EventType.OPENED, "ada@example.com"),
            (EventType.CLICKED, "ada@example.com"),
        ]
        assert any(DESTINATIONS[1] in r.getMessage() for r in caplog.records)
    finally:
        release.set()
        timer.cancel()
        tracker.close()


# -- SMTP -----------------------------------------------------------------------------------


@dataclass
class Delivery:
    sender: str
    recipients: list[str]
    data: bytes

    def message(self) -> EmailMessage:
        parsed = email.message_from_bytes(self.data, policy=email.policy.default)
        assert isinstance(parsed, EmailMessage)
        return parsed


@dataclass
class Mailbox:
    host: str
    port: int
    deliveries: list[Delivery] = field(default_factory=list)


_ADDRESS = re.compile(rb"<([^>]*)>")
# Bounds on what one session may send, so a confused client cannot keep the test busy.
MAX_COMMANDS = 50
MAX_DATA_LINES = 100_000


class _SmtpSession(socketserver.StreamRequestHandler):
    """Just enough SMTP (RFC 5321) for smtplib: EHLO/HELO, MAIL, RCPT, DATA, RSET, NOOP
    and QUIT, with no extensions announced."""

    # A stalled client ends its session instead of hanging the test.
    timeout = 10.0
    mailbox: Mailbox

    def handle(self) -> None:
        self._reply(b"220 127.0.0.1 test SMTP ready")
        sender: str | None = None
        recipients: list[str] = []
        for _ in range(MAX_COMMANDS):
            line = self.rfile.readline(1024)
            if not line:
                return
            verb, _, argument = line.rstrip(b"\r\n").partition(b" ")
            verb = verb.upper()
            if verb in (b"EHLO", b"HELO"):
                self._reply(b"250 127.0.0.1")
            elif verb == b"MAIL":
                sender, recipients = _address(argument), []
                self._reply(b"250 OK")
            elif verb == b"RCPT":
                if sender is None:
                    self._reply(b"503 MAIL first")
                    continue
                recipients.append(_address(argument))
                self._reply(b"250 OK")
            elif verb == b"DATA":
                if sender is None or not recipients:
                    self._reply(b"503 MAIL and RCPT first")
                    continue
                self._reply(b"354 End data with <CR><LF>.<CR><LF>")
                self.mailbox.deliveries.append(Delivery(sender, recipients, self._data()))
                sender, recipients = None, []
                self._reply(b"250 OK queued")
            elif verb == b"RSET":
                sender, recipients = None, []
                self._reply(b"250 OK")
            elif verb == b"NOOP":
                self._reply(b"250 OK")
            elif verb == b"QUIT":
                self._reply(b"221 Bye")
                return
            else:
                self._reply(b"502 Command not implemented")

    def _data(self) -> bytes:
        lines: list[bytes] = []
        for _ in range(MAX_DATA_LINES):
            line = self.rfile.readline()
            if line in (b".\r\n", b""):
                break
            # Undo the sender's dot-stuffing; store with the local line ending, as a
            # mailbox file would.
            lines.append(line.removeprefix(b".").replace(b"\r\n", b"\n"))
        return b"".join(lines)

    def _reply(self, line: bytes) -> None:
        self.wfile.write(line + b"\r\n")


def _address(argument: bytes) -> str:
    found = _ADDRESS.search(argument)
    return found[1].decode() if found else ""


@pytest.fixture
def mailbox() -> Iterator[Mailbox]:
    box = Mailbox("127.0.0.1", 0)
    handler = type("Session", (_SmtpSession,), {"mailbox": box})
    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), handler)
    box.port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    try:
        yield box
    finally:
        server.shutdown()
        server.server_close()  # waits for open sessions, each bounded by its timeout
        thread.join(10)


@pytest.fixture
def mailer(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> ModuleType:
    return load_example("smtp_mailer", monkeypatch, tmp_path, "http://localhost")


def sent_message(mailbox: Mailbox, recipient: str) -> EmailMessage:
    (delivery,) = mailbox.deliveries
    assert delivery.sender == "news@example.com"
    assert delivery.recipients == [recipient]
    return delivery.message()


def html_and_text(message: EmailMessage) -> tuple[str, str]:
    assert message.get_content_type() == "multipart/alternative"
    html_part = message.get_body(("html",))
    text_part = message.get_body(("plain",))
    assert html_part is not None
    assert text_part is not None
    return html_part.get_content(), text_part.get_content()


def test_mailer_sends_tracked_html_and_untouched_text(
    mailer: ModuleType, mailbox: Mailbox, sqlite_tracker: Tracker
) -> None:
    tracker = sqlite_tracker
    message_id = mailer.send_tracked(
        sender="news@example.com",
        recipient="ada@example.com",
        subject="What's new",
        text=TEXT,
        html=HTML,
        host=mailbox.host,
        port=mailbox.port,
        tracker=tracker,
    )
    message = sent_message(mailbox, "ada@example.com")
    assert message["Subject"] == "What's new"
    assert message["Message-ID"] == f"<{message_id}>"
    html, text = html_and_text(message)
    assert text == TEXT

    hrefs = links(html)
    assert hrefs[2] == "mailto:help@example.com"
    ref = tracker.codec.recipient_ref("ada@example.com")
    prefix = f"{tracker.settings.base_url}/c/"
    for href, destination in zip(hrefs[:2], DESTINATIONS, strict=True):
        assert href.startswith(prefix)
        click = tracker.codec.load_click(href.removeprefix(prefix))
        assert (click.message_id, click.recipient_ref, click.url) == (message_id, ref, destination)
    (pixel,) = pixels(html)
    opened = tracker.codec.load_open(pixel.removeprefix(f"{tracker.settings.base_url}/o/"))
    assert (opened.message_id, opened.recipient_ref) == (message_id, ref)
    # Tokens are deterministic: what arrived is exactly what rewrite_html makes, so nothing
    # but the links and the pixel changed on the way.
    assert html == tracker.rewrite_html(HTML, message_id=message_id, recipient="ada@example.com")
    assert tracker.stats().summary.delivered == 1


UNSUBSCRIBE_LINE = "Unsubscribe: https://example.com/unsubscribe?u=1\n"


def test_mailer_tracks_the_text_part_with_track_text(
    mailer: ModuleType, mailbox: Mailbox, sqlite_tracker: Tracker
) -> None:
    tracker = sqlite_tracker
    message_id = mailer.send_tracked(
        sender="news@example.com",
        recipient="ada@example.com",
        subject="What's new",
        text=TEXT + UNSUBSCRIBE_LINE,
        html=HTML,
        host=mailbox.host,
        port=mailbox.port,
        tracker=tracker,
        track_text=True,
    )
    html, text = html_and_text(sent_message(mailbox, "ada@example.com"))
    click = tracker.click_url(DESTINATIONS[0], message_id=message_id, recipient="ada@example.com")
    assert click is not None
    # The article link is tracked; the way out stays as written.
    assert text == f"Read the article: {click}\n{UNSUBSCRIBE_LINE}"
    token = click.removeprefix(f"{tracker.settings.base_url}/c/")
    clicked = tracker.codec.load_click(token)
    ref = tracker.codec.recipient_ref("ada@example.com")
    assert (clicked.message_id, clicked.recipient_ref, clicked.url) == (
        message_id,
        ref,
        DESTINATIONS[0],
    )
    assert html == tracker.rewrite_html(HTML, message_id=message_id, recipient="ada@example.com")
    assert tracker.stats().summary.delivered == 1

    response = tracker.handler.handle(
        "GET", "c", token, user_agent=None, forwarded_for=None, peer="127.0.0.1"
    )
    assert (response.status, dict(response.headers)["Location"]) == (302, DESTINATIONS[0])


def test_mailer_links_work_in_the_flask_example(
    mailer: ModuleType, mailbox: Mailbox, flask_example: ModuleType
) -> None:
    tracker: Tracker = flask_example.tracker
    message_id = mailer.send_tracked(
        sender="news@example.com",
        recipient="bob@example.com",
        subject="Hello",
        text=TEXT,
        html=HTML,
        host=mailbox.host,
        port=mailbox.port,
        message_id="newsletter-42@example.com",
        tracker=tracker,
    )
    assert message_id == "newsletter-42@example.com"
    html, _ = html_and_text(sent_message(mailbox, "bob@example.com"))
    client = flask_example.app.test_client()
    (pixel,) = pixels(html)
    assert client.get(local(pixel)).data == GIF
    for href, destination in zip(links(html)[:2], DESTINATIONS, strict=True):
        assert client.get(local(href)).headers["Location"] == destination
    assert tracker.flush(10)

    summary = client.get("/stats").json
    assert summary is not None
    assert (summary["delivered"], summary["opens"], summary["clicks"]) == (1, 1, 1)
    assert {(e.email_id, e.to) for e in tracker.events()} == {(message_id, "bob@example.com")}


@pytest.fixture
def env_default_tracker(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[[], Tracker]]:
    """Start and end the test without the process-wide tracker the mailer builds from
    the environment, so the test's settings are the ones it reads."""
    monkeypatch.setattr(arktrack.tracker, "_default", None)
    yield arktrack.tracker.default_tracker
    if arktrack.tracker._default is not None:
        arktrack.tracker._default.close()


def test_mailer_uses_the_environment_without_a_tracker(
    mailer: ModuleType,
    mailbox: Mailbox,
    env_default_tracker: Callable[[], Tracker],
    tmp_path: Path,
) -> None:
    message_id = mailer.send_tracked(
        sender="news@example.com",
        recipient="carol@example.com",
        subject="Hello",
        text=TEXT,
        html=HTML,
        host=mailbox.host,
        port=mailbox.port,
    )
    html, _ = html_and_text(sent_message(mailbox, "carol@example.com"))
    assert all(href.startswith("http://localhost/c/") for href in links(html)[:2])

    reader = Tracker(
        secret_key=SECRET,
        base_url="http://localhost",
        storage=f"sqlite:///{tmp_path / 'arktrack.db'}",
    )
    try:
        click = reader.codec.load_click(links(html)[0].removeprefix("http://localhost/c/"))
        assert (click.message_id, click.url) == (message_id, DESTINATIONS[0])
        assert reader.stats().summary.delivered == 1
    finally:
        reader.close()
    assert env_default_tracker().settings.base_url == "http://localhost"


@pytest.mark.parametrize("track_text", [False, True], ids=["html-only", "track-text"])
def test_mailer_command_line(mailbox: Mailbox, tmp_path: Path, track_text: bool) -> None:
    (tmp_path / "email.html").write_text(HTML)
    (tmp_path / "email.txt").write_text(TEXT)
    db = tmp_path / "arktrack.db"
    env = {key: value for key, value in os.environ.items() if not key.startswith("ARKTRACK_")}
    env |= {
        "ARKTRACK_SECRET_KEY": SECRET,
        "ARKTRACK_BASE_URL": "http://localhost",
        "ARKTRACK_STORAGE": f"sqlite:///{db}",
    }
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "integrations.smtp_mailer",
            "--smtp-host",
            mailbox.host,
            "--smtp-port",
            str(mailbox.port),
            "--sender",
            "news@example.com",
            "--to",
            "dan@example.com",
            "--subject",
            "From the shell",
            "--html",
            str(tmp_path / "email.html"),
            "--text",
            str(tmp_path / "email.txt"),
            "--message-id",
            "cli-1@example.com",
            *(["--track-text"] if track_text else []),
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout == "sent cli-1@example.com to dan@example.com\n"
    html, text = html_and_text(sent_message(mailbox, "dan@example.com"))
    reader = Tracker(secret_key=SECRET, base_url="http://localhost", storage=f"sqlite:///{db}")
    try:
        click = reader.click_url(
            DESTINATIONS[0], message_id="cli-1@example.com", recipient="dan@example.com"
        )
        assert text == (f"Read the article: {click}\n" if track_text else TEXT)
        assert html == reader.rewrite_html(
            HTML, message_id="cli-1@example.com", recipient="dan@example.com"
        )
        assert reader.stats().summary.delivered == 1
    finally:
        reader.close()
