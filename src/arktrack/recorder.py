"""Writes what a tracker records off the caller's path: hits on the tracking endpoints,
and the messages a mailer registers inside ``Tracker.batch()``; then hands the events to
the hooks.

The request threads (and a batching mailer) only append a :class:`Hit` (or a
:class:`~arktrack.storage.SentMessage`) to a queue, about a microsecond; one writer thread
per process drains it in batches: it stores the registrations, checks open tokens,
resolves recipients, stores the events, then runs the hooks. Batching is what keeps a
SQLite-backed tracker near the speed of a bare app: one commit carries hundreds of rows
under load.

Nothing is dropped quietly: :meth:`Recorder.flush` waits for the queue, an ``atexit`` hook
drains it when the process exits normally (a gunicorn worker does on SIGTERM; under uvicorn,
which ends the process by re-raising SIGTERM, the ASGI layer drains at lifespan shutdown),
and a batch that storage keeps refusing is logged whole, as JSON, before it is let go. What
a killed process (SIGKILL, out of memory) had queued and not yet written is lost: about
``LINGER`` worth, more when slow hooks or a storage outage hold the writer back.
"""

from __future__ import annotations

import atexit
import json
import logging
import os
import queue
import threading
import time
import weakref
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any, NamedTuple

from .errors import InvalidToken
from .events import Event, EventType, Hooks
from .storage import MessageKey, SentMessage, Storage
from .tokens import TokenCodec

logger = logging.getLogger("arktrack")

MAX_BATCH = 1000
# How long the writer lets items gather after the first one, unless MAX_BATCH of them
# are waiting; also the most a hook waits. Each batch costs the request threads more than
# its own CPU time: the writer takes the GIL back after every database call, and an
# event loop waits for it each time. So batches are few and large.
LINGER = 0.2
# Storage hiccups (a locked SQLite file, a PostgreSQL failover) usually pass in seconds.
RETRY_DELAYS = (0.05, 0.2, 1.0, 3.0)
# Recipients of recent messages, so a burst of opens costs one lookup, not one each.
RECIPIENT_CACHE_SIZE = 10_000


class Hit(NamedTuple):
    type: EventType
    #: An open's token, checked here rather than on the request path (the pixel is
    #: served whatever the token); empty when the fields below are already known.
    token: str
    message_id: str
    recipient_ref: str
    url: str | None
    user_agent: str | None
    ip_address: str | None
    #: ``time.time()``: cheaper on the request path than a datetime, converted later.
    timestamp: float


Item = Hit | SentMessage


class Recorder:
    def __init__(
        self,
        storage: Storage,
        hooks: Hooks,
        codec: TokenCodec | None = None,
        *,
        background: bool = True,
    ) -> None:
        self.storage = storage
        self.hooks = hooks
        self.codec = codec
        self.background = background
        self._recipients: dict[MessageKey, str] = {}
        self._storage_down = False
        self._reset()
        _live.add(self)

    def _reset(self) -> None:
        self._queue: queue.SimpleQueue[Item | None] = queue.SimpleQueue()
        # Items queued and items written, ever: flush() waits for what was queued before
        # it was called, so steady traffic cannot keep it waiting forever.
        self._queued = 0
        self._written = 0
        # The condition's own lock, taken bare on the hot path: entering a Condition costs
        # a Python call, an RLock's a C one, and every hit takes it. Reentrant, so that a
        # signal handler may flush or close while its thread is queueing.
        self._lock = threading.RLock()
        self._idle = threading.Condition(self._lock)
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self._closed = False

    def submit(self, hit: Hit) -> None:
        """Record a hit: store its event, then run the hooks."""
        if not self._enqueue(hit):
            self._process([hit])

    def register(self, message: SentMessage) -> None:
        """Record a message as sent. Inline, a storage failure raises
        :class:`~arktrack.errors.StorageError` to the caller."""
        if not self._enqueue(message):
            self.storage.register_messages([message])

    def _enqueue(self, item: Item) -> bool:
        """Queue ``item`` for the writer; False when it must be written inline."""
        with self._lock:
            # Checked under the lock: an item must not slip into the queue after close()
            # has taken the last of it.
            if not self.background or self._closed:
                return False
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name="arktrack-recorder", daemon=True
                )
                self._thread.start()
            # Queued, then counted: a flush() from a signal handler in between must not
            # wait for an item that is not there yet.
            self._queue.put(item)
            self._queued += 1
        if self._queue.qsize() >= MAX_BATCH and not self._wake.is_set():
            self._wake.set()  # a full batch is waiting: no lingering
        return True

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until everything queued so far is stored and the hooks have run. Returns
        False if ``timeout`` (seconds) passed first, and at once when called by a hook:
        the writer cannot wait for itself."""
        if threading.current_thread() is self._thread:
            return False
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._idle:
            target = self._queued
            while self._written < target:
                self._wake.set()  # no lingering: someone is waiting
                left = LINGER if deadline is None else deadline - time.monotonic()
                if left <= 0:
                    return False
                self._idle.wait(min(left, LINGER))
        return True

    def close(self, timeout: float = 10.0) -> None:
        """Drain the queue and stop the writer; later items are written inline. Items
        still queued after ``timeout`` (hooks too slow to keep up) are stored here,
        without their hooks, rather than lost with the process."""
        if self._closed:
            return
        drained = self.flush(timeout)
        with self._idle:
            self._closed = True
            leftovers = [] if drained else self._take_queued()
        if self._thread is not None:
            self._queue.put(None)
            self._wake.set()
        if leftovers:
            logger.error(
                "arktrack: the writer did not drain in %s s; storing the %d queued items "
                "without running hooks",
                timeout,
                len(leftovers),
            )
            try:
                self._process(leftovers, run_hooks=False)
            finally:
                with self._idle:
                    self._written += len(leftovers)  # or flush() would wait for them forever
                    self._idle.notify_all()

    def _take_queued(self) -> list[Item]:
        taken: list[Item] = []
        try:
            while True:
                item = self._queue.get_nowait()
                if item is not None:
                    taken.append(item)
        except queue.Empty:
            return taken

    def _run(self) -> None:
        while True:
            first = self._queue.get()
            if first is None:
                return
            # Let a batch gather: one transaction for hundreds of events is what keeps a
            # SQLite-backed tracker near the speed of a bare app, and a writer that wakes
            # for every hit would take the GIL from the request threads each time. Under
            # load a full batch cuts the wait short, or the writer could not keep up.
            if self._queue.qsize() < MAX_BATCH - 1:
                self._wake.wait(LINGER)
            self._wake.clear()
            batch = [first]
            try:
                while len(batch) < MAX_BATCH:
                    item = self._queue.get_nowait()
                    if item is None:
                        self._queue.put(None)
                        break
                    batch.append(item)
            except queue.Empty:
                pass
            try:
                self._process(batch)
            except BaseException:
                # The writer must outlive any one batch (a hook may even raise
                # CancelledError or SystemExit), or every later hit would queue up unwritten.
                logger.exception("arktrack: recording a batch of %d items failed", len(batch))
            finally:
                with self._idle:
                    self._written += len(batch)
                    self._idle.notify_all()

    def _process(self, items: Sequence[Item], *, run_hooks: bool = True) -> None:
        sent = [item for item in items if isinstance(item, SentMessage)]
        if sent:
            # First, so the hits of these messages resolve their recipients.
            self._store("registrations", sent, self.storage.register_messages, _sent_dict)
            self._remember({(m.message_id, m.recipient_ref): m.recipient for m in sent})
        hits = [item for item in items if isinstance(item, Hit)]
        if not hits:
            return
        events = self._events(hits)
        self._store("events", events, self.storage.add_events, Event.to_dict)
        # Hooks run even when storage failed: they may be the only other copy.
        for item in events if run_hooks else ():
            self.hooks.dispatch(item)

    def _events(self, hits: Sequence[Hit]) -> list[Event]:
        hits = [checked for hit in hits if (checked := self._checked(hit)) is not None]
        cache = self._recipients
        unknown = {(h.message_id, h.recipient_ref) for h in hits} - cache.keys()
        if unknown:
            try:
                self._remember(self.storage.recipients(unknown))
            except Exception:
                logger.exception("arktrack: recipient lookup failed; events keep to=None")
        return [
            Event(
                type=h.type,
                email_id=h.message_id,
                to=cache.get((h.message_id, h.recipient_ref)),
                user_agent=h.user_agent,
                ip_address=h.ip_address,
                timestamp=datetime.fromtimestamp(h.timestamp, UTC),
                url=h.url,
                recipient_ref=h.recipient_ref,
            )
            for h in hits
        ]

    def _remember(self, recipients: dict[MessageKey, str]) -> None:
        if len(self._recipients) + len(recipients) > RECIPIENT_CACHE_SIZE:
            self._recipients.clear()
        self._recipients.update(recipients)

    def _checked(self, hit: Hit) -> Hit | None:
        """The hit with its open token read, or None for a token that is not ours."""
        if not hit.token:
            return hit
        if self.codec is None:
            raise TypeError("a Recorder given open tokens needs a codec")
        try:
            opened = self.codec.load_open(hit.token)
        except InvalidToken:
            return None
        return hit._replace(
            token="", message_id=opened.message_id, recipient_ref=opened.recipient_ref
        )

    def _store(
        self,
        what: str,
        batch: Sequence[Any],
        write: Callable[[Sequence[Any]], None],
        as_dict: Callable[[Any], dict[str, Any]],
    ) -> None:
        # Inline recording runs on the request path, where a recipient is waiting. And
        # once storage has refused a whole round of retries, later batches get one try
        # each until it answers again, so that in a long outage the queue keeps draining
        # into the log instead of growing.
        delays = RETRY_DELAYS if self.background and not self._storage_down else ()
        for attempt, delay in enumerate((*delays, None)):
            try:
                write(batch)
                self._storage_down = False
                return
            except Exception:
                if delay is None:
                    break
                logger.warning(
                    "arktrack: storing %d %s failed (attempt %d), retrying",
                    len(batch),
                    what,
                    attempt + 1,
                    exc_info=True,
                )
                time.sleep(delay)
        self._storage_down = True
        # Keep the data where an operator can replay it from: the log.
        logger.exception(
            "arktrack: storage refused %d %s; they are logged here: %s",
            len(batch),
            what,
            json.dumps([as_dict(item) for item in batch]),
        )


def _sent_dict(message: SentMessage) -> dict[str, Any]:
    return {
        "message_id": message.message_id,
        "recipient": message.recipient,
        "recipient_ref": message.recipient_ref,
        "sent_at": message.sent_at.isoformat(),
    }


_live: weakref.WeakSet[Recorder] = weakref.WeakSet()


def _reset_after_fork() -> None:
    # The child inherits the queue's contents but not the writer thread; those items
    # belong to the parent, which writes them itself.
    for recorder in list(_live):
        recorder._reset()


def _drain_at_exit() -> None:
    for recorder in list(_live):
        recorder.close()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_reset_after_fork)
atexit.register(_drain_at_exit)
