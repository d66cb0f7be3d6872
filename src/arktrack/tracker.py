"""The :class:`Tracker`: settings, tokens, storage, hooks and the endpoint handler in one
object that a mailer and a web app share."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Mapping, Sequence
from datetime import date, datetime, timezone
from typing import Any, TypeVar

from .errors import ConfigError
from .events import Event, EventType, Hooks
from .handler import TrackingHandler
from .pixel import pixel_tag
from .recorder import Recorder
from .rewrite import looks_like_html, rewrite_document
from .settings import DEFAULT_STORAGE, ENV_NAMES, from_mapping, validate
from .stats import Stats
from .stats import compute as compute_stats
from .storage import SentMessage, Storage, open_storage
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
    believed. ``background=False`` records each event on the request path instead of a
    writer thread (for environments that freeze idle processes).
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
        self,
        html: str,
        *,
        message_id: str,
        recipient: str,
        track_opens: bool = True,
        track_clicks: bool = True,
    ) -> str:
        """Register the message as sent and return the HTML with its links tracked and the
        open pixel inserted. Only the tracked href values change and the pixel is added;
        every other byte stays as written. Plain text comes back unchanged."""
        ref = self.register_message(message_id, recipient)
        if not (track_opens or track_clicks) or not looks_like_html(html):
            return html

        def click(destination: str) -> str | None:
            return self._click_url(message_id, ref, destination)

        return rewrite_document(
            html,
            click_url=click if track_clicks else None,
            pixel_tag=pixel_tag(self._open_url(message_id, ref)) if track_opens else None,
        )

    def register_message(
        self, message_id: str, recipient: str, sent_at: datetime | None = None
    ) -> str:
        """Count a message as sent (``rewrite_html`` does this); returns the recipient ref
        its tokens carry. Registering the same message and recipient again is a no-op."""
        _require_text("message_id", message_id)
        _require_text("recipient", recipient)
        ref = self.codec.recipient_ref(recipient)
        moment = sent_at or datetime.now(timezone.utc)
        self.storage.register_message(SentMessage(message_id, recipient, ref, moment))
        return ref

    def open_url(self, message_id: str, recipient: str) -> str:
        """The pixel URL for a message, for mailers that build their own ``<img>``; call
        :meth:`register_message` for the message too."""
        return self._open_url(message_id, self.codec.recipient_ref(recipient))

    def click_url(self, destination: str, *, message_id: str, recipient: str) -> str | None:
        """The tracked form of one http(s) link; None for any other link and for one whose
        tracked form would exceed 2,048 characters. Call :meth:`register_message` for
        the message too (``rewrite_html`` does), or its events resolve no recipient and
        it counts in no stats."""
        return self._click_url(message_id, self.codec.recipient_ref(recipient), destination)

    def _open_url(self, message_id: str, ref: str) -> str:
        return self._open_prefix + self.codec.dump_open(OpenToken(message_id, ref))

    def _click_url(self, message_id: str, ref: str, destination: str) -> str | None:
        if not destination.lower().startswith(("http://", "https://")):
            return None  # the redirect only ever goes to http(s)
        try:
            token = self.codec.dump_click(ClickToken(message_id, ref, destination))
        except UnicodeEncodeError:
            return None  # undecodable bytes from a legacy-charset file: left as written
        url = self._click_prefix + token
        return url if len(url) <= MAX_URL_LENGTH else None

    def record_bounce(self, message_id: str, recipient: str | None = None) -> int:
        """Mark a message (to one recipient, or to all) as bounced: it stops counting as
        delivered. Returns how many (message, recipient) pairs were marked."""
        _require_text("message_id", message_id)
        return self.storage.mark_bounced(message_id, recipient, datetime.now(timezone.utc))

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
        """Wait until every hit so far is stored and its hooks have run."""
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


def _require_text(name: str, value: object) -> None:
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(name, f"must be a non-empty string, got {value!r}")


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
    track_opens: bool = True,
    track_clicks: bool = True,
) -> str:
    """:meth:`Tracker.rewrite_html` as a function, for existing mailers. Without
    ``tracker`` it uses one built from ``ARKTRACK_*`` environment variables."""
    return (tracker or default_tracker()).rewrite_html(
        html,
        message_id=message_id,
        recipient=recipient,
        track_opens=track_opens,
        track_clicks=track_clicks,
    )
