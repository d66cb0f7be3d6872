"""Rewrite the HTML and plain-text bodies of an email message in place.

Tracking works on text (``rewrite.rewrite_document`` takes and returns ``str``), but a
message to send is MIME: its body is buried in ``multipart/*`` containers and stored
quoted-printable, base64 or raw, in whatever charset the author chose. This module finds
the body parts, hands their decoded text to a callable, and writes the result back in the
part's own charset and transfer encoding, leaving every header and every other part as it
was::

    import email
    import email.policy

    from arktrack.mime import rewrite_parts

    message = email.message_from_bytes(raw, policy=email.policy.default)
    rewrite_parts(
        message,
        html=lambda html: tracker.rewrite_html(html, message_id=mid, recipient=to),
        text=lambda text: text.replace("https://example.com/a", "https://t.example/c/1"),
    )
    raw = message.as_bytes()

It imports nothing outside the standard library and knows nothing of tracking.
"""

from __future__ import annotations

import base64
import functools
import quopri
from collections.abc import Callable, Iterator
from email.message import EmailMessage, MIMEPart

__all__ = ["rewrite_parts"]

# The transfer encodings we can write back as they were. Anything else (x-uuencode, a
# typo) is left alone rather than guessed at.
_TRANSFER_ENCODINGS = frozenset({"7bit", "8bit", "binary", "quoted-printable", "base64"})

# RFC 5322 2.1.1: a line is at most 998 octets, not counting the CRLF.
_MAX_LINE_OCTETS = 998


def rewrite_parts(
    message: EmailMessage,
    *,
    html: Callable[[str], str] | None,
    text: Callable[[str], str] | None = None,
) -> tuple[bool, bool]:
    """Apply `html` to the message's HTML body part and `text` to its plain-text body part;
    returns (html_part_found, text_part_found).

    The body parts are the first ``text/html`` and the first ``text/plain`` part that
    ``message.get_body()`` would find: the message itself if it is not multipart, the
    alternatives of a ``multipart/alternative``, the root of a ``multipart/related``, the
    parts of a ``multipart/mixed``. Unlike ``get_body()``, a part with a filename counts as
    an attachment even without ``Content-Disposition: attachment``, and the contents of a
    ``multipart/signed`` container are never rewritten, as that would break the signature.
    Forwarded ``message/rfc822`` parts are not looked into.

    The new text is written back in the part's charset, or in UTF-8 if that charset cannot
    hold it, and in the part's transfer encoding, except that 7bit, 8bit and binary switch
    to quoted-printable when a line would exceed 998 octets or, for 7bit, when the encoded
    text is no longer ASCII. No other header of the part changes. If a callable returns
    its input unchanged, the part's bytes are not touched at all.

    A flag is False when its callable is None, when there is no such body part, or when
    the part cannot be decoded faithfully (unknown charset, bytes invalid in the charset,
    damaged base64, an unsupported transfer encoding); that part is then left exactly as
    it was and its callable is not called. Both callables run before anything is written,
    so if one raises, the message is unchanged.

    Raises TypeError for a legacy ``email.message.Message``: parse messages with
    ``policy=email.policy.default`` to get an ``EmailMessage``.
    """
    if not isinstance(message, EmailMessage):
        raise TypeError(
            f"rewrite_parts() needs an email.message.EmailMessage, got {type(message).__name__}: "
            f"parse the message with policy=email.policy.default"
        )
    body = list(_body_parts(message))
    writes = [_prepare(_first(body, "html"), html), _prepare(_first(body, "plain"), text)]
    for write in writes:
        if write is not None:
            write()
    return writes[0] is not None, writes[1] is not None


def _body_parts(part: MIMEPart) -> Iterator[MIMEPart]:
    """The text parts that make up the body, in the order ``MIMEPart.get_body()`` walks."""
    # get_body() only counts Content-Disposition: attachment, but many mailers mark an
    # attachment with nothing more than a filename.
    if part.is_attachment() or part.get_filename() is not None:
        return
    maintype, subtype = part.get_content_maintype(), part.get_content_subtype()
    if maintype == "text":
        yield part
    elif maintype == "multipart" and subtype != "signed":
        children = list(part.iter_parts())
        if subtype == "related" and children:
            # RFC 2387: the body is the root part, named by "start" or else the first;
            # the others are what it refers to (images, style sheets).
            start = part.get_param("start")
            children = [
                next((c for c in children if start and c["content-id"] == start), children[0])
            ]
        for child in children:
            yield from _body_parts(child)


def _first(parts: list[MIMEPart], subtype: str) -> MIMEPart | None:
    return next((part for part in parts if part.get_content_subtype() == subtype), None)


def _prepare(
    part: MIMEPart | None, rewrite: Callable[[str], str] | None
) -> Callable[[], None] | None:
    """Run `rewrite` on the part's text and return what stores the result, or None when
    there is nothing to rewrite or the text cannot be decoded faithfully."""
    if part is None or rewrite is None:
        return None
    transfer_encoding = _transfer_encoding(part)
    if transfer_encoding not in _TRANSFER_ENCODINGS:
        return None
    # Decode and encode with the very same charset name: get_content() reads the raw
    # parameter, which is a tuple when RFC 2231-encoded, and replaces bad bytes with
    # U+FFFD where we must refuse instead.
    charset = part.get_content_charset("us-ascii")
    known_defects = len(part.defects)
    data = part.get_payload(decode=True)
    # get_payload() does not raise on damaged base64: it records a defect and may return
    # the still-encoded bytes, which must not be taken for the text.
    if len(part.defects) > known_defects or not isinstance(data, bytes):
        return None
    try:
        old_text = data.decode(charset)
    except (LookupError, UnicodeDecodeError):
        return None
    new_text = rewrite(old_text)
    if new_text == old_text:
        # Re-encoding could still move soft line breaks; there is no reason to.
        return lambda: None
    try:
        new_data = new_text.encode(charset)
    except UnicodeEncodeError:
        # The callable added what the charset cannot hold (say, a non-ASCII link in a
        # us-ascii part). UTF-8 holds everything.
        charset, new_data = "utf-8", new_text.encode("utf-8")
    transfer_encoding, payload = _transfer_encode(new_data, transfer_encoding)
    return functools.partial(_store, part, payload, charset, transfer_encoding)


def _transfer_encoding(part: MIMEPart) -> str:
    return str(part.get("content-transfer-encoding", "7bit")).strip().lower()


def _transfer_encode(data: bytes, transfer_encoding: str) -> tuple[str, str]:
    """Return the transfer encoding to use for `data` and the payload in it."""
    if transfer_encoding in ("7bit", "8bit", "binary"):
        too_long = any(len(line) > _MAX_LINE_OCTETS for line in data.splitlines())
        if too_long or (transfer_encoding == "7bit" and not data.isascii()):
            transfer_encoding = "quoted-printable"
    if transfer_encoding == "quoted-printable":
        return transfer_encoding, quopri.encodestring(data).decode("ascii")
    if transfer_encoding == "base64":
        return transfer_encoding, base64.encodebytes(data).decode("ascii")
    # How the email package itself holds raw 8-bit bytes in a str payload: BytesGenerator
    # writes the surrogates back out as the original bytes.
    return transfer_encoding, data.decode("ascii", "surrogateescape")


def _store(part: MIMEPart, payload: str, charset: str, transfer_encoding: str) -> None:
    """Set the part's payload, changing the charset and transfer encoding headers only if
    they differ, in place, so that the other headers and Content-Type parameters stay."""
    if charset != part.get_content_charset("us-ascii"):
        part.set_param("charset", charset, replace="content-type" in part)
    if transfer_encoding != _transfer_encoding(part):
        if "content-transfer-encoding" in part:
            part.replace_header("Content-Transfer-Encoding", transfer_encoding)
        else:
            part["Content-Transfer-Encoding"] = transfer_encoding
    part.set_payload(payload)
