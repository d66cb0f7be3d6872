"""The framework-neutral core of the ``/o`` and ``/c`` endpoints: (method, path, a few
headers, peer address) in, a plain :class:`Response` out. The WSGI and ASGI layers only
translate."""

from __future__ import annotations

import logging
import re
import time
from typing import NamedTuple
from urllib.parse import quote, urlsplit, urlunsplit

from .clientip import client_ip
from .errors import InvalidToken
from .events import EventType
from .pixel import GIF, NO_CACHE_HEADERS
from .recorder import Hit, Recorder
from .settings import Settings
from .tokens import TokenCodec

logger = logging.getLogger("arktrack")

OPEN, CLICK = "o", "c"


# A named tuple: every click makes one, and a frozen dataclass costs twice as much.
class Response(NamedTuple):
    status: int
    headers: list[tuple[str, str]]
    body: bytes


def _plain(status: int, text: str, *extra: tuple[str, str]) -> Response:
    body = text.encode("utf-8")
    headers = [
        ("Content-Type", "text/plain; charset=utf-8"),
        ("Content-Length", str(len(body))),
        ("Cache-Control", "no-store"),
        ("X-Content-Type-Options", "nosniff"),
        *extra,
    ]
    return Response(status, headers, body)


PIXEL = Response(
    200,
    [("Content-Type", "image/gif"), ("Content-Length", str(len(GIF))), *NO_CACHE_HEADERS],
    GIF,
)
REDIRECT_HEADERS = [
    ("Content-Length", "0"),
    # Every click must reach us again, and the destination has no business seeing the
    # tracking URL.
    ("Cache-Control", "no-store"),
    ("Referrer-Policy", "no-referrer"),
]
NOT_FOUND = _plain(404, "This tracking link is not valid.\n")
NOT_ALLOWED = _plain(405, "Tracking links answer GET and HEAD only.\n", ("Allow", "GET, HEAD"))


def route(path: str, prefix: str) -> tuple[str, str] | None:
    """``"/t/c/abc"`` with prefix ``"/t"`` -> ``("c", "abc")``; None for any other path."""
    if not path.startswith(prefix):
        return None
    rest = path[len(prefix) :]
    if rest[:3] in ("/o/", "/c/"):
        return rest[1], rest[3:]
    return None


class TrackingHandler:
    def __init__(self, settings: Settings, codec: TokenCodec, recorder: Recorder) -> None:
        self.settings = settings
        self.codec = codec
        self.recorder = recorder

    def handle(
        self,
        method: str,
        kind: str,
        token: str,
        *,
        user_agent: str | None,
        forwarded_for: str | None,
        peer: str | None,
    ) -> Response:
        if method not in ("GET", "HEAD"):
            return NOT_ALLOWED
        if kind == OPEN:
            # The pixel is served whatever the token (a broken image in a recipient's mail
            # is our problem, not theirs), so checking it can wait for the writer thread.
            if token:  # an empty token would read as "already checked" in the writer
                self._record(EventType.OPENED, token, "", "", None, user_agent, forwarded_for, peer)
            return PIXEL
        try:
            click = self.codec.load_click(token)
        except InvalidToken:
            return NOT_FOUND
        self._record(
            EventType.CLICKED,
            "",
            click.message_id,
            click.recipient_ref,
            click.url,
            user_agent,
            forwarded_for,
            peer,
        )
        return Response(302, [("Location", header_safe_url(click.url)), *REDIRECT_HEADERS], b"")

    def _record(
        self,
        kind: EventType,
        token: str,
        message_id: str,
        recipient_ref: str,
        url: str | None,
        user_agent: str | None,
        forwarded_for: str | None,
        peer: str | None,
    ) -> None:
        try:
            ip = client_ip(peer, forwarded_for, self.settings.trusted_proxies)
            self.recorder.submit(
                Hit(kind, token, message_id, recipient_ref, url, user_agent, ip, time.time())
            )
        except Exception:
            # Whatever breaks here, the recipient still gets the pixel or the redirect.
            logger.exception("arktrack: recording a %s for %s failed", kind.value, message_id)


_UNSAFE_IN_HEADER = re.compile(r"[^\x21-\x7e]")


def header_safe_url(url: str) -> str:
    """The URL as an HTTP header can carry it: an IDN host in its ASCII (punycode) form and
    any other non-ASCII, space or control character percent-encoded as UTF-8."""
    if not _UNSAFE_IN_HEADER.search(url):
        return url
    parts = urlsplit(url)
    netloc = parts.netloc
    host = parts.hostname
    if host and not host.isascii():
        try:
            ascii_host = host.encode("idna").decode("ascii")
        except UnicodeError:
            ascii_host = quote(host, safe="")
        # hostname is lower-cased; replace the host as written, case-insensitively.
        start = netloc.lower().rfind(host)
        netloc = netloc[:start] + ascii_host + netloc[start + len(host) :]
    rebuilt = urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))
    return _UNSAFE_IN_HEADER.sub(lambda m: quote(m.group(), safe=""), rebuilt)
