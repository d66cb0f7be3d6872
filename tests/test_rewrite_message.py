"""``Tracker.rewrite_message`` on real messages: built with ``EmailMessage``, serialised to
bytes and parsed back with ``email.policy.default`` as a mailer would hold them, then
serialised and parsed again as the recipient gets them."""

from __future__ import annotations

import email
import email.policy
import re
from collections.abc import Callable, Iterator, Sequence
from email.message import EmailMessage, Message
from email.mime.multipart import MIMEMultipart
from email.mime.text import MIMEText
from typing import Unpack

import pytest

from arktrack import ConfigError, RewriteOptions, Tracker
from arktrack.storage import MemoryStorage, SentMessage
from arktrack.text import find_urls

from .conftest import BASE_URL, SECRET
from .messages import body, parse, reparse

MESSAGE_ID = "msg_mime_1@example.com"
RECIPIENT = "ada@example.com"

HTML = (
    "<!DOCTYPE html>\n"
    "<html><body>\n"
    "<p>Caf\u00e9 cr\u00e8me</p>\n"
    '<p><a href="https://x.example/a?x=1&amp;y=2">lire</a></p>\n'
    '<p><a href="https://news.x.example/b">news</a></p>\n'
    '<p><a href="https://x.example/unsubscribe">Se d\u00e9sabonner</a></p>\n'
    "</body></html>\n"
)
HTML_DESTINATIONS = ["https://x.example/a?x=1&y=2", "https://news.x.example/b"]
TEXT = (
    "Caf\u00e9 cr\u00e8me: https://x.example/a?x=1&y=2\n"
    "News (https://news.x.example/b).\n"
    "Unsubscribe: https://x.example/u\n"
)
TEXT_DESTINATIONS = ["https://x.example/a?x=1&y=2", "https://news.x.example/b"]

ATTACHED_HTML = '<html><body><a href="https://x.example/report">report</a></body></html>\n'
ATTACHED_TEXT = "Notes: https://x.example/notes\n"
PDF = b"%PDF-1.4\n" + bytes(range(256)) + b"\n%%EOF\n"

_HREF_OR_SRC = re.compile(r'(?:href|src)="([^"]*)"')


class CountingStorage(MemoryStorage):
    """A memory backend that also keeps every registration it is asked for."""

    def __init__(self) -> None:
        super().__init__()
        self.registered: list[SentMessage] = []

    def register_messages(self, batch: Sequence[SentMessage]) -> None:
        self.registered.extend(batch)
        super().register_messages(batch)


@pytest.fixture
def storage() -> CountingStorage:
    return CountingStorage()


@pytest.fixture
def counted(storage: CountingStorage) -> Iterator[Tracker]:
    made = Tracker(secret_key=SECRET, base_url=BASE_URL, storage=storage)
    yield made
    made.close()


@pytest.fixture
def reference() -> Iterator[Tracker]:
    """A second tracker with the same keys: tokens are deterministic, so it says what the
    tracked bodies must be without registering anything with the tracker under test."""
    made = Tracker(secret_key=SECRET, base_url=BASE_URL, storage="memory://")
    yield made
    made.close()


def headed(message: EmailMessage) -> EmailMessage:
    message["From"] = "news@example.com"
    message["To"] = RECIPIENT
    message["Subject"] = "Caf\u00e9 news"
    message["Message-ID"] = f"<{MESSAGE_ID}>"
    return message


def alternative(
    *,
    html_charset: str = "utf-8",
    html_cte: str = "quoted-printable",
    text_charset: str = "utf-8",
    text_cte: str = "quoted-printable",
) -> EmailMessage:
    message = headed(EmailMessage())
    message.set_content(TEXT, charset=text_charset, cte=text_cte)
    message.add_alternative(HTML, subtype="html", charset=html_charset, cte=html_cte)
    return reparse(message)


def rewrite(
    tracker: Tracker,
    message: EmailMessage,
    *,
    track_text: bool = False,
    **options: Unpack[RewriteOptions],
) -> None:
    tracker.rewrite_message(
        message, message_id=MESSAGE_ID, recipient=RECIPIENT, track_text=track_text, **options
    )


def expected_html(reference: Tracker, **options: Unpack[RewriteOptions]) -> str:
    return reference.rewrite_html(HTML, message_id=MESSAGE_ID, recipient=RECIPIENT, **options)


def expected_text(reference: Tracker, **options: Unpack[RewriteOptions]) -> str:
    return reference.rewrite_text(TEXT, message_id=MESSAGE_ID, recipient=RECIPIENT, **options)


def urls(body_text: str) -> list[str]:
    """The URLs of an HTML body's href and src attributes, or of a plain-text body."""
    found = _HREF_OR_SRC.findall(body_text)
    return found if found else [link.url for link in find_urls(body_text)]


def click_destinations(tracker: Tracker, body_text: str) -> list[str]:
    """Where the tracked links of a body lead, checking that each names our message."""
    prefix = f"{BASE_URL}/c/"
    clicks = [
        tracker.codec.load_click(url.removeprefix(prefix))
        for url in urls(body_text)
        if url.startswith(prefix)
    ]
    ref = tracker.codec.recipient_ref(RECIPIENT)
    assert all((click.message_id, click.recipient_ref) == (MESSAGE_ID, ref) for click in clicks)
    return [click.url for click in clicks]


def wire_lines(part: EmailMessage) -> list[str]:
    payload = part.get_payload()
    assert isinstance(payload, str)
    return payload.splitlines()


# -- the bodies -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("cte", "charset"),
    [
        pytest.param("quoted-printable", "utf-8", id="qp-utf8"),
        pytest.param("quoted-printable", "iso-8859-1", id="qp-latin1"),
        pytest.param("base64", "iso-8859-1", id="base64-latin1"),
        pytest.param("base64", "utf-8", id="base64-utf8"),
    ],
)
def test_html_part_gets_tracked_links_and_pixel_in_its_own_encoding(
    counted: Tracker, reference: Tracker, cte: str, charset: str
) -> None:
    message = alternative(html_charset=charset, html_cte=cte)
    html_wire = "\n".join(wire_lines(body(message, "html")))
    if cte == "quoted-printable":
        assert 'href=3D"https://x.example/a?x=3D1&amp;y=3D2"' in html_wire
    else:
        assert "href" not in html_wire
    text_before = body(message, "plain").as_bytes()
    headers_before = [(name, str(value)) for name, value in message.items()]

    rewrite(counted, message)
    sent = reparse(message)

    html_part = body(sent, "html")
    assert html_part["Content-Transfer-Encoding"] == cte
    assert html_part.get_content_charset() == charset
    tracked = expected_html(reference)
    # The bytes on the wire are the tracked HTML in the part's own charset.
    assert html_part.get_payload(decode=True) == tracked.encode(charset)
    assert html_part.get_content() == tracked
    assert all(len(line) <= 76 for line in wire_lines(html_part))

    hrefs = urls(tracked)
    assert hrefs[2] == "https://x.example/unsubscribe"
    assert click_destinations(counted, tracked) == HTML_DESTINATIONS
    (pixel,) = [url for url in hrefs if url.startswith(f"{BASE_URL}/o/")]
    opened = counted.codec.load_open(pixel.removeprefix(f"{BASE_URL}/o/"))
    assert (opened.message_id, opened.recipient_ref) == (
        MESSAGE_ID,
        counted.codec.recipient_ref(RECIPIENT),
    )
    assert tracked.index(pixel) < tracked.index("</body>")

    # The plain-text alternative and the message's headers are exactly as they were.
    assert body(sent, "plain").as_bytes() == text_before
    assert body(sent, "plain").get_content() == TEXT
    assert [(name, str(value)) for name, value in sent.items()] == headers_before


@pytest.mark.parametrize(
    ("cte", "charset"),
    [
        pytest.param("quoted-printable", "utf-8", id="qp-utf8"),
        pytest.param("base64", "iso-8859-1", id="base64-latin1"),
        pytest.param("8bit", "iso-8859-1", id="8bit-latin1"),
    ],
)
def test_track_text_tracks_the_plain_text_part_too(
    counted: Tracker, reference: Tracker, cte: str, charset: str
) -> None:
    message = alternative(text_charset=charset, text_cte=cte)
    rewrite(counted, message, track_text=True)
    sent = reparse(message)

    text_part = body(sent, "plain")
    assert text_part["Content-Transfer-Encoding"] == cte
    assert text_part.get_content_charset() == charset
    tracked = expected_text(reference)
    assert text_part.get_payload(decode=True) == tracked.encode(charset)
    assert tracked.endswith("Unsubscribe: https://x.example/u\n")
    assert click_destinations(counted, tracked) == TEXT_DESTINATIONS
    assert body(sent, "html").get_content() == expected_html(reference)


def test_a_single_part_html_message_is_tracked(counted: Tracker, reference: Tracker) -> None:
    message = headed(EmailMessage())
    message.set_content(HTML, subtype="html", charset="iso-8859-1", cte="quoted-printable")
    message = reparse(message)
    rewrite(counted, message, track_text=True)
    sent = reparse(message)
    assert sent.get_content_type() == "text/html"
    assert sent["Content-Transfer-Encoding"] == "quoted-printable"
    assert sent.get_payload(decode=True) == expected_html(reference).encode("iso-8859-1")


# -- attachments ----------------------------------------------------------------------------


def mixed() -> EmailMessage:
    message = headed(EmailMessage())
    message.set_content(TEXT)
    message.add_alternative(HTML, subtype="html")
    message.add_attachment(ATTACHED_HTML, subtype="html", filename="report.html")
    message.add_attachment(ATTACHED_TEXT, filename="notes.txt")
    message.add_attachment(PDF, maintype="application", subtype="pdf", filename="r.pdf")
    return reparse(message)


def attachments(message: EmailMessage) -> list[bytes]:
    found = [part.as_bytes() for part in message.iter_attachments()]
    assert len(found) == 3
    return found


def test_attachments_of_a_mixed_message_stay_byte_identical(
    counted: Tracker, reference: Tracker
) -> None:
    message = mixed()
    assert message.get_content_type() == "multipart/mixed"
    before = attachments(message)
    rewrite(counted, message, track_text=True)
    sent = reparse(message)
    assert attachments(sent) == before
    assert body(sent, "html").get_content() == expected_html(reference)
    assert body(sent, "plain").get_content() == expected_text(reference)
    raw = sent.as_bytes()
    assert b"https://x.example/report" in raw
    assert b"https://x.example/notes" in raw


def test_an_html_attachment_is_not_taken_for_the_body(counted: Tracker) -> None:
    message = headed(EmailMessage())
    message.set_content(TEXT)
    message.add_attachment(ATTACHED_HTML, subtype="html", filename="report.html")
    message = reparse(message)
    raw = message.as_bytes()
    rewrite(counted, message)
    # No HTML body and text not asked for: the message goes out exactly as it was.
    assert message.as_bytes() == raw
    assert counted.stats().summary.delivered == 1


# -- registration ---------------------------------------------------------------------------


@pytest.mark.parametrize("track_text", [False, True], ids=["html-only", "track-text"])
def test_the_message_is_registered_once(
    counted: Tracker, storage: CountingStorage, track_text: bool
) -> None:
    rewrite(counted, mixed(), track_text=track_text)
    assert [
        (sent.message_id, sent.recipient, sent.recipient_ref) for sent in storage.registered
    ] == [(MESSAGE_ID, RECIPIENT, counted.codec.recipient_ref(RECIPIENT))]
    assert counted.stats().summary.delivered == 1


def test_the_message_is_registered_once_in_sql_storage(sqlite_tracker: Tracker) -> None:
    rewrite(sqlite_tracker, alternative(), track_text=True)
    assert sqlite_tracker.stats().summary.delivered == 1
    assert sqlite_tracker.record_bounce(MESSAGE_ID) == 1


def compat32_parsed() -> Message:
    raw = alternative().as_bytes()
    message = email.message_from_bytes(raw)
    assert not isinstance(message, EmailMessage)
    return message


def compat32_built() -> Message:
    message = MIMEMultipart("alternative")
    message["To"] = RECIPIENT
    message.attach(MIMEText(TEXT, "plain", "utf-8"))
    message.attach(MIMEText(HTML, "html", "utf-8"))
    return message


@pytest.mark.parametrize(
    "legacy",
    [
        pytest.param(compat32_parsed, id="message_from_bytes-compat32"),
        pytest.param(compat32_built, id="email.mime"),
    ],
)
def test_a_legacy_message_raises_and_registers_nothing(
    counted: Tracker, storage: CountingStorage, legacy: Callable[[], Message]
) -> None:
    message = legacy()
    raw = message.as_bytes()
    with pytest.raises(TypeError, match=re.escape("policy=email.policy.default")):
        counted.rewrite_message(
            message,  # type: ignore[arg-type]
            message_id=MESSAGE_ID,
            recipient=RECIPIENT,
            track_text=True,
        )
    assert message.as_bytes() == raw
    assert storage.registered == []
    assert counted.stats().summary.delivered == 0


@pytest.mark.parametrize(
    ("message_id", "recipient", "error"),
    [
        pytest.param("", RECIPIENT, "message_id", id="empty-message-id"),
        pytest.param(MESSAGE_ID, " ", "recipient", id="blank-recipient"),
    ],
)
def test_bad_identifiers_raise_and_leave_the_message_alone(
    counted: Tracker, storage: CountingStorage, message_id: str, recipient: str, error: str
) -> None:
    message = alternative()
    raw = message.as_bytes()
    with pytest.raises(ConfigError) as raised:
        counted.rewrite_message(message, message_id=message_id, recipient=recipient)
    assert raised.value.setting == error
    assert message.as_bytes() == raw
    assert storage.registered == []


def test_an_unknown_option_raises_and_leaves_the_message_alone(
    counted: Tracker, storage: CountingStorage
) -> None:
    message = alternative()
    raw = message.as_bytes()
    with pytest.raises(TypeError, match="unknown rewrite option"):
        counted.rewrite_message(
            message,
            message_id=MESSAGE_ID,
            recipient=RECIPIENT,
            track_link=False,  # type: ignore[call-arg]
        )
    assert message.as_bytes() == raw
    assert storage.registered == []


# -- options --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "options",
    [
        pytest.param(RewriteOptions(track_opens=False), id="opens-off"),
        pytest.param(RewriteOptions(pixel_position="start"), id="pixel-start"),
        pytest.param(RewriteOptions(exclude_domains=["news.x.example"]), id="exclude-subdomain"),
        pytest.param(RewriteOptions(skip_unsubscribe=False), id="track-unsubscribe"),
    ],
)
def test_options_pass_through_to_both_parts(
    counted: Tracker, reference: Tracker, options: RewriteOptions
) -> None:
    message = alternative(html_cte="base64", html_charset="iso-8859-1")
    rewrite(counted, message, track_text=True, **options)
    sent = reparse(message)
    html = body(sent, "html").get_content()
    text = body(sent, "plain").get_content()
    assert html == expected_html(reference, **options)
    assert text == expected_text(reference, **options)
    # The option made a difference: without it the bodies would differ.
    assert (html, text) != (expected_html(reference), expected_text(reference))


def test_track_opens_false_leaves_out_the_pixel(counted: Tracker) -> None:
    message = alternative()
    rewrite(counted, message, track_opens=False)
    html = body(reparse(message), "html").get_content()
    assert f"{BASE_URL}/o/" not in html
    assert click_destinations(counted, html) == HTML_DESTINATIONS


def test_exclude_domains_leaves_those_links_as_written(counted: Tracker) -> None:
    message = alternative()
    text_before = body(message, "plain").as_bytes()
    rewrite(counted, message, track_text=True, exclude_domains=["x.example"])
    sent = reparse(message)
    html = body(sent, "html").get_content()
    assert urls(html)[:3] == [
        "https://x.example/a?x=1&amp;y=2",
        "https://news.x.example/b",
        "https://x.example/unsubscribe",
    ]
    assert f"{BASE_URL}/c/" not in html
    assert f"{BASE_URL}/o/" in html
    # Every text link is excluded, so the text part's bytes do not change at all.
    assert body(sent, "plain").as_bytes() == text_before


def test_nothing_to_track_leaves_every_byte_and_still_registers(
    counted: Tracker, storage: CountingStorage
) -> None:
    message = mixed()
    raw = message.as_bytes()
    rewrite(counted, message, track_text=True, track_opens=False, track_clicks=False)
    assert message.as_bytes() == raw
    # Sensitive mail sent untracked still counts as delivered.
    assert len(storage.registered) == 1
    assert counted.stats().summary.delivered == 1


def test_the_report_says_what_each_part_got(counted: Tracker) -> None:
    message = alternative()
    html_only = counted.rewrite_message(message, message_id=MESSAGE_ID, recipient=RECIPIENT)
    assert html_only.text is None
    assert html_only.html is not None
    assert [link.destination for link in html_only.html.tracked] == HTML_DESTINATIONS
    assert html_only.html.pixel

    both = counted.rewrite_message(
        alternative(), message_id=MESSAGE_ID, recipient=RECIPIENT, track_text=True
    )
    assert both.text is not None
    assert [link.destination for link in both.text.tracked] == TEXT_DESTINATIONS


def test_an_undecodable_html_part_is_reported_and_left_alone(counted: Tracker) -> None:
    raw = (
        b"Content-Type: text/html; charset=x-unknown-charset\r\n"
        b"Content-Transfer-Encoding: 8bit\r\n\r\n"
        b'<a href="https://x.example/">x</a>\r\n'
    )
    message = parse(raw)
    report = counted.rewrite_message(message, message_id=MESSAGE_ID, recipient=RECIPIENT)
    assert report.html is None
    assert message.as_bytes() == parse(raw).as_bytes()
