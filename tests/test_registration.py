"""Registering a message as sent: queued for the writer thread by default, inline with
``background=False``; read back by stats, bounces and events in the same process."""

from __future__ import annotations

import logging
import subprocess
import sys
import textwrap
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


def test_the_rewrite_returns_before_the_writer_registers() -> None:
    storage = GatedStorage()
    tracker = make(storage)
    for n in range(3):
        tracker.rewrite_html(HTML, message_id=f"m{n}", recipient="u@example.com")
    assert storage.batches == []  # the mailer did not wait for storage
    storage.gate.set()
    # stats() waits for the writer: in one process, what was registered is counted.
    assert tracker.stats().summary.delivered == 3
    assert [m.message_id for batch in storage.batches for m in batch] == ["m0", "m1", "m2"]
    tracker.close()


def test_a_burst_is_stored_in_a_few_batches() -> None:
    storage = GatedStorage()
    tracker = make(storage)
    for n in range(500):
        tracker.register_message(f"m{n}", f"u{n}@example.com")
    storage.gate.set()
    assert tracker.flush(10)
    assert sum(len(batch) for batch in storage.batches) == 500
    assert len(storage.batches) <= 2  # the first, which the writer held, then the rest
    tracker.close()


def test_a_bounce_waits_for_the_registration() -> None:
    storage = GatedStorage()
    tracker = make(storage)
    tracker.register_message("m", "u@example.com")
    threading.Timer(0.2, storage.gate.set).start()
    assert tracker.record_bounce("m") == 1
    assert tracker.stats().summary.delivered == 0
    tracker.close()


def test_a_hit_queued_behind_its_registration_finds_the_recipient() -> None:
    tracker = make("memory://")
    ref = tracker.register_message("m", "u@example.com")
    tracker.recorder.submit(Hit(EventType.OPENED, "", "m", ref, None, "ua", "192.0.2.1", 0.0))
    [event] = tracker.events()
    assert event.to == "u@example.com"
    tracker.close()


def test_a_hook_may_read_stats_without_waiting_for_itself() -> None:
    tracker = make("memory://")
    seen: list[int] = []
    tracker.on_open(lambda event: seen.append(tracker.stats().summary.opens))
    ref = tracker.register_message("m", "u@example.com")
    tracker.recorder.submit(Hit(EventType.OPENED, "", "m", ref, None, "ua", "192.0.2.1", 0.0))
    assert tracker.flush(10)
    assert seen == [1]  # the hook ran after its event was stored, and did not hang
    tracker.close()


def test_storage_down_never_stops_the_mail_and_logs_the_registration(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("arktrack.recorder.RETRY_DELAYS", (0.0,))
    tracker = make(DownStorage())
    with caplog.at_level(logging.ERROR, logger="arktrack"):
        html = tracker.rewrite_html(HTML, message_id="msg_9", recipient="u@example.com")
        assert f"{BASE_URL}/c/" in html
        assert tracker.flush(10)
    assert "storage refused 1 registrations" in caplog.text
    assert '"message_id": "msg_9"' in caplog.text
    assert '"recipient": "u@example.com"' in caplog.text
    tracker.close()


def test_inline_registration_is_stored_before_the_rewrite_returns() -> None:
    storage = MemoryStorage()
    tracker = make(storage, background=False)
    tracker.rewrite_html(HTML, message_id="m", recipient="u@example.com")
    assert storage.recipients([("m", tracker.codec.recipient_ref("u@example.com"))])
    tracker.close()


def test_inline_registration_raises_when_storage_is_down() -> None:
    tracker = make(DownStorage(), background=False)
    with pytest.raises(StorageError, match="cannot reach"):
        tracker.rewrite_html(HTML, message_id="m", recipient="u@example.com")
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
    # Refused up front: in the writer's batch, one value PostgreSQL rejects would fail
    # every registration beside it.
    tracker = make("memory://")
    with pytest.raises(ConfigError) as raised:
        tracker.rewrite_html(HTML, message_id=message_id, recipient=recipient)
    assert raised.value.setting == setting
    assert "at most" in str(raised.value)
    assert tracker.stats().summary.delivered == 0
    tracker.close()


def test_a_mailer_script_that_never_closes_still_registers(tmp_path: Path) -> None:
    db = tmp_path / "arktrack.db"
    script = textwrap.dedent(
        f"""
        from arktrack import Tracker
        tracker = Tracker(secret_key={SECRET!r}, base_url={BASE_URL!r},
                          storage="sqlite:///{db}")
        for n in range(200):
            tracker.rewrite_html({HTML!r}, message_id=f"m{{n}}", recipient="u@example.com")
        """
    )
    # The exit drains the queue: the script's registrations outlive it.
    subprocess.run([sys.executable, "-c", script], check=True, timeout=60)
    reader = make(f"sqlite:///{db}")
    assert reader.stats().summary.delivered == 200
    reader.close()
