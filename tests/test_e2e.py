"""Real servers on 127.0.0.1, as subprocesses: gunicorn (two sync workers) serving the
Flask example, uvicorn serving the Starlette example, and ``arktrack demo``. Each is
stopped with SIGTERM, as a deployment would, and the SQLite file must then hold every
hit it answered: no event may be lost on the way to disk or at shutdown."""

from __future__ import annotations

import contextlib
import json
import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO
from urllib.parse import urlsplit

import httpx
import pytest
from selectolax.lexbor import LexborHTMLParser

from arktrack import EventType, Tracker
from arktrack.pixel import GIF

from .conftest import SECRET, free_port

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
# Generous: another job may be keeping both cores busy. Every wait below is bounded.
START_TIMEOUT = 30.0
STOP_TIMEOUT = 45.0
BURST = 200
BURST_THREADS = 4

HTML = """<html><body>
<p><a href="https://example.com/welcome?from=email&amp;id=7">Welcome</a></p>
<p><a href="https://example.org/docs">Docs</a></p>
</body></html>
"""
DESTINATIONS = ["https://example.com/welcome?from=email&id=7", "https://example.org/docs"]


def clean_env(**settings: str) -> dict[str, str]:
    """This process's environment without any ARKTRACK_* it may carry, plus ``settings``."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("ARKTRACK_")}
    env.update(settings)
    return env


class Server:
    """A server subprocess in its own process group, so that a teardown can stop it and
    every worker it forked."""

    def __init__(
        self,
        argv: Sequence[str | Path],
        *,
        cwd: Path,
        env: dict[str, str],
        log: Path,
        pipe_stdout: bool = False,
    ) -> None:
        self.log = log
        with log.open("wb") as out:
            self.process = subprocess.Popen(
                [str(arg) for arg in argv],
                cwd=cwd,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE if pipe_stdout else out,
                stderr=out,
                start_new_session=True,
            )

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def wait_ready(self, url: str, timeout: float = START_TIMEOUT) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                pytest.fail(
                    f"server exited ({self.process.returncode}) before answering:\n" + self.output()
                )
            try:
                if httpx.get(url, timeout=2.0).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        pytest.fail(f"no answer from {url} within {timeout} s:\n{self.output()}")

    def terminate(self, timeout: float = STOP_TIMEOUT) -> int:
        """SIGTERM, as a service manager sends it; the exit code once it has stopped."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            pytest.fail(f"still running {timeout} s after SIGTERM:\n{self.output()}")

    def kill(self) -> None:
        if self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(10)
        if self.process.stdout is not None:
            self.process.stdout.close()


@pytest.fixture
def launch(tmp_path: Path) -> Iterator[Callable[..., Server]]:
    started: list[Server] = []

    def start(
        argv: Sequence[str | Path],
        *,
        env: dict[str, str],
        log: str,
        cwd: Path = ROOT,
        pipe_stdout: bool = False,
    ) -> Server:
        server = Server(argv, cwd=cwd, env=env, log=tmp_path / log, pipe_stdout=pipe_stdout)
        started.append(server)
        return server

    yield start
    for server in started:
        server.kill()


@dataclass(frozen=True)
class Sent:
    message_id: str
    recipient: str
    links: list[str]
    pixel: str


def send(tracker: Tracker, message_id: str, recipient: str) -> Sent:
    html = tracker.rewrite_html(HTML, message_id=message_id, recipient=recipient)
    tree = LexborHTMLParser(html)
    links = [node.attributes["href"] or "" for node in tree.css("a[href]")]
    (pixel,) = [node.attributes["src"] or "" for node in tree.css("img[src]")]
    return Sent(message_id, recipient, links, pixel)


def tampered(url: str) -> str:
    # The first character of a token is payload; changing it can never leave the
    # signature valid (a last character can: base64 has spare bits there).
    head, token = url.rsplit("/", 1)
    return f"{head}/{'A' if token[0] != 'A' else 'B'}{token[1:]}"


@dataclass(frozen=True)
class Campaign:
    """Three messages: ada opens once and clicks, bob's pixel is hit by the burst, carol
    does nothing."""

    ada: Sent
    bob: Sent
    carol: Sent

    @classmethod
    def send(cls, tracker: Tracker) -> Campaign:
        return cls(
            send(tracker, "msg_ada", "ada@example.com"),
            send(tracker, "msg_bob", "bob@example.com"),
            send(tracker, "msg_carol", "carol@example.com"),
        )


# The stats of a Campaign once exercise() has run.
SUMMARY = {
    "delivered": 3,
    "opens": 2,
    "clicks": 1,
    "open_rate": 66.67,
    "click_rate": 33.33,
    "click_to_open_rate": 50.0,
}


def burst(url: str, count: int = BURST, threads: int = BURST_THREADS) -> list[str]:
    """GET ``url`` ``count`` times from ``threads`` clients at once, each hit with its own
    User-Agent; returns the agents of the hits answered with the pixel."""
    agents = [f"burst-{n}" for n in range(count)]
    answered: list[str] = []
    lock = threading.Lock()

    def worker(mine: list[str]) -> None:
        with httpx.Client(timeout=30.0) as client:
            for agent in mine:
                response = client.get(url, headers={"User-Agent": agent})
                if response.status_code == 200 and response.content == GIF:
                    with lock:
                        answered.append(agent)

    pool = [threading.Thread(target=worker, args=(agents[n::threads],)) for n in range(threads)]
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join(120)
    assert not any(thread.is_alive() for thread in pool)
    assert sorted(answered) == sorted(agents)
    return agents


def exercise(base: str, campaign: Campaign) -> list[str]:
    """Everything a recipient and a user of the app can do; returns the burst's agents."""
    with httpx.Client(base_url=base, timeout=30.0, follow_redirects=False) as client:
        response = client.get(campaign.ada.pixel, headers={"User-Agent": "ada-mail"})
        assert response.status_code == 200
        assert response.headers["content-type"] == "image/gif"
        assert response.content == GIF
        assert "no-cache" in response.headers["cache-control"]

        response = client.get(campaign.ada.links[1], headers={"User-Agent": "ada-browser"})
        assert response.status_code == 302
        assert response.headers["location"] == DESTINATIONS[1]

        response = client.get(tampered(campaign.ada.links[0]))
        assert response.status_code == 404
        assert "location" not in response.headers

        response = client.get("/")
        assert response.status_code == 200
        assert "Hello from the app" in response.text
        response = client.get("/stats")
        assert response.status_code == 200
        assert set(response.json()) == set(SUMMARY)

    return burst(campaign.bob.pixel)


def wait_for_stats(base: str, expected: dict[str, float], timeout: float = 15.0) -> None:
    """The app's own /stats route, polled until the background writer has caught up."""
    deadline = time.monotonic() + timeout
    seen: object = None
    while time.monotonic() < deadline:
        seen = httpx.get(f"{base}/stats", timeout=10.0).json()
        if seen == expected:
            return
        time.sleep(0.2)
    pytest.fail(f"/stats never showed {expected}; last: {seen}")


def check_storage(db: Path, base: str, campaign: Campaign, agents: list[str]) -> None:
    """Every hit answered is stored exactly once, with the recipient resolved."""
    reader = Tracker(secret_key=SECRET, base_url=base, storage=f"sqlite:///{db}")
    try:
        opens = reader.events(type=EventType.OPENED)
        assert Counter((e.email_id, e.to, e.user_agent) for e in opens) == Counter(
            [("msg_ada", "ada@example.com", "ada-mail")]
            + [("msg_bob", "bob@example.com", agent) for agent in agents]
        )
        assert {e.ip_address for e in opens} == {"127.0.0.1"}
        clicks = reader.events(type=EventType.CLICKED)
        assert [(e.email_id, e.to, e.url, e.user_agent) for e in clicks] == [
            ("msg_ada", "ada@example.com", DESTINATIONS[1], "ada-browser")
        ]
        summary = reader.stats().summary
        assert {name: getattr(summary, name) for name in SUMMARY} == SUMMARY
    finally:
        reader.close()


def prepare(tmp_path: Path, path: str = "") -> tuple[int, str, Path, Campaign]:
    """A port, the base URL on it, the database and the emails, sent before the server
    starts (which also creates the tables: see test_gunicorn_first_start_on_empty_database
    for two workers doing that at once)."""
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    db = tmp_path / "arktrack.db"
    sender = Tracker(secret_key=SECRET, base_url=base + path, storage=f"sqlite:///{db}")
    try:
        campaign = Campaign.send(sender)
    finally:
        sender.close()
    return port, base, db, campaign


def app_env(base_url: str, db: Path, **extra: str) -> dict[str, str]:
    return clean_env(
        ARKTRACK_SECRET_KEY=SECRET,
        ARKTRACK_BASE_URL=base_url,
        ARKTRACK_STORAGE=f"sqlite:///{db}",
        **extra,
    )


def importable(directory: Path) -> str:
    """A PYTHONPATH that adds ``directory`` to whatever this process was given."""
    return os.pathsep.join(filter(None, [str(directory), os.environ.get("PYTHONPATH")]))


def gunicorn(port: int, app: str, *extra: str | Path) -> list[str | Path]:
    from gunicorn.config import KNOWN_SETTINGS

    # Newer gunicorn opens a control socket at one path in the home directory, shared by
    # every instance: the tests keep out of it (and out of each other's way).
    if any(setting.name == "control_socket_disable" for setting in KNOWN_SETTINGS):
        extra = ("--no-control-socket", *extra)
    return [BIN / "gunicorn", "-w", "2", "-k", "sync", "-b", f"127.0.0.1:{port}", *extra, app]


def uvicorn(port: int, app: str) -> list[str | Path]:
    return [BIN / "uvicorn", "--host", "127.0.0.1", "--port", str(port), app]


def served_by(access_log: Path, path_prefix: str) -> set[str]:
    """The worker pids gunicorn's access log shows answering requests under a path."""
    pids = set()
    for line in access_log.read_text().splitlines():
        pid, _, path = line.partition(" ")
        if path.startswith(path_prefix):
            pids.add(pid)
    return pids


def wait_for_both_workers(
    server: Server, base: str, access_log: Path, timeout: float = START_TIMEOUT
) -> None:
    # Ready means one worker answered; the burst is only a two-writer test once the
    # other has too.
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        server.wait_ready(f"{base}/", timeout=deadline - time.monotonic())
        if len(served_by(access_log, "/")) >= 2:
            return
        time.sleep(0.05)
    pytest.fail(f"the second gunicorn worker never answered within {timeout} s")


# -- gunicorn + Flask ---------------------------------------------------------------------


def test_gunicorn_two_workers_store_every_hit(
    tmp_path: Path, launch: Callable[..., Server]
) -> None:
    port, base, db, campaign = prepare(tmp_path)
    access_log = tmp_path / "access.log"
    server = launch(
        gunicorn(
            port,
            "integrations.flask_app:app",
            "--access-logfile",
            access_log,
            "--access-logformat",
            "%(p)s %(U)s",
        ),
        env=app_env(base, db),
        log="gunicorn.log",
    )
    server.wait_ready(f"{base}/")
    wait_for_both_workers(server, base, access_log)

    agents = exercise(base, campaign)
    wait_for_stats(base, SUMMARY)
    assert len(served_by(access_log, "/o/")) == 2, "both workers must have written events"

    assert server.terminate() == 0, server.output()
    check_storage(db, base, campaign, agents)


# -- uvicorn + Starlette --------------------------------------------------------------------


@pytest.mark.parametrize(("app", "path"), [("app", ""), ("mounted_app", "/t")])
def test_uvicorn_starlette_stores_every_hit(
    tmp_path: Path, launch: Callable[..., Server], app: str, path: str
) -> None:
    port, base, db, campaign = prepare(tmp_path, path)
    server = launch(
        uvicorn(port, f"integrations.starlette_app:{app}"),
        env=app_env(base + path, db),
        log="uvicorn.log",
    )
    server.wait_ready(f"{base}/")

    agents = exercise(base, campaign)
    wait_for_stats(base, SUMMARY)

    # uvicorn re-raises the SIGTERM it handled once it has shut down cleanly.
    assert server.terminate() in (0, -signal.SIGTERM), server.output()
    assert "Application shutdown complete" in server.output()
    check_storage(db, base, campaign, agents)


# -- events still queued when SIGTERM arrives -----------------------------------------------

# A hook that keeps the writer thread busy for a while after the first open, so that the
# hits after it are still queued when SIGTERM arrives, as they would be behind a slow
# database or a webhook call.
HOLD_HOOK = """
import threading
import time

_held = threading.Event()


def hold_the_writer(event):
    if not _held.is_set():
        _held.set()
        time.sleep({hold})
"""

FLASK_WITH_HOLD = (
    HOLD_HOOK
    + """
from integrations.flask_app import app, tracker

tracker.on_open(hold_the_writer)
"""
)

# The documented Starlette setup: the middleware, and nothing at shutdown.
STARLETTE_WITH_HOLD = (
    HOLD_HOOK
    + """
from starlette.applications import Starlette
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from arktrack import Tracker
from arktrack.starlette import ArkTrackingMiddleware

tracker = Tracker.from_env()
tracker.on_open(hold_the_writer)


async def index(request):
    return PlainTextResponse("Hello from the app")


app = Starlette(routes=[Route("/", index)])
app.add_middleware(ArkTrackingMiddleware, tracker=tracker)
"""
)

HOLD = 4.0
QUEUED = 20

DRAIN_CASES = [
    pytest.param("gunicorn", FLASK_WITH_HOLD, id="gunicorn-flask"),
    pytest.param("uvicorn", STARLETTE_WITH_HOLD, id="uvicorn-middleware"),
]


@pytest.mark.parametrize(("server_kind", "source"), DRAIN_CASES)
def test_sigterm_drains_queued_events(
    tmp_path: Path, launch: Callable[..., Server], server_kind: str, source: str
) -> None:
    port, base, db, campaign = prepare(tmp_path)
    (tmp_path / "held_app.py").write_text(source.format(hold=HOLD))
    env = app_env(base, db, PYTHONPATH=importable(tmp_path))
    argv = (
        gunicorn(port, "held_app:app")
        if server_kind == "gunicorn"
        else uvicorn(port, "held_app:app")
    )
    server = launch(argv, env=env, log=f"{server_kind}.log")
    server.wait_ready(f"{base}/")

    started = time.monotonic()
    agents = burst(campaign.bob.pixel, count=QUEUED, threads=1)
    # Otherwise the writer could have finished on its own and nothing was tested.
    assert time.monotonic() - started < HOLD, "too slow to have SIGTERM find a queue"
    assert server.terminate() in (0, -signal.SIGTERM), server.output()

    reader = Tracker(secret_key=SECRET, base_url=base, storage=f"sqlite:///{db}")
    try:
        stored = [e.user_agent for e in reader.events(type=EventType.OPENED)]
    finally:
        reader.close()
    assert Counter(stored) == Counter(agents), f"stored {len(stored)} of {len(agents)}"


# -- two workers creating the tables of an empty database -----------------------------------

# Both workers reach the INSERT of the schema version row before either runs it, the way
# two workers booting at the same moment can (forcing the interleaving makes it
# deterministic: the listener only waits, it changes no statement).
MEET_BEFORE_STAMPING = """
import os
import time
from pathlib import Path

from sqlalchemy import Engine, event

GATE = Path(os.environ["ARKTRACK_TEST_GATE"])


@event.listens_for(Engine, "before_cursor_execute")
def meet(conn, cursor, statement, parameters, context, executemany):
    if statement.lstrip().upper().startswith("INSERT") and "alembic_version" in statement:
        (GATE / str(os.getpid())).touch()
        deadline = time.monotonic() + 5
        while len(list(GATE.iterdir())) < 2 and time.monotonic() < deadline:
            time.sleep(0.02)


from integrations.flask_app import app
"""


def test_gunicorn_first_start_on_empty_database(
    tmp_path: Path, launch: Callable[..., Server]
) -> None:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    db = tmp_path / "arktrack.db"
    gate = tmp_path / "gate"
    gate.mkdir()
    (tmp_path / "gated_app.py").write_text(MEET_BEFORE_STAMPING)
    env = app_env(base, db, PYTHONPATH=importable(tmp_path), ARKTRACK_TEST_GATE=str(gate))
    access_log = tmp_path / "access.log"
    server = launch(
        gunicorn(
            port,
            "gated_app:app",
            "--access-logfile",
            access_log,
            "--access-logformat",
            "%(p)s %(U)s",
        ),
        env=env,
        log="gunicorn.log",
    )
    server.wait_ready(f"{base}/")
    wait_for_both_workers(server, base, access_log)
    assert len(list(gate.iterdir())) == 2, "both workers must have met at the gate"

    sender = Tracker(secret_key=SECRET, base_url=base, storage=f"sqlite:///{db}")
    try:
        sent = send(sender, "msg_1", "ada@example.com")
    finally:
        sender.close()
    assert httpx.get(sent.pixel, timeout=10.0).content == GIF
    assert server.terminate() == 0, server.output()
    reader = Tracker(secret_key=SECRET, base_url=base, storage=f"sqlite:///{db}")
    try:
        assert [e.to for e in reader.events()] == ["ada@example.com"]
    finally:
        reader.close()


# -- arktrack demo --------------------------------------------------------------------------


def read_lines_until(stream: IO[bytes], pattern: re.Pattern[str], timeout: float) -> str:
    """The first line of ``stream`` matching ``pattern``, read on a helper thread so that
    a silent process cannot block the test past ``timeout``."""
    lines: queue.Queue[str | None] = queue.Queue()

    def pump() -> None:
        for raw in stream:
            lines.put(raw.decode("utf-8", "replace"))
        lines.put(None)

    threading.Thread(target=pump, daemon=True).start()
    deadline = time.monotonic() + timeout
    seen: list[str] = []
    while (left := deadline - time.monotonic()) > 0:
        try:
            line = lines.get(timeout=left)
        except queue.Empty:
            break
        if line is None:
            break
        seen.append(line)
        if pattern.search(line):
            return line
    pytest.fail(f"no line matching {pattern.pattern} within {timeout} s:\n{''.join(seen)}")


def stats_table(html: str) -> dict[str, str]:
    tree = LexborHTMLParser(html)
    return {
        cells[0].text(strip=True): cells[1].text(strip=True)
        for row in tree.css("tr")
        if len(cells := row.css("td")) == 2
    }


def test_cli_demo(tmp_path: Path, launch: Callable[..., Server]) -> None:
    env = clean_env()
    demo = launch(
        [sys.executable, "-m", "arktrack.cli", "demo", "--port", "0"],
        env=env,
        log="demo.log",
        cwd=tmp_path,
        pipe_stdout=True,
    )
    assert demo.process.stdout is not None
    line = read_lines_until(demo.process.stdout, re.compile(r"https?://\S+/demo/email"), 30.0)
    email_url = re.search(r"https?://\S+/demo/email", line)
    assert email_url is not None
    base = email_url[0].removesuffix("/demo/email")
    assert urlsplit(base).hostname == "127.0.0.1"

    with httpx.Client(timeout=30.0, follow_redirects=False) as client:
        page = client.get(email_url[0])
        assert page.status_code == 200
        tree = LexborHTMLParser(page.text)
        tracked_links = [
            href
            for node in tree.css("a[href]")
            if (href := node.attributes["href"] or "").startswith(f"{base}/c/")
        ]
        assert len(tracked_links) == 2
        assert [node.attributes["href"] for node in tree.css("a[href^='mailto:']")] == [
            "mailto:support@example.com"
        ]
        (pixel,) = [
            src
            for node in tree.css("img[src]")
            if (src := node.attributes["src"] or "").startswith(f"{base}/o/")
        ]

        response = client.get(pixel)
        assert response.status_code == 200
        assert response.content == GIF

        landings = []
        for link in tracked_links:
            response = client.get(link)
            assert response.status_code == 302
            landings.append(response.headers["location"])
            assert client.get(response.headers["location"]).status_code == 200
        assert landings == [
            f"{base}/demo/landing?article=features",
            f"{base}/demo/landing?article=changelog&ref=email",
        ]

        response = client.get(f"{base}/demo/stats")
        assert response.status_code == 200
        table = stats_table(response.text)
        assert (table["Delivered"], table["Opens (unique)"], table["Clicks (unique)"]) == (
            "1",
            "1",
            "1",
        )

    assert demo.terminate() in (0, -signal.SIGTERM)
    assert (tmp_path / "arktrack.db").exists()

    done = subprocess.run(
        [sys.executable, "-m", "arktrack.cli", "stats", "--json"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)["summary"]
    assert (summary["delivered"], summary["opens"], summary["clicks"]) == (1, 1, 1)
    assert (summary["open_rate"], summary["click_rate"], summary["click_to_open_rate"]) == (
        100.0,
        100.0,
        100.0,
    )


# -- arktrack serve -------------------------------------------------------------------------


def test_cli_serve(tmp_path: Path, launch: Callable[..., Server]) -> None:
    port = free_port()
    host = f"http://127.0.0.1:{port}"
    base = f"{host}/t"  # as behind a proxy that may or may not strip the /t
    db = tmp_path / "serve.db"
    sender = Tracker(secret_key=SECRET, base_url=base, storage=f"sqlite:///{db}")
    sent = send(sender, "msg_dan", "dan@example.com")
    sender.close()
    server = launch(
        [sys.executable, "-m", "arktrack.cli", "serve", "--port", str(port)],
        env=app_env(base, db),
        log="serve.log",
    )
    server.wait_ready(f"{base}/o/not-a-token")  # the pixel answers any token, recording none
    with httpx.Client(timeout=30.0, follow_redirects=False) as client:
        assert client.get(sent.pixel).content == GIF
        assert client.get(sent.pixel.replace("/t/o/", "/o/")).content == GIF  # stripped
        response = client.get(sent.links[0], headers={"X-Forwarded-For": "6.6.6.6"})
        assert response.status_code == 302
        assert response.headers["location"] == DESTINATIONS[0]
        assert client.get(tampered(sent.links[0])).status_code == 404
        assert client.get(f"{host}/anything-else").status_code == 404
    assert server.terminate() in (0, -signal.SIGTERM)

    reader = Tracker(secret_key=SECRET, base_url=base, storage=f"sqlite:///{db}")
    try:
        assert [(e.type, e.to, e.ip_address) for e in reader.events()] == [
            (EventType.OPENED, "dan@example.com", "127.0.0.1"),
            (EventType.OPENED, "dan@example.com", "127.0.0.1"),
            # No trusted proxies: a forwarded address is not believed, by us or by uvicorn.
            (EventType.CLICKED, "dan@example.com", "127.0.0.1"),
        ]
    finally:
        reader.close()
