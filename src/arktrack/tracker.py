"""The :class:`Tracker`: settings, tokens, storage, hooks and the endpoint handler in one
object that a mailer and a web app share."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import UTC, date, datetime
from email.message import EmailMessage
from typing import Any, TypeVar, Unpack

from .errors import ConfigError
from .events import Event, EventType, Hooks
from .handler import TrackingHandler
from .links import (
    LinkReport,
    MessageReport,
    Options,
    RewriteOptions,
    RewriteReport,
    has_placeholder,
)
from .mime import rewrite_parts
from .pixel import pixel_tag
from .recorder import Recorder
from .rewrite import rewrite_document
from .settings import DEFAULT_STORAGE, ENV_NAMES, from_mapping, validate
from .stats import Stats
from .stats import compute as compute_stats
from .storage import MAX_MESSAGE_ID, MAX_RECIPIENT, SentMessage, Storage, open_storage
from .text import find_urls, replace_urls
from .tokens import ClickToken, OpenToken, TokenCodec

#: Outlook truncates longer URLs; a link that would exceed this is left untracked.
MAX_URL_LENGTH = 2048

H = TypeVar("H", bound=Callable[[Event], object])


class Tracker:
    """Email open and click tracking.

    ``secret_key`` signs the links (a list rotates keys: the last signs, all verify);
    ``base_url`` is where ``/o`` and ``/c`` are served, path prefix included; ``storage``
    is a SQLite or PostgreSQL URL, ``"memory://"`` or a :class:`~arktrack.storage.Storage`;
    ``trusted_proxies`` lists the addresses (or networks) whose ``X-Forwarded-For`` is
    believed. ``background=False`` stores each event on the request path instead of a
    writer thread (for environments that freeze idle processes), and registrations
    inside :meth:`batch` one by one.
    """

    def __init__(
        self,
        *,
        secret_key: str | Sequence[str] | None,
        base_url: str | None,
        storage: str | Storage = DEFAULT_STORAGE,
        trusted_proxies: str | Sequence[str] = (),
        background: bool = True,
        setting_names: Mapping[str, str] | None = None,
    ) -> None:
        names = dict(setting_names or {})
        self.settings = validate(
            secret_key=secret_key,
            base_url=base_url,
            trusted_proxies=trusted_proxies,
            names=names,
        )
        self.codec = TokenCodec(self.settings.secret_keys)
        self.storage = open_storage(storage, setting=names.get("storage", "storage"))
        self.hooks = Hooks()
        self.recorder = Recorder(self.storage, self.hooks, self.codec, background=background)
        self.handler = TrackingHandler(self.settings, self.codec, self.recorder)
        # Per tracker and per context (thread, asyncio task): the pid of the process whose
        # batch() this code is inside, or 0. A pid, because a process forked inside the
        # block inherits the context but not the block's end, which writes the queue.
        self._batching: ContextVar[int] = ContextVar("arktrack_batching", default=0)
        self._open_prefix = f"{self.settings.base_url}/o/"
        self._click_prefix = f"{self.settings.base_url}/c/"

    @classmethod
    def from_env(
        cls,
        environ: Mapping[str, str] | None = None,
        *,
        config: Mapping[str, Any] | None = None,
        **overrides: Any,
    ) -> Tracker:
        """A tracker from ``ARKTRACK_*`` settings: ``config`` (e.g. a Flask ``app.config``)
        first, then ``environ`` (default: ``os.environ``); keyword ``overrides`` win over
        both. Errors name the variable a value came from."""
        found = from_mapping(config, environ)
        values: dict[str, Any] = {
            "secret_key": found.get("secret_key"),
            "base_url": found.get("base_url"),
            "storage": found.get("storage", DEFAULT_STORAGE),
            "trusted_proxies": found.get("trusted_proxies", ()),
            **overrides,
        }
        names = {key: env for key, env in ENV_NAMES.items() if key not in overrides}
        return cls(setting_names=names, **values)

    # -- sending ------------------------------------------------------------------------

    def rewrite_html(
        self, html: str, *, message_id: str, recipient: str, **options: Unpack[RewriteOptions]
    ) -> str:
        """Register the message as sent and return the HTML with its links tracked and the
        open pixel inserted. Only the tracked href values change, the pixel is added and
        opt-out attributes are removed; every other byte stays as written. Plain text
        comes back unchanged. ``options``: see :class:`~arktrack.RewriteOptions`."""
        return self.rewrite_html_report(
            html, message_id=message_id, recipient=recipient, **options
        ).text

    def rewrite_html_report(
        self, html: str, *, message_id: str, recipient: str, **options: Unpack[RewriteOptions]
    ) -> RewriteReport:
        """:meth:`rewrite_html`, saying what it did: the HTML is the report's ``text``,
        and ``links`` tells for each link whether it was tracked and, if not, why."""
        _require_str("html", html)
        return self._rewrite_registered(self._rewrite_html, html, message_id, recipient, options)

    def rewrite_text(
        self, text: str, *, message_id: str, recipient: str, **options: Unpack[RewriteOptions]
    ) -> str:
        """Register the message as sent and return the plain text with its bare http(s)
        URLs tracked, by the same rules as :meth:`rewrite_html` (trailing punctuation is
        not part of a URL). Open tracking does not apply to text."""
        return self.rewrite_text_report(
            text, message_id=message_id, recipient=recipient, **options
        ).text

    def rewrite_text_report(
        self, text: str, *, message_id: str, recipient: str, **options: Unpack[RewriteOptions]
    ) -> RewriteReport:
        """:meth:`rewrite_text`, saying what it did (see :meth:`rewrite_html_report`)."""
        _require_str("text", text)
        return self._rewrite_registered(self._rewrite_text, text, message_id, recipient, options)

    def rewrite_message(
        self,
        message: EmailMessage,
        *,
        message_id: str,
        recipient: str,
        track_text: bool = False,
        **options: Unpack[RewriteOptions],
    ) -> MessageReport:
        """Track the HTML body (and, with ``track_text``, the plain-text body) of an email
        in place, whatever their transfer encoding and charset, and register the message
        once. Attachments are never touched. The report says what was done to each body
        part: ``None`` for a part the message lacks, or could not be decoded (unknown
        charset, bytes invalid in it), which is then left exactly as it was."""
        checked, ref = self._prepare(message_id, recipient, options)
        reports: dict[str, RewriteReport] = {}

        def html(body: str) -> str:
            reports["html"] = self._rewrite_html(body, message_id, ref, checked)
            return reports["html"].text

        def text(body: str) -> str:
            reports["text"] = self._rewrite_text(body, message_id, ref, checked)
            return reports["text"].text

        rewrite_parts(message, html=html, text=text if track_text else None)
        # Also when no part was rewritten: the message goes out untracked, and untracked
        # mail counts as delivered too.
        self._register(message_id, recipient, ref, None)
        return MessageReport(reports.get("html"), reports.get("text"))

    def _rewrite_registered(
        self,
        rewrite: Callable[[str, str, str, Options], RewriteReport],
        body: str,
        message_id: str,
        recipient: str,
        options: RewriteOptions,
    ) -> RewriteReport:
        checked, ref = self._prepare(message_id, recipient, options)
        report = rewrite(body, message_id, ref, checked)
        self._register(message_id, recipient, ref, None)
        return report

    def _prepare(
        self, message_id: str, recipient: str, options: RewriteOptions
    ) -> tuple[Options, str]:
        """Check a rewrite's arguments; returns its options and the recipient's ref. The
        message is registered after the rewrite: one whose rewrite raised is not sent,
        and must not count as delivered."""
        checked = Options.of(options)
        _require_text("message_id", message_id, MAX_MESSAGE_ID)
        _require_text("recipient", recipient, MAX_RECIPIENT)
        return checked, self.codec.recipient_ref(recipient)

    def _rewrite_html(
        self, html: str, message_id: str, ref: str, options: Options
    ) -> RewriteReport:
        return rewrite_document(
            html,
            track=self._link_tracker(message_id, ref, options) if options.track_clicks else None,
            pixel_tag=self._pixel_tag(html, message_id, ref) if options.track_opens else None,
            pixel_position=options.pixel_position,
        )

    def _pixel_tag(self, html: str, message_id: str, ref: str) -> str | None:
        url = self._open_url(message_id, ref)
        # A body rewritten before (a retried send) already has this very pixel.
        return None if url in html else pixel_tag(url)

    def _rewrite_text(
        self, text: str, message_id: str, ref: str, options: Options
    ) -> RewriteReport:
        found = find_urls(text)
        track = self._link_tracker(message_id, ref, options)
        reports = [
            LinkReport(link.url, skipped="clicks-off")
            if not options.track_clicks
            else LinkReport(link.url, skipped="placeholder")
            if has_placeholder(link.url)
            else track(link.url, link.context)
            for link in found
        ]
        rewritten = replace_urls(
            text,
            [(link, report.tracking_url) for link, report in zip(found, reports, strict=True)],
        )
        return RewriteReport(rewritten, tuple(reports))

    def _link_tracker(
        self, message_id: str, ref: str, options: Options
    ) -> Callable[[str, str | None], LinkReport]:
        def track(destination: str, text: str | None) -> LinkReport:
            if destination.startswith(self._click_prefix):
                # Rewriting a rewritten body (a retried send) must not wrap it twice.
                return LinkReport(destination, skipped="already-tracked")
            reason = options.skip_reason(destination, text)
            if reason is not None:
                return LinkReport(destination, skipped=reason)
            return self._track_link(message_id, ref, destination)

        return track

    def register_message(
        self, message_id: str, recipient: str, sent_at: datetime | None = None
    ) -> str:
        """Count a message as sent (``rewrite_html`` does this); returns the recipient ref
        its tokens carry. Registering the same message and recipient again is a no-op.

        It is stored before this returns (a storage failure raises
        :class:`~arktrack.errors.StorageError`), except inside :meth:`batch`."""
        _require_text("message_id", message_id, MAX_MESSAGE_ID)
        _require_text("recipient", recipient, MAX_RECIPIENT)
        if sent_at is not None and (
            not isinstance(sent_at, datetime) or sent_at.utcoffset() is None
        ):
            raise ConfigError("sent_at", f"must be an aware datetime, got {sent_at!r}")
        ref = self.codec.recipient_ref(recipient)
        self._register(message_id, recipient, ref, sent_at)
        return ref

    def _register(
        self, message_id: str, recipient: str, ref: str, sent_at: datetime | None
    ) -> None:
        message = SentMessage(message_id, recipient, ref, sent_at or datetime.now(UTC))
        if self._in_batch():
            self.recorder.register(message)
        else:
            self.storage.register_messages([message])

    def _in_batch(self) -> bool:
        return self._batching.get() == os.getpid()

    @contextmanager
    def batch(self) -> Iterator[None]:
        """``with tracker.batch():`` around a campaign's sending loop: the messages
        registered inside are queued for the writer thread, which stores them in batches
        while the loop goes on, instead of one commit per message in the loop. Leaving
        the block, by its end or an exception, waits until they are stored, so a worker
        may exit right after it. With a writer thread, a registration storage keeps
        refusing is logged (as JSON, to replay) rather than raised. Threads started inside
        the block register one by one; asyncio tasks created inside it keep batching."""
        token = self._batching.set(os.getpid())
        try:
            yield
        finally:
            try:
                self._batching.reset(token)
            finally:
                self.recorder.flush()

    def open_url(self, message_id: str, recipient: str) -> str:
        """The pixel URL for a message, for mailers that build their own ``<img>``; call
        :meth:`register_message` for the message too."""
        _require_text("message_id", message_id, MAX_MESSAGE_ID)
        return self._open_url(message_id, self.codec.recipient_ref(recipient))

    def click_url(self, destination: str, *, message_id: str, recipient: str) -> str | None:
        """The tracked form of one http(s) link; None for any other link, for one of this
        tracker's own links, and for one whose tracked form would exceed 2,048
        characters. Call :meth:`register_message` for
        the message too (``rewrite_html`` does), or its events resolve no recipient and
        it counts in no stats."""
        _require_text("message_id", message_id, MAX_MESSAGE_ID)
        if not destination.lower().startswith(("http://", "https://")):
            return None  # the redirect only ever goes to http(s)
        ref = self.codec.recipient_ref(recipient)
        options = Options(skip_unsubscribe=False)
        return self._link_tracker(message_id, ref, options)(destination, None).tracking_url

    def _open_url(self, message_id: str, ref: str) -> str:
        return self._open_prefix + self.codec.dump_open(OpenToken(message_id, ref))

    def _track_link(self, message_id: str, ref: str, destination: str) -> LinkReport:
        """The tracked form of an http(s) ``destination``."""
        try:
            token = self.codec.dump_click(ClickToken(message_id, ref, destination))
        except ValueError:
            # Undecodable bytes from a legacy-charset file, or a NUL: left as written.
            return LinkReport(destination, skipped="unencodable")
        url = self._click_prefix + token
        if len(url) > MAX_URL_LENGTH:
            return LinkReport(destination, skipped="too-long")
        return LinkReport(destination, tracking_url=url)

    def record_bounce(self, message_id: str, recipient: str | None = None) -> int:
        """Mark a message (to one recipient, or to all) as bounced: it stops counting as
        delivered. Returns how many (message, recipient) pairs were marked."""
        _require_text("message_id", message_id, MAX_MESSAGE_ID)
        if self._in_batch():
            self.recorder.flush()  # the message may still be queued
        return self.storage.mark_bounced(message_id, recipient, datetime.now(UTC))

    # -- receiving ----------------------------------------------------------------------

    def on_open(self, hook: H) -> H:
        """Decorator: call ``hook(event)`` for every stored ``email.opened`` event."""
        self.hooks.add(EventType.OPENED, hook)
        return hook

    def on_click(self, hook: H) -> H:
        """Decorator: call ``hook(event)`` for every stored ``email.clicked`` event."""
        self.hooks.add(EventType.CLICKED, hook)
        return hook

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until every hit (and every message registered in a :meth:`batch`) so far
        is stored and the hooks have run; False if ``timeout`` (seconds) passed first."""
        return self.recorder.flush(timeout)

    def close(self) -> None:
        """Drain pending events and release the storage's connections."""
        self.recorder.close()
        self.storage.close()

    # -- reporting ----------------------------------------------------------------------

    def stats(
        self,
        start_date: str | date | None = None,
        end_date: str | date | None = None,
    ) -> Stats:
        """Unique opens and clicks, delivered count and rates for messages sent between
        ``start_date`` and ``end_date`` (``YYYY-MM-DD``, UTC, both included; default: from
        the first message to today)."""
        return compute_stats(self.storage, start_date, end_date)

    def events(
        self, *, message_id: str | None = None, type: EventType | None = None
    ) -> list[Event]:
        """Stored events, oldest first."""
        return self.storage.events(message_id=message_id, type=type)


def _require_str(name: str, value: object) -> None:
    if not isinstance(value, str):
        decode = " (decode the bytes first)" if isinstance(value, (bytes, bytearray)) else ""
        raise TypeError(f"{name} must be a str, got {type(value).__name__}{decode}")


def _require_text(name: str, value: object, max_length: int) -> None:
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(name, f"must be a non-empty string, got {value!r}")
    if len(value) > max_length:
        raise ConfigError(name, f"must be at most {max_length} characters, got {len(value)}")
    if "\x00" in value:
        raise ConfigError(name, "must not contain NUL")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ConfigError(name, f"must be valid Unicode text, got {value!r}") from None


_default: Tracker | None = None
_default_lock = threading.Lock()


def default_tracker() -> Tracker:
    """The process-wide tracker built from ``ARKTRACK_*`` environment variables."""
    global _default
    with _default_lock:
        if _default is None:
            _default = Tracker.from_env(os.environ)
        return _default


def rewrite_html(
    html: str,
    *,
    message_id: str,
    recipient: str,
    tracker: Tracker | None = None,
    **options: Unpack[RewriteOptions],
) -> str:
    """:meth:`Tracker.rewrite_html` as a function, for existing mailers. Without
    ``tracker`` it uses one built from ``ARKTRACK_*`` environment variables."""
    return (tracker or default_tracker()).rewrite_html(
        html, message_id=message_id, recipient=recipient, **options
    )


def rewrite_text(
    text: str,
    *,
    message_id: str,
    recipient: str,
    tracker: Tracker | None = None,
    **options: Unpack[RewriteOptions],
) -> str:
    """:meth:`Tracker.rewrite_text` as a function, like :func:`rewrite_html`."""
    return (tracker or default_tracker()).rewrite_text(
        text, message_id=message_id, recipient=recipient, **options
    )
