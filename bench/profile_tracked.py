"""Where a tracked request's time goes, piece by piece, in one process (no HTTP server).

    .venv/bin/python bench/profile_tracked.py [--iterations 20000] [--cprofile]

Request side: each step ``ArkTracking`` takes for ``/o`` and ``/c``, timed alone in a loop.
Writer side: what the background writer spends per event when a batch holds 1, 10, 100 or
1000 events (SQLite in a temp dir). The live batch sizes under load are what decide which
of those rows applies; ``live_batches.py`` measures them in a real server.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import pstats
import queue
import shutil
import tempfile
import time
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import apps

from arktrack import ArkTracking, Tracker
from arktrack.clientip import client_ip
from arktrack.events import EventType
from arktrack.handler import route
from arktrack.recorder import Hit
from arktrack.starlette import ArkTrackingMiddleware

RECIPIENT = "reader@example.com"
MESSAGE_ID = "profile@arktrack"
SECRET = "profile-secret-key-0123456789"


REPEATS = 5


def per_call_us(fn: Callable[[], object], iterations: int) -> float:
    # Best of a few repeats: on a shared 2-core box, noise only ever adds time.
    fn()
    chunk = max(1, iterations // REPEATS)
    best = float("inf")
    for _ in range(REPEATS):
        start = time.perf_counter()
        for _ in range(chunk):
            fn()
        best = min(best, time.perf_counter() - start)
    return best / chunk * 1e6


def environ_for(path: str) -> dict[str, Any]:
    return {
        "REQUEST_METHOD": "GET",
        "SCRIPT_NAME": "",
        "PATH_INFO": path,
        "REMOTE_ADDR": "127.0.0.1",
        "HTTP_USER_AGENT": "wrk",
        "SERVER_NAME": "127.0.0.1",
        "SERVER_PORT": "8000",
        "wsgi.url_scheme": "http",
    }


def start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> None:
    return None


def asgi_per_call_us(app: Any, path: str, iterations: int) -> float:
    scope = {
        "type": "http",
        "method": "GET",
        "path": path,
        "root_path": "",
        "headers": [(b"host", b"127.0.0.1:8000"), (b"user-agent", b"wrk")],
        "client": ("127.0.0.1", 50000),
    }

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: Any) -> None:
        return None

    async def loop() -> float:
        await app(dict(scope), receive, send)
        chunk = max(1, iterations // REPEATS)
        best = float("inf")
        for _ in range(REPEATS):
            start = time.perf_counter()
            for _ in range(chunk):
                await app(dict(scope), receive, send)
            best = min(best, time.perf_counter() - start)
        return best / chunk * 1e6

    return asyncio.run(loop())


def hold_writer(tracker: Tracker) -> queue.SimpleQueue[Any]:
    """Make submit() queue without a writer thread, to time the request side alone."""
    recorder = tracker.recorder
    # A stand-in thread object: submit() only checks it is set before queueing.
    recorder._thread = object()  # type: ignore[assignment]
    return recorder._queue


def release_writer(tracker: Tracker) -> None:
    recorder = tracker.recorder
    pending = recorder._queue
    while True:
        try:
            pending.get_nowait()
        except queue.Empty:
            break
    recorder._thread = None
    recorder._pending = 0


def request_side(tracker: Tracker, paths: dict[str, str], iterations: int) -> None:
    wrapped = ArkTracking(apps.wsgi, tracker=tracker)
    codec = tracker.codec
    handler = tracker.handler
    open_token = paths["o"][3:]
    click_token = paths["c"][3:]
    hit = Hit(EventType.OPENED, MESSAGE_ID, "ref", None, "wrk", "127.0.0.1", datetime.now())

    hold_writer(tracker)
    rows = [
        ("bare app, /o (baseline)", lambda: apps.wsgi(environ_for(paths["o"]), start_response)),
        ("route()", lambda: route(paths["o"], "")),
        ("codec.load_open", lambda: codec.load_open(open_token)),
        ("codec.load_click", lambda: codec.load_click(click_token)),
        ("client_ip (no proxies)", lambda: client_ip("127.0.0.1", None, ())),
        ("datetime.now(timezone.utc)", lambda: datetime.now(timezone.utc)),
        (
            "Hit(...)",
            lambda: Hit(
                EventType.OPENED, MESSAGE_ID, "r", None, "wrk", "127.0.0.1", datetime.now()
            ),
        ),
        ("recorder.submit (queue only)", lambda: tracker.recorder.submit(hit)),
        (
            "handler.handle /o",
            lambda: handler.handle(
                "GET", "o", open_token, user_agent="wrk", forwarded_for=None, peer="127.0.0.1"
            ),
        ),
        (
            "handler.handle /c",
            lambda: handler.handle(
                "GET", "c", click_token, user_agent="wrk", forwarded_for=None, peer="127.0.0.1"
            ),
        ),
        ("ArkTracking /o (whole)", lambda: wrapped(environ_for(paths["o"]), start_response)),
        ("ArkTracking /c (whole)", lambda: wrapped(environ_for(paths["c"]), start_response)),
    ]
    print("request thread, per call (writer held off):")
    for name, fn in rows:
        print(f"  {name:<32} {per_call_us(fn, iterations):8.2f} us")
        release_writer(tracker)
        hold_writer(tracker)
    middleware = ArkTrackingMiddleware(apps.asgi, tracker=tracker)
    for name, app, path in (
        ("bare ASGI app, /o (baseline)", apps.asgi, paths["o"]),
        ("ArkTrackingMiddleware /o", middleware, paths["o"]),
        ("ArkTrackingMiddleware /c", middleware, paths["c"]),
    ):
        print(f"  {name:<32} {asgi_per_call_us(app, path, iterations):8.2f} us")
        release_writer(tracker)
        hold_writer(tracker)
    release_writer(tracker)


def writer_side(tracker: Tracker, iterations: int) -> None:
    recorder = tracker.recorder
    storage = tracker.storage
    ref = tracker.codec.recipient_ref(RECIPIENT)
    print("\nwriter thread, per event, by batch size:")
    print(f"  {'batch':>6} {'_events':>10} {'add_events':>11} {'total':>9}")
    for size in (1, 10, 100, 1000):
        batches = max(3, min(500, iterations // size // 4))
        hits = [
            Hit(
                EventType.OPENED,
                MESSAGE_ID,
                ref,
                None,
                "wrk",
                "127.0.0.1",
                datetime.now(timezone.utc),
            )
            for _ in range(size)
        ]
        build = store = 0.0
        for _ in range(batches):
            t0 = time.perf_counter()
            events = recorder._events(hits)
            t1 = time.perf_counter()
            storage.add_events(events)
            t2 = time.perf_counter()
            build += t1 - t0
            store += t2 - t1
        n = batches * size
        print(
            f"  {size:>6} {build / n * 1e6:>8.1f}us {store / n * 1e6:>9.1f}us "
            f"{(build + store) / n * 1e6:>7.1f}us"
        )


def pipeline(tracker: Tracker, paths: dict[str, str], iterations: int, profile: bool) -> None:
    """Requests back to back with the real writer thread running, as in a server under
    load but without sockets: the writer competes with the request loop for the GIL."""
    wrapped = ArkTracking(apps.wsgi, tracker=tracker)
    sizes: list[int] = []
    store = tracker.storage.add_events

    def counting_store(batch: Any) -> None:
        sizes.append(len(batch))
        store(batch)

    tracker.storage.add_events = counting_store  # type: ignore[method-assign]
    environ = environ_for(paths["o"])
    bare_us = per_call_us(lambda: apps.wsgi(dict(environ), start_response), iterations)
    profiler = cProfile.Profile() if profile else None
    start = time.perf_counter()
    if profiler:
        profiler.enable()
    for _ in range(iterations):
        wrapped(dict(environ), start_response)
    if profiler:
        profiler.disable()
    loop = time.perf_counter() - start
    tracker.flush()
    total = time.perf_counter() - start
    tracker.storage.add_events = store  # type: ignore[method-assign]
    print(f"\nin-process pipeline, {iterations} /o requests with the writer running:")
    print(f"  bare app                 {bare_us:8.2f} us/request")
    print(f"  request loop             {loop / iterations * 1e6:8.2f} us/request")
    print(f"  until flushed            {total / iterations * 1e6:8.2f} us/request")
    print(
        f"  writer batches: {len(sizes)}, mean size {sum(sizes) / max(1, len(sizes)):.0f}, "
        f"max {max(sizes, default=0)}"
    )
    if profiler:
        print("\ncProfile of the request loop (request thread only), top 15 by own time:")
        pstats.Stats(profiler).sort_stats("tottime").print_stats(15)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--iterations", type=int, default=20000)
    parser.add_argument("--cprofile", action="store_true", help="cProfile the pipeline loop")
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="arktrack-profile-"))
    try:
        tracker = Tracker(
            secret_key=SECRET,
            base_url="http://127.0.0.1:8000",
            storage=f"sqlite:///{workdir / 'profile.db'}",
        )
        tracker.register_message(MESSAGE_ID, RECIPIENT)
        click = tracker.click_url(apps.DESTINATION, message_id=MESSAGE_ID, recipient=RECIPIENT)
        assert click is not None
        paths = {
            "o": tracker.open_url(MESSAGE_ID, RECIPIENT).removeprefix("http://127.0.0.1:8000"),
            "c": click.removeprefix("http://127.0.0.1:8000"),
        }
        request_side(tracker, paths, args.iterations)
        writer_side(tracker, args.iterations)
        pipeline(tracker, paths, args.iterations, args.cprofile)
        tracker.close()
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
