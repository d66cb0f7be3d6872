"""Registering a message as sent: stored before the call returns by default; inside
``tracker.batch()``, queued for the writer thread and stored by the end of the block."""

from __future__ import annotations

import logging
import multiprocessing
import threading
from collections.abc import Sequence
from pathlib import Path

import pytest

from arktrack import ConfigError, EventType, MemoryStorage, StorageError, Tracker
from arktrack.recorder import Hit
from arktrack.storage import SentMessage, Storage

from .conftest import BASE_URL, SECRET

HTML = '<html><body><a href="https://example.com/a">a</a></body></html>'


class GatedStorage(MemoryStorage):
    """Stores registrations only once ``gate`` is set, so a test can look while the
    writer still holds them."""

    def __init__(self) -> None:
        super().__init__()
        self.gate = threading.Event()
        self.batches: list[list[SentMessage]] = []

    def register_messages(self, batch: Sequence[SentMessage]) -> None:
        self.gate.wait(10)
        self.batches.append(list(batch))
        super().register_messages(batch)


class DownStorage(MemoryStorage):
    def register_messages(self, batch: Sequence[SentMessage]) -> None:
        raise StorageError("cannot reach the database: connection refused")


def make(storage: str | Storage, *, background: bool = True) -> Tracker:
    return Tracker(secret_key=SECRET, base_url=BASE_URL, storage=storage, background=background)


def test_a_registration_is_stored_before_the_rewrite_returns() -> None:
    storage = MemoryStorage()
    tracker = make(storage)
    tracker.rewrite_html(HTML, message_id="m", recipient="u@example.com")
    assert storage.recipients([("m", tracker.codec.recipient_ref("u@example.com"))])
    tracker.close()


def test_a_storage_failure_reaches_the_mailer() -> None:
    tracker = make(DownStorage())
    with pytest.raises(StorageError, match="cannot reach"):
        tracker.rewrite_html(HTML, message_id="m", recipient="u@example.com")
    tracker.close()


def test_a_batch_queues_registrations_and_its_end_waits_for_them() -> None:
    storage = GatedStorage()
    tracker = make(storage)
    with tracker.batch():
        for n in range(500):
            tracker.rewrite_html(HTML, message_id=f"m{n}", recipient=f"u{n}@example.com")
        assert storage.batches == []  # the loop did not wait for storage
        storage.gate.set()
    # The block's end did.
    assert sum(len(batch) for batch in storage.batches) == 500
    assert len(storage.batches) <= 2  # the first, which the writer held, then the rest
    assert tracker.stats().summary.delivered == 500
    tracker.close()


def test_a_batch_left_by_an_exception_still_stores_what_was_sent() -> None:
    storage = MemoryStorage()
    tracker = make(storage)

    def send() -> None:
        with tracker.batch():
            tracker.register_message("m1", "u@example.com")
            raise RuntimeError("the SMTP server went away")

    with pytest.raises(RuntimeError):
        send()
    assert tracker.stats().summary.delivered == 1
    tracker.register_message("m2", "u@example.com")  # after the block: inline again
    assert tracker.stats().summary.delivered == 2
    tracker.close()


class ThreadNoting(MemoryStorage):
    """Notes which thread stored each registration."""

    def __init__(self) -> None:
        super().__init__()
        self.stored_by: dict[str, str] = {}

    def register_messages(self, batch: Sequence[SentMessage]) -> None:
        for message in batch:
            self.stored_by[message.message_id] = threading.current_thread().name
        super().register_messages(batch)


def test_a_batch_is_per_thread() -> None:
    storage = ThreadNoting()
    tracker = make(storage)

    def elsewhere() -> None:
        tracker.register_message("other", "u@example.com")

    with tracker.batch():
        tracker.register_message("inside", "u@example.com")
        thread = threading.Thread(target=elsewhere, name="another-mailer")
        thread.start()
        thread.join(10)
    assert storage.stored_by == {"inside": "arktrack-recorder", "other": "another-mailer"}
    tracker.close()


def test_a_hit_queued_behind_its_registration_finds_the_recipient() -> None:
    tracker = make("memory://")
    with tracker.batch():
        ref = tracker.register_message("m", "u@example.com")
        tracker.recorder.submit(Hit(EventType.OPENED, "", "m", ref, None, "ua", "192.0.2.1", 0))
    [event] = tracker.events()
    assert event.to == "u@example.com"
    tracker.close()


def test_a_hook_may_flush_without_waiting_for_itself() -> None:
    tracker = make("memory://")
    flushed: list[bool] = []
    tracker.on_open(lambda event: flushed.append(tracker.flush(5)))
    ref = tracker.register_message("m", "u@example.com")
    tracker.recorder.submit(Hit(EventType.OPENED, "", "m", ref, None, "ua", "192.0.2.1", 0))
    assert tracker.flush(10)
    assert flushed == [False]  # returned at once: the writer cannot wait for itself
    tracker.close()


def test_storage_down_in_a_batch_logs_the_registration(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("arktrack.recorder.RETRY_DELAYS", (0.0,))
    tracker = make(DownStorage())
    with caplog.at_level(logging.ERROR, logger="arktrack"), tracker.batch():
        html = tracker.rewrite_html(HTML, message_id="msg_9", recipient="u@example.com")
        assert f"{BASE_URL}/c/" in html  # the mail goes out
    assert "storage refused 1 registrations" in caplog.text
    assert '"message_id": "msg_9"' in caplog.text
    assert '"recipient": "u@example.com"' in caplog.text
    tracker.close()


def test_without_a_writer_thread_a_batch_registers_inline() -> None:
    tracker = make(DownStorage(), background=False)
    with pytest.raises(StorageError), tracker.batch():
        tracker.register_message("m", "u@example.com")
    tracker.close()


@pytest.mark.parametrize(
    ("setting", "message_id", "recipient"),
    [
        ("message_id", "x" * 256, "u@example.com"),
        ("recipient", "m", "u" * 310 + "@example.com"),
    ],
)
def test_ids_longer_than_storage_keeps_are_refused_by_name(
    setting: str, message_id: str, recipient: str
) -> None:
    # Refused up front on every backend: PostgreSQL would refuse the row, and in a batch
    # every registration beside it.
    tracker = make("memory://")
    with pytest.raises(ConfigError) as raised:
        tracker.rewrite_html(HTML, message_id=message_id, recipient=recipient)
    assert raised.value.setting == setting
    assert "at most" in str(raised.value)
    assert tracker.stats().summary.delivered == 0
    tracker.close()


def _send_one(url: str, n: int) -> None:
    tracker = make(url)
    tracker.rewrite_html(HTML, message_id=f"m{n}", recipient="u@example.com")
    # No close(): a forked worker ends with os._exit, and no exit handler runs.


def test_forked_workers_that_exit_at_once_lose_nothing(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'arktrack.db'}"
    make(url).close()  # the tables, before the workers race to create them
    context = multiprocessing.get_context("fork")
    workers = [context.Process(target=_send_one, args=(url, n)) for n in range(4)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(60)
        assert worker.exitcode == 0
    reader = make(url)
    assert reader.stats().summary.delivered == 4
    reader.close()


_forked_tracker: Tracker | None = None


def _rewrite_once(n: int) -> None:
    assert _forked_tracker is not None
    _forked_tracker.rewrite_html(HTML, message_id=f"child{n}", recipient="u@example.com")


def test_a_process_forked_inside_a_batch_registers_inline(tmp_path: Path) -> None:
    global _forked_tracker
    tracker = _forked_tracker = make(f"sqlite:///{tmp_path / 'arktrack.db'}")
    context = multiprocessing.get_context("fork")
    with tracker.batch():
        # A pool's workers are forked here, inside the block, and end with os._exit.
        with context.Pool(2) as pool:
            pool.starmap(_rewrite_once, [(n,) for n in range(6)])
        tracker.register_message("parent", "u@example.com")
    assert tracker.stats().summary.delivered == 7
    tracker.close()


def test_a_bounce_inside_a_batch_finds_its_queued_message() -> None:
    storage = GatedStorage()
    tracker = make(storage)
    with tracker.batch():
        tracker.register_message("m", "u@example.com")
        threading.Timer(0.2, storage.gate.set).start()
        # The SMTP server refused the recipient right away.
        assert tracker.record_bounce("m", "u@example.com") == 1
    assert tracker.stats().summary.delivered == 0
    tracker.close()
