"""Events reach storage and then the hooks; failures are contained and nothing is dropped."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence
from datetime import UTC, datetime

import pytest

from arktrack import Event, EventType, MemoryStorage, Tracker
from arktrack.events import Hooks
from arktrack.recorder import Hit, Recorder

from .conftest import BASE_URL, SECRET

NOW = datetime(2024, 1, 15, 10, 30, tzinfo=UTC).timestamp()


def open_hit(n: int = 0, mid: str = "msg_1", ref: str = "ref") -> Hit:
    return Hit(EventType.OPENED, "", mid, ref, None, f"ua-{n}", "192.0.2.1", NOW)


class FlakyStorage(MemoryStorage):
    """Fails the first ``failures`` writes, like a locked database that frees up."""

    def __init__(self, failures: int) -> None:
        super().__init__()
        self.failures = failures

    def add_events(self, events: Sequence[Event]) -> None:
        if self.failures:
            self.failures -= 1
            raise RuntimeError("database is locked")
        super().add_events(events)


@pytest.mark.parametrize("background", [True, False], ids=["background", "inline"])
def test_every_hit_is_stored_then_hooked(background: bool) -> None:
    storage, hooks = MemoryStorage(), Hooks()
    order: list[str] = []
    hooks.add(EventType.OPENED, lambda e: order.append(f"hook:{len(storage.events())}"))
    recorder = Recorder(storage, hooks, background=background)
    for n in range(500):
        recorder.submit(open_hit(n))
    assert recorder.flush(10)
    assert [e.user_agent for e in storage.events()] == [f"ua-{n}" for n in range(500)]
    assert len(order) == 500
    # Each hook ran after its event was stored.
    assert all(int(entry.split(":")[1]) >= i + 1 for i, entry in enumerate(order))
    recorder.close()


def test_concurrent_submitters_lose_nothing() -> None:
    storage = MemoryStorage()
    recorder = Recorder(storage, Hooks())

    def burst(worker: int) -> None:
        for n in range(250):
            recorder.submit(open_hit(n, mid=f"w{worker}"))

    threads = [threading.Thread(target=burst, args=(w,)) for w in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert recorder.flush(10)
    assert len(storage.events()) == 2000
    recorder.close()


def test_recipient_is_resolved_from_registration() -> None:
    tracker = Tracker(secret_key=SECRET, base_url=BASE_URL, storage="memory://")
    ref = tracker.register_message("msg_1", "user@example.com")
    tracker.recorder.submit(open_hit(mid="msg_1", ref=ref))
    tracker.recorder.submit(open_hit(mid="msg_unknown", ref=ref))
    tracker.flush()
    assert [e.to for e in tracker.events()] == ["user@example.com", None]
    tracker.close()


def test_failing_hook_is_logged_and_contained(caplog: pytest.LogCaptureFixture) -> None:
    storage, hooks = MemoryStorage(), Hooks()
    seen: list[Event] = []

    def broken(event: Event) -> None:
        raise ValueError("boom")

    hooks.add(EventType.OPENED, broken)
    hooks.add(EventType.OPENED, seen.append)
    recorder = Recorder(storage, hooks)
    with caplog.at_level(logging.ERROR, logger="arktrack"):
        recorder.submit(open_hit())
        recorder.flush(10)
    assert len(seen) == 1
    assert len(storage.events()) == 1
    assert "broken" in caplog.text
    assert "boom" in caplog.text
    recorder.close()


def test_storage_hiccups_are_retried() -> None:
    storage = FlakyStorage(failures=2)
    recorder = Recorder(storage, Hooks())
    recorder.submit(open_hit())
    assert recorder.flush(10)
    assert len(storage.events()) == 1
    recorder.close()


def test_storage_down_logs_events_and_still_runs_hooks(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("arktrack.recorder.RETRY_DELAYS", (0.0,))
    storage, hooks = FlakyStorage(failures=100), Hooks()
    seen: list[Event] = []
    hooks.add(EventType.OPENED, seen.append)
    recorder = Recorder(storage, hooks)
    with caplog.at_level(logging.ERROR, logger="arktrack"):
        recorder.submit(open_hit())
        assert recorder.flush(10)
    assert len(seen) == 1
    assert '"type": "email.opened"' in caplog.text
    assert '"emailId": "msg_1"' in caplog.text
    recorder.close()


def test_storage_down_never_blocks_the_redirect(caplog: pytest.LogCaptureFixture) -> None:
    storage = FlakyStorage(failures=10**6)
    tracker = Tracker(secret_key=SECRET, base_url=BASE_URL, storage=storage, background=False)
    url = tracker.click_url("https://example.com/x", message_id="m", recipient="u@example.com")
    assert url is not None
    with caplog.at_level(logging.CRITICAL, logger="arktrack"):
        response = tracker.handler.handle(
            "GET", "c", url.rsplit("/", 1)[1], user_agent=None, forwarded_for=None, peer=None
        )
    assert response.status == 302
    assert dict(response.headers)["Location"] == "https://example.com/x"


def test_close_drains_and_later_hits_are_recorded_inline() -> None:
    storage = MemoryStorage()
    recorder = Recorder(storage, Hooks())
    for n in range(100):
        recorder.submit(open_hit(n))
    recorder.close()
    assert len(storage.events()) == 100
    recorder.submit(open_hit(100))
    assert len(storage.events()) == 101


def test_close_stores_what_slow_hooks_left_queued(caplog: pytest.LogCaptureFixture) -> None:
    storage, hooks = MemoryStorage(), Hooks()
    release = threading.Event()
    hooks.add(EventType.OPENED, lambda event: release.wait(10))
    recorder = Recorder(storage, hooks)
    recorder.submit(open_hit(0))
    deadline = time.monotonic() + 10
    while not storage.events() and time.monotonic() < deadline:
        time.sleep(0.01)  # the writer has stored the first hit and sits in its hook
    for n in range(1, 51):
        recorder.submit(open_hit(n))
    with caplog.at_level(logging.ERROR, logger="arktrack"):
        recorder.close(timeout=0.2)
    release.set()
    assert len(storage.events()) == 51
    assert "storing the 50 queued items without running hooks" in caplog.text
    assert recorder.flush(5)  # what close() stored counts as written


def test_flush_can_run_while_its_thread_is_queueing() -> None:
    # A signal handler may call flush() or close() while its thread is in submit().
    recorder = Recorder(MemoryStorage(), Hooks())
    recorder.submit(open_hit(0))
    flushed: list[bool] = []

    def interrupted_submit() -> None:
        with recorder._lock:  # where submit() was when the signal came
            flushed.append(recorder.flush(5))

    thread = threading.Thread(target=interrupted_submit, daemon=True)
    thread.start()
    thread.join(10)
    assert flushed == [True]
    recorder.close()


def test_writer_survives_a_failing_batch(caplog: pytest.LogCaptureFixture) -> None:
    storage = MemoryStorage()
    recorder = Recorder(storage, Hooks())
    with caplog.at_level(logging.ERROR, logger="arktrack"):
        recorder.submit(open_hit(0)._replace(token="not-a-token"))  # no codec: a TypeError
        assert recorder.flush(10)
    recorder.submit(open_hit(1))
    assert recorder.flush(10)
    assert [e.user_agent for e in storage.events()] == ["ua-1"]
    assert "recording a batch of 1 items failed" in caplog.text
    recorder.close()


def test_flush_returns_under_steady_traffic() -> None:
    storage = MemoryStorage()
    recorder = Recorder(storage, Hooks())
    for n in range(100):
        recorder.submit(open_hit(n))
    stop = threading.Event()

    def traffic() -> None:
        n = 100
        while not stop.is_set():
            recorder.submit(open_hit(n))
            n += 1
            time.sleep(0.0005)

    sender = threading.Thread(target=traffic)
    sender.start()
    try:
        assert recorder.flush(5)
        assert len(storage.events()) >= 100
    finally:
        stop.set()
        sender.join(10)
        recorder.close()


def test_long_outage_keeps_the_queue_draining(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("arktrack.recorder.RETRY_DELAYS", (0.2, 0.2))
    storage = FlakyStorage(failures=10**6)
    recorder = Recorder(storage, Hooks())
    with caplog.at_level(logging.ERROR, logger="arktrack"):
        recorder.submit(open_hit(0))
        assert recorder.flush(5)  # one round of retries: about 0.4 s
        started = time.monotonic()
        for n in range(1, 6):
            recorder.submit(open_hit(n))
            assert recorder.flush(5)
        # Later batches are tried once each, not retried for 0.4 s.
        assert time.monotonic() - started < 1.0
    assert caplog.text.count("storage refused") == 6
    storage.failures = 0
    recorder.submit(open_hit(6))
    assert recorder.flush(5)
    assert [e.user_agent for e in storage.events()] == ["ua-6"]
    recorder.close()


def test_a_full_batch_does_not_wait_for_the_linger(monkeypatch: pytest.MonkeyPatch) -> None:
    # Under load the writer must keep up: a waiting full batch cuts its linger short.
    monkeypatch.setattr("arktrack.recorder.LINGER", 60.0)
    storage = MemoryStorage()
    recorder = Recorder(storage, Hooks())
    for n in range(3000):
        recorder.submit(open_hit(n))
    deadline = time.monotonic() + 20  # far less than one linger, far more than needed
    while len(storage.events()) < 2000 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert len(storage.events()) >= 2000  # no flush() asked for them
    recorder.close()
