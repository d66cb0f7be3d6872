"""rewrite_parts() on real messages: built with EmailMessage, serialised, parsed back."""

from __future__ import annotations

import base64
import email
import email.policy
import quopri
from email.message import EmailMessage

import pytest

from arktrack.mime import rewrite_parts

from .messages import body, parse, reparse

OLD = "https://example.com/a"
NEW = "https://t.example/c/XYZ"
PIXEL = '<img src="https://t.example/o/1" width="1" height="1" alt="">'
HTML = f'<html><body><p>Caf\u00e9 <a href="{OLD}">go</a></p></body></html>\n'
TRACKED_HTML = f'<html><body><p>Caf\u00e9 <a href="{NEW}">go</a></p>{PIXEL}</body></html>\n'
PLAIN = f"Caf\u00e9: {OLD}\n"
TRACKED_PLAIN = f"Caf\u00e9: {NEW}\n"


def track_links(text: str) -> str:
    return text.replace(OLD, NEW)


def track_html(html: str) -> str:
    return track_links(html).replace("</body>", PIXEL + "</body>")


def must_not_run(text: str) -> str:
    raise AssertionError(f"called with {text!r}")


def encoded_lines(part: EmailMessage) -> list[str]:
    payload = part.get_payload()
    assert isinstance(payload, str)
    return payload.splitlines()


def single_part(text: str, subtype: str, charset: str, cte: str) -> EmailMessage:
    message = EmailMessage()
    message.set_content(text, subtype=subtype, charset=charset, cte=cte)
    return reparse(message)


@pytest.mark.parametrize(
    ("subtype", "charset", "cte", "text", "expected", "encoded"),
    [
        pytest.param(
            "html",
            "utf-8",
            "quoted-printable",
            HTML,
            TRACKED_HTML,
            b'Caf=C3=A9 <a href=3D"https://t.example/c/XYZ">',
            id="utf-8-qp-html",
        ),
        pytest.param(
            "html",
            "utf-8",
            "base64",
            HTML,
            TRACKED_HTML,
            base64.encodebytes(TRACKED_HTML.encode("utf-8")),
            id="utf-8-base64-html",
        ),
        pytest.param(
            "plain",
            "iso-8859-1",
            "quoted-printable",
            PLAIN,
            TRACKED_PLAIN,
            b"Caf=E9: https://t.example/c/XYZ\n",
            id="latin-1-qp",
        ),
        pytest.param(
            "plain",
            "iso-2022-jp",
            "7bit",
            f"\u65e5\u672c\u8a9e\u306e\u304a\u77e5\u3089\u305b {OLD}\n",
            f"\u65e5\u672c\u8a9e\u306e\u304a\u77e5\u3089\u305b {NEW}\n",
            f"\u65e5\u672c\u8a9e\u306e\u304a\u77e5\u3089\u305b {NEW}\n".encode("iso-2022-jp"),
            id="iso-2022-jp-7bit",
        ),
        pytest.param(
            "plain",
            "us-ascii",
            "7bit",
            f"Go to {OLD}\n",
            f"Go to {NEW}\n",
            b"\n\nGo to https://t.example/c/XYZ\n",
            id="us-ascii-7bit",
        ),
        pytest.param(
            "plain",
            "utf-8",
            "8bit",
            PLAIN,
            TRACKED_PLAIN,
            TRACKED_PLAIN.encode("utf-8"),
            id="utf-8-8bit",
        ),
    ],
)
def test_round_trip_keeps_charset_and_transfer_encoding(
    subtype: str, charset: str, cte: str, text: str, expected: str, encoded: bytes
) -> None:
    message = single_part(text, subtype, charset, cte)

    found = rewrite_parts(message, html=track_html, text=track_links)

    assert found == (subtype == "html", subtype == "plain")
    raw = message.as_bytes()
    assert encoded in raw
    received = parse(raw)
    assert received.get_content() == expected
    assert received.get_content_type() == f"text/{subtype}"
    assert received.get_content_charset() == charset
    assert received["Content-Transfer-Encoding"] == cte


def test_quoted_printable_output_decodes_exactly_with_short_lines() -> None:
    links = " ".join(f'<a href="{OLD}?n={n}">link {n}</a>' for n in range(12))
    message = single_part(f"<p>{links}</p>\n", "html", "utf-8", "quoted-printable")
    assert 'href=3D"https://example.com/a?n=3D0"' in message.get_payload()

    rewrite_parts(message, html=track_html)

    received = reparse(message)
    payload = received.get_payload()
    assert isinstance(payload, str)
    lines = payload.splitlines()
    assert max(map(len, lines)) <= 76
    assert len(lines) > 1
    assert all(line.endswith("=") for line in lines[:-1])  # soft breaks: the HTML is one line
    assert 'href=3D"https://t.example/c/XYZ?n=3D0"' in payload.replace("=\n", "")
    expected = f"<p>{links}</p>\n".replace(OLD, NEW)
    assert quopri.decodestring(payload.encode("ascii")).decode("utf-8") == expected
    assert received.get_content() == expected


def test_base64_output_has_short_lines() -> None:
    message = single_part(f"<p>{OLD}</p>" * 40 + "\n", "html", "utf-8", "base64")

    rewrite_parts(message, html=track_links)

    received = reparse(message)
    assert max(map(len, encoded_lines(received))) == 76
    assert received.get_content() == f"<p>{NEW}</p>" * 40 + "\n"


@pytest.mark.parametrize("cte", ["7bit", "8bit"])
def test_line_longer_than_998_octets_switches_to_quoted_printable(cte: str) -> None:
    message = single_part(f"<p>{OLD}</p>" * 30 + "\n", "html", "us-ascii", cte)
    assert max(map(len, encoded_lines(message))) < 998

    rewrite_parts(message, html=lambda html: html.replace(OLD, NEW + "?" + "x" * 20))

    received = reparse(message)
    assert received["Content-Transfer-Encoding"] == "quoted-printable"
    assert received.get_content_charset() == "us-ascii"
    assert received.get_content() == f"<p>{NEW}?{'x' * 20}</p>" * 30 + "\n"
    assert max(map(len, encoded_lines(received))) <= 76


@pytest.mark.parametrize(
    ("charset", "cte", "new_cte"),
    [
        pytest.param("us-ascii", "7bit", "quoted-printable", id="us-ascii-7bit"),
        pytest.param("us-ascii", "8bit", "8bit", id="us-ascii-8bit"),
        pytest.param("iso-8859-1", "quoted-printable", "quoted-printable", id="latin-1-qp"),
        pytest.param("iso-8859-1", "base64", "base64", id="latin-1-base64"),
        pytest.param("iso-2022-jp", "7bit", "quoted-printable", id="iso-2022-jp-7bit"),
    ],
)
def test_text_the_charset_cannot_hold_falls_back_to_utf_8(
    charset: str, cte: str, new_cte: str
) -> None:
    message = single_part(f"Go to {OLD}\n", "plain", charset, cte)

    rewrite_parts(message, html=None, text=lambda text: track_links(text) + "\u20ac \u2713\n")

    received = reparse(message)
    assert received.get_content() == f"Go to {NEW}\n\u20ac \u2713\n"
    assert received.get_content_charset() == "utf-8"
    assert received["Content-Transfer-Encoding"] == new_cte


@pytest.mark.parametrize("cte", ["7bit", "8bit", "quoted-printable", "base64"])
def test_crlf_wire_format_round_trips(cte: str) -> None:
    sent = EmailMessage(policy=email.policy.SMTP)
    sent.set_content(f"line one {OLD}\nline two\n", charset="utf-8", cte=cte)
    message = parse(sent.as_bytes())
    seen: list[str] = []

    def record(text: str) -> str:
        seen.append(text)
        return track_links(text)

    rewrite_parts(message, html=None, text=record)

    assert seen == [f"line one {OLD}\r\nline two\r\n"]
    received = parse(message.as_bytes(policy=email.policy.SMTP))
    assert received.get_content() == f"line one {NEW}\r\nline two\r\n"


def alternative() -> EmailMessage:
    message = EmailMessage()
    message["Subject"] = "Spring sale"
    message.set_content(PLAIN)
    message.add_alternative(HTML, subtype="html")
    return message


def test_multipart_alternative_rewrites_both_bodies() -> None:
    message = reparse(alternative())

    assert rewrite_parts(message, html=track_html, text=track_links) == (True, True)

    received = reparse(message)
    assert received.get_content_type() == "multipart/alternative"
    assert received["Subject"] == "Spring sale"
    assert body(received, "html").get_content() == TRACKED_HTML
    assert body(received, "plain").get_content() == TRACKED_PLAIN


def test_a_callable_of_none_leaves_its_part_alone() -> None:
    message = reparse(alternative())

    assert rewrite_parts(message, html=None, text=track_links) == (False, True)

    received = reparse(message)
    assert body(received, "html").get_content() == HTML
    assert body(received, "plain").get_content() == TRACKED_PLAIN


def test_missing_part_is_reported() -> None:
    message = single_part(PLAIN, "plain", "utf-8", "8bit")

    assert rewrite_parts(message, html=must_not_run, text=track_links) == (False, True)


def test_attachments_in_multipart_mixed_are_untouched() -> None:
    message = alternative()
    message.add_attachment(HTML, subtype="html", filename="invoice.html")
    message.add_attachment(PLAIN, filename="notes.txt")
    message = reparse(message)

    assert rewrite_parts(message, html=track_html, text=track_links) == (True, True)

    received = reparse(message)
    assert body(received, "html").get_content() == TRACKED_HTML
    assert body(received, "plain").get_content() == TRACKED_PLAIN
    attachments = {part.get_filename(): part.get_content() for part in received.iter_attachments()}
    assert attachments == {"invoice.html": HTML, "notes.txt": PLAIN}


def test_a_part_with_a_filename_is_an_attachment_even_when_inline() -> None:
    message = EmailMessage()
    message.set_content(PLAIN)
    message.add_attachment(HTML, subtype="html", disposition="inline", filename="receipt.html")
    message = reparse(message)
    # The standard library would take the receipt for the HTML body.
    assert body(message, "html").get_filename() == "receipt.html"

    assert rewrite_parts(message, html=must_not_run, text=track_links) == (False, True)

    received = reparse(message)
    assert body(received, "plain").get_content() == TRACKED_PLAIN
    assert body(received, "html").get_content() == HTML


def test_html_inside_multipart_related_is_found_and_images_kept() -> None:
    message = alternative()
    html_part = body(message, "html")
    html_part.add_related(b"GIF89a\x01\x00\x01\x00", "image", "gif", cid="<logo@example.com>")
    message = reparse(message)

    assert rewrite_parts(message, html=track_html, text=track_links) == (True, True)

    received = reparse(message)
    related = received.get_body(("related",))
    assert related is not None
    html, image = related.iter_parts()
    assert html.get_content() == TRACKED_HTML
    assert image["Content-ID"] == "<logo@example.com>"
    assert image.get_content() == b"GIF89a\x01\x00\x01\x00"


def test_only_the_first_plain_part_is_rewritten() -> None:
    message = EmailMessage()
    message.set_content(PLAIN)
    message.make_mixed()
    footer = EmailMessage()
    footer.set_content(f"Unsubscribe: {OLD}\n")
    message.attach(footer)
    message = reparse(message)

    assert rewrite_parts(message, html=None, text=track_links) == (False, True)

    first, second = reparse(message).iter_parts()
    assert first.get_content() == TRACKED_PLAIN
    assert second.get_content() == f"Unsubscribe: {OLD}\n"


RELATED_WITH_START = b"""\
MIME-Version: 1.0
Content-Type: multipart/related; type="text/html"; start="<root@example.com>";
 boundary="b"

--b
Content-Type: image/gif
Content-ID: <logo@example.com>
Content-Transfer-Encoding: base64

R0lGODlhAQABAA==
--b
Content-Type: text/html; charset=us-ascii
Content-ID: <root@example.com>

<a href="https://example.com/a"><img src="cid:logo@example.com"></a>
--b--
"""


def test_multipart_related_root_named_by_start() -> None:
    message = parse(RELATED_WITH_START)

    assert rewrite_parts(message, html=track_links) == (True, False)

    received = reparse(message)
    assert body(received, "html").get_content() == (
        f'<a href="{NEW}"><img src="cid:logo@example.com"></a>'
    )


def test_forwarded_message_is_not_looked_into() -> None:
    forwarded = EmailMessage()
    forwarded["Subject"] = "Original"
    forwarded.set_content(HTML, subtype="html")
    wrapper = EmailMessage()
    wrapper.set_content(forwarded)
    message = EmailMessage()
    message.set_content(PLAIN)
    message.make_mixed()
    message.attach(wrapper)
    message = reparse(message)

    assert rewrite_parts(message, html=must_not_run, text=track_links) == (False, True)

    received = reparse(message)
    _, forwarded_part = received.iter_parts()
    inner = forwarded_part.get_content()
    assert isinstance(inner, EmailMessage)
    assert inner.get_content() == HTML
    assert body(received, "plain").get_content() == TRACKED_PLAIN


SIGNED = b"""\
MIME-Version: 1.0
Content-Type: multipart/signed; protocol="application/pgp-signature"; micalg=pgp-sha256;
 boundary="s"

--s
Content-Type: text/plain; charset=us-ascii

Go to https://example.com/a
--s
Content-Type: application/pgp-signature

-----BEGIN PGP SIGNATURE-----
iQEzBAEBCAAdFiEE
-----END PGP SIGNATURE-----
--s--
"""


def test_signed_content_is_not_rewritten() -> None:
    message = parse(SIGNED)
    before = message.as_bytes()

    assert rewrite_parts(message, html=must_not_run, text=must_not_run) == (False, False)
    assert message.as_bytes() == before


FLOWED = (
    b"MIME-Version: 1.0\n"
    b"Content-Type: text/plain; charset=us-ascii; format=flowed; delsp=yes\n"
    b"Content-Language: en\n"
    b"Content-Transfer-Encoding: 7bit\n"
    b"Content-ID: <body@example.com>\n"
    b"Content-Disposition: inline\n"
    b"Content-Location: https://example.com/body.txt\n"
    b"X-Campaign: spring\n"
    b"\n"
    b"Go to https://example.com/a \n"
    b"today.\n"
)


@pytest.mark.parametrize(
    ("added", "content_type", "cte"),
    [
        pytest.param(
            "",
            "text/plain; charset=us-ascii; format=flowed; delsp=yes",
            "7bit",
            id="same-charset",
        ),
        pytest.param(
            "\u00e9\n",
            'text/plain; charset="utf-8"; format="flowed"; delsp="yes"',
            "quoted-printable",
            id="utf-8-fallback",
        ),
    ],
)
def test_other_headers_and_parameters_are_kept_in_order(
    added: str, content_type: str, cte: str
) -> None:
    message = parse(FLOWED)

    rewrite_parts(message, html=None, text=lambda text: track_links(text) + added)

    raw = message.as_bytes()
    assert raw.split(b"\n\n")[0].decode("ascii").splitlines() == [
        "MIME-Version: 1.0",
        f"Content-Type: {content_type}",
        "Content-Language: en",
        f"Content-Transfer-Encoding: {cte}",
        "Content-ID: <body@example.com>",
        "Content-Disposition: inline",
        "Content-Location: https://example.com/body.txt",
        "X-Campaign: spring",
    ]
    received = parse(raw)
    assert received.get_param("format") == "flowed"
    assert received.get_content() == f"Go to {NEW} \ntoday.\n{added}"


@pytest.mark.parametrize(
    ("added", "expected"),
    [
        pytest.param(
            "",
            b"Subject: hi\n\nGo to https://t.example/c/XYZ\n",
            id="ascii",
        ),
        pytest.param(
            "\u00e9\n",
            b"Subject: hi\n"
            b'Content-Type: text/plain; charset="utf-8"\n'
            b"Content-Transfer-Encoding: quoted-printable\n\n"
            b"Go to https://t.example/c/XYZ\n=C3=A9\n",
            id="non-ascii",
        ),
    ],
)
def test_message_without_mime_headers_gets_them_only_when_needed(
    added: str, expected: bytes
) -> None:
    message = parse(b"Subject: hi\n\nGo to https://example.com/a\n")

    assert rewrite_parts(message, html=None, text=lambda text: track_links(text) + added) == (
        False,
        True,
    )
    assert message.as_bytes() == expected


@pytest.mark.parametrize(
    "raw",
    [
        pytest.param(
            b"Content-Type: text/html; charset=x-bogus\n"
            b"Content-Transfer-Encoding: quoted-printable\n\n"
            b'<a href=3D"https://example.com/a">x</a>\n',
            id="unknown-charset",
        ),
        pytest.param(
            b"Content-Type: text/html; charset=utf-8\n"
            b"Content-Transfer-Encoding: 8bit\n\n"
            b'caf\xe9 <a href="https://example.com/a">x</a>\n',
            id="invalid-utf-8",
        ),
        pytest.param(
            b"Content-Type: text/html; charset=us-ascii\n"
            b"Content-Transfer-Encoding: 7bit\n\n"
            b'caf\xe9 <a href="https://example.com/a">x</a>\n',
            id="8-bit-bytes-in-us-ascii",
        ),
        pytest.param(
            b"Content-Type: text/html; charset=utf-8\n"
            b"Content-Transfer-Encoding: base64\n\n"
            b"PGEgaHJlZj0iaHR0cHM6Ly9leGFtcGxlLmNvbS9hIj54PC9hP\n",
            id="damaged-base64",
        ),
        pytest.param(
            b"Content-Type: text/html; charset=us-ascii\n"
            b"Content-Transfer-Encoding: x-uuencode\n\n"
            b"begin 644 a.html\n"
            b"M/&$@:')E9CTB:'1T<',Z+R]E>&%M<&QE+F-O;2]A(CYX/\"]A/@H`\n"
            b"`\nend\n",
            id="unsupported-transfer-encoding",
        ),
    ],
)
def test_part_that_cannot_be_decoded_is_left_untouched(raw: bytes) -> None:
    message = parse(raw)

    assert rewrite_parts(message, html=must_not_run) == (False, False)
    assert message.as_bytes() == raw


def test_unchanged_text_leaves_the_bytes_alone() -> None:
    raw = (
        b"Content-Type: text/html; charset=utf-8\n"
        b"Content-Transfer-Encoding: quoted-printable\n\n"
        b"<p>Hello=\n world</p>\n"
    )
    message = parse(raw)

    assert rewrite_parts(message, html=lambda html: html) == (True, False)
    assert message.as_bytes() == raw


def test_a_failing_callable_leaves_the_message_unchanged() -> None:
    message = reparse(alternative())
    before = message.as_bytes()

    def fail(text: str) -> str:
        raise ValueError("no")

    with pytest.raises(ValueError, match="no"):
        rewrite_parts(message, html=track_html, text=fail)
    assert message.as_bytes() == before


def test_legacy_message_is_rejected() -> None:
    legacy = email.message_from_bytes(
        b"Content-Type: text/plain\n\nhi\n", policy=email.policy.compat32
    )

    with pytest.raises(TypeError, match=r"policy=email\.policy\.default"):
        rewrite_parts(legacy, html=track_html)  # type: ignore[arg-type]
