from __future__ import annotations

import functools
import re
from html import unescape
from pathlib import Path
from typing import Any
from urllib.parse import urljoin

import pytest

from arktrack import Tracker
from arktrack.handler import header_safe_url
from arktrack.links import LinkReport, has_placeholder
from arktrack.rewrite import looks_like_html, rewrite_document

from .conftest import BASE_URL

PIXEL = '<img src="https://t.example/o/1" width="1" height="1" alt="" />'


class ClickRecorder:
    """A link tracker that numbers the links it sees and remembers their destinations
    and texts."""

    def __init__(self) -> None:
        self.destinations: list[str] = []
        self.texts: list[str | None] = []

    def __call__(self, destination: str, text: str | None) -> LinkReport:
        self.destinations.append(destination)
        self.texts.append(text)
        return LinkReport(destination, f"https://t.example/c/{len(self.destinations) - 1}")


def rewrite_links(html: str) -> tuple[str, list[str]]:
    recorder = ClickRecorder()
    return rewrite_document(html, track=recorder, pixel_tag=None).text, recorder.destinations


T0 = "https://t.example/c/0"
T1 = "https://t.example/c/1"


@pytest.mark.parametrize(
    ("html", "expected", "destinations"),
    [
        pytest.param(
            '<p><a href="https://x.example/a">x</a></p>',
            f'<p><a href="{T0}">x</a></p>',
            ["https://x.example/a"],
            id="double-quoted",
        ),
        pytest.param(
            "<p><a href='https://x.example/a'>x</a></p>",
            f"<p><a href='{T0}'>x</a></p>",
            ["https://x.example/a"],
            id="single-quoted",
        ),
        pytest.param(
            "<p><a href=https://x.example/a class=b>x</a></p>",
            f"<p><a href={T0} class=b>x</a></p>",
            ["https://x.example/a"],
            id="unquoted",
        ),
        pytest.param(
            "<p><a href=https://x.example/a>x</a></p>",
            f"<p><a href={T0}>x</a></p>",
            ["https://x.example/a"],
            id="unquoted-before-tag-end",
        ),
        pytest.param(
            '<p><a href = "http://x.example/">x</a></p>',
            f'<p><a href = "{T0}">x</a></p>',
            ["http://x.example/"],
            id="spaces-around-equals",
        ),
        pytest.param(
            '<p><a href= "http://x.example/">x</a></p>',
            f'<p><a href= "{T0}">x</a></p>',
            ["http://x.example/"],
            id="space-after-equals",
        ),
        pytest.param(
            "<p><a href\r\n  =\r\n  'http://x.example/'>x</a></p>",
            f"<p><a href\r\n  =\r\n  '{T0}'>x</a></p>",
            ["http://x.example/"],
            id="newlines-around-equals",
        ),
        pytest.param(
            '<P><A HREF="https://x.example/">x</A></P>',
            f'<P><A HREF="{T0}">x</A></P>',
            ["https://x.example/"],
            id="uppercase-tag-and-attribute",
        ),
        pytest.param(
            '<map><area shape="rect" Href="https://x.example/" alt="x"></map><p>',
            f'<map><area shape="rect" Href="{T0}" alt="x"></map><p>',
            ["https://x.example/"],
            id="area",
        ),
        pytest.param(
            '<p><a\r\n  class="button"\r\n  href="https://x.example/"\r\n  target="_blank"\r\n>x',
            f'<p><a\r\n  class="button"\r\n  href="{T0}"\r\n  target="_blank"\r\n>x',
            ["https://x.example/"],
            id="multi-line-tag-crlf",
        ),
        pytest.param(
            '<p><a/href="https://x.example/">x</a>',
            f'<p><a/href="{T0}">x</a>',
            ["https://x.example/"],
            id="slash-before-attribute",
        ),
        pytest.param(
            '<p><a title="a > b" data-x=\'>\' href="https://x.example/">x</a>',
            f'<p><a title="a > b" data-x=\'>\' href="{T0}">x</a>',
            ["https://x.example/"],
            id="gt-in-quoted-value-before-href",
        ),
        pytest.param(
            '<p><a href="https://x.example/?q=a>b" class="b">x</a>',
            f'<p><a href="{T0}" class="b">x</a>',
            ["https://x.example/?q=a>b"],
            id="gt-in-href-value",
        ),
        pytest.param(
            '<p><a title="x"href="https://x.example/">x</a>',
            f'<p><a title="x"href="{T0}">x</a>',
            ["https://x.example/"],
            id="no-space-after-quoted-value",
        ),
        pytest.param(
            '<p><a title=it\'s href="https://x.example/">x</a>',
            f'<p><a title=it\'s href="{T0}">x</a>',
            ["https://x.example/"],
            id="quote-inside-unquoted-value",
        ),
        pytest.param(
            '<p><a href="https://x.example/?a=1&amp;b=2">x</a>',
            f'<p><a href="{T0}">x</a>',
            ["https://x.example/?a=1&b=2"],
            id="entity-amp",
        ),
        pytest.param(
            '<p><a href="https://x.example/?a=1&amp;amp;b=2&amp;c=&amp;lt;">x</a>',
            f'<p><a href="{T0}">x</a>',
            ["https://x.example/?a=1&amp;b=2&c=&lt;"],
            id="entity-amp-decoded-once",
        ),
        pytest.param(
            '<p><a href="https://x.example/?a=1&amp;b=&lt;2&gt;">x</a>',
            f'<p><a href="{T0}">x</a>',
            ["https://x.example/?a=1&b=<2>"],
            id="entity-amp-beside-others",
        ),
        pytest.param(
            '<p><a href="https&#58;//x.example&#x2F;?q=caf&eacute;&amp">x</a>',
            f'<p><a href="{T0}">x</a>',
            ["https://x.example/?q=café&"],
            id="numeric-and-named-entities",
        ),
        pytest.param(
            '<p><a href="https://x.example/?a=1&region=eu&not=2&copy;">x</a>',
            f'<p><a href="{T0}">x</a>',
            ["https://x.example/?a=1&region=eu&not=2©"],
            id="query-names-that-start-like-entities",
        ),
        pytest.param(
            '<p><a href="  \r\n https://x.example/a \t ">x</a>',
            f'<p><a href="{T0}">x</a>',
            ["https://x.example/a"],
            id="whitespace-padded-value",
        ),
        pytest.param(
            '<p><a href="https://x.example/a\r\n/b">x</a>',
            f'<p><a href="{T0}">x</a>',
            ["https://x.example/a/b"],
            id="newline-inside-value",
        ),
        pytest.param(
            '<p><a href="HTTPS://X.EXAMPLE/">x</a>',
            f'<p><a href="{T0}">x</a>',
            ["HTTPS://X.EXAMPLE/"],
            id="uppercase-scheme",
        ),
        pytest.param(
            '<p><a data-href="https://no.example/" xhref="https://no.example/"'
            ' href="https://yes.example/">x</a>',
            f'<p><a data-href="https://no.example/" xhref="https://no.example/" href="{T0}">x</a>',
            ["https://yes.example/"],
            id="only-the-href-attribute",
        ),
        pytest.param(
            '<p><a href="https://one.example/" href="https://two.example/">x</a>',
            f'<p><a href="{T0}" href="https://two.example/">x</a>',
            ["https://one.example/"],
            id="only-the-first-href",
        ),
        pytest.param(
            '<p><a href="#top" href="https://two.example/">x</a>',
            '<p><a href="#top" href="https://two.example/">x</a>',
            [],
            id="untrackable-first-href-wins",
        ),
        pytest.param(
            '<!--[if !mso]><!--><a href="https://x.example/">x</a><!--<![endif]-->',
            f'<!--[if !mso]><!--><a href="{T0}">x</a><!--<![endif]-->',
            ["https://x.example/"],
            id="link-between-downlevel-revealed-comments",
        ),
        pytest.param(
            '<!--><!---><a href="https://x.example/">x</a><!-- -- --!>',
            f'<!--><!---><a href="{T0}">x</a><!-- -- --!>',
            ["https://x.example/"],
            id="abruptly-closed-comments",
        ),
        pytest.param(
            '<p><a href="https://a.example/">a</a> <a href="mailto:b@example.com">b</a>'
            ' <a href="https://c.example/">c</a>',
            f'<p><a href="{T0}">a</a> <a href="mailto:b@example.com">b</a> <a href="{T1}">c</a>',
            ["https://a.example/", "https://c.example/"],
            id="several-links",
        ),
    ],
)
def test_links_are_rewritten(html: str, expected: str, destinations: list[str]) -> None:
    assert rewrite_links(html) == (expected, destinations)


@pytest.mark.parametrize(
    "html",
    [
        pytest.param('<a href="mailto:a@example.com">x</a>', id="mailto"),
        pytest.param('<a href="tel:+15555550100">x</a>', id="tel"),
        pytest.param('<a href="sms:+15555550100">x</a>', id="sms"),
        pytest.param('<a href="#section">x</a>', id="fragment"),
        pytest.param('<a href="javascript:void(0)">x</a>', id="javascript"),
        pytest.param('<a href="data:text/plain,hi">x</a>', id="data"),
        pytest.param('<a href="/account">x</a>', id="relative"),
        pytest.param('<a href="ftp://x.example/">x</a>', id="ftp"),
        pytest.param('<a href="{{action_url}}">x</a>', id="template-placeholder"),
        pytest.param('<a href="">x</a>', id="empty"),
        pytest.param("<a href>x</a>", id="no-value"),
        pytest.param("<a href= >x</a>", id="equals-without-value"),
        pytest.param('<a x= href="https://x.example/">x</a>', id="href-is-a-value-not-a-name"),
        pytest.param('<a data-href="https://x.example/">x</a>', id="data-href"),
        pytest.param('<a xhref="https://x.example/">x</a>', id="xhref"),
        pytest.param('<link rel="stylesheet" href="https://x.example/s.css">', id="link-tag"),
        pytest.param('<abbr href="https://x.example/">x</abbr>', id="abbr-tag"),
        pytest.param('<base href="https://x.example/">', id="base-tag"),
        pytest.param('<img src="https://x.example/i.png" alt="">', id="img"),
        pytest.param("<p>see <b>https://x.example/</b></p>", id="text-url"),
        pytest.param('<!-- <a href="https://x.example/">x</a> -->', id="comment"),
        pytest.param('<p>x</p><!-- <a href="https://x.example/">x</a>', id="unclosed-comment"),
        pytest.param("<script>var a = '<a href=\"https://x.example/\">';</script>", id="script"),
        pytest.param('<SCRIPT>"<a href=https://x.example/>"</SCRIPT >', id="script-uppercase"),
        pytest.param(
            '<style>a[href="https://x.example/"]{color:red}/* <a href="https://x.example/"> */'
            "</style>",
            id="style",
        ),
        pytest.param('<textarea><a href="https://x.example/">x</a></textarea>', id="textarea"),
        pytest.param('<title><a href="https://x.example/">x</a></title>', id="title"),
        pytest.param('<script><a href="https://x.example/">', id="unclosed-script"),
        pytest.param(
            '<script></scriptx><a href="https://x.example/"></script>', id="script-close-name"
        ),
        pytest.param(
            "<div title=\"<a href='https://x.example/'>x</a>\">x</div>",
            id="markup-in-quoted-value",
        ),
        pytest.param('<![CDATA[ <a href="https://x.example/">x</a> ]]>', id="cdata"),
        pytest.param('<!DOCTYPE html><?xml version="1.0"?><p>x</p>', id="doctype-and-xml"),
        pytest.param('<p>x</p><a href="https://x.example/"', id="unclosed-tag"),
        pytest.param('<p>x</p><a title="x>y href="https://x.example/">', id="unclosed-quote"),
    ],
)
def test_other_content_is_untouched(html: str) -> None:
    assert rewrite_links(html) == (html, [])


def test_link_outside_raw_text_after_it_is_still_tracked() -> None:
    html = (
        "<!DOCTYPE html><title>a</title><style>a{}</style><script>1<2</script>"
        '<!-- c --><a href="https://x.example/">x</a>'
    )
    assert rewrite_links(html) == (html.replace("https://x.example/", T0), ["https://x.example/"])


def test_skipped_link_is_left_byte_identical() -> None:
    html = "<p><a HREF = 'https://x.example/?a=1&amp;b=2' >x</a><a href=\"https://y.example/\">"
    seen: list[str] = []

    def skip_x(destination: str, text: str | None) -> LinkReport:
        seen.append(destination)
        if destination.startswith("https://x."):
            return LinkReport(destination, skipped="excluded-domain")
        return LinkReport(destination, "https://t.example/c/y")

    report = rewrite_document(html, track=skip_x, pixel_tag=None)
    assert report.text == html.replace("https://y.example/", "https://t.example/c/y")
    assert seen == ["https://x.example/?a=1&b=2", "https://y.example/"]
    assert [(link.destination, link.skipped) for link in report.skipped] == [
        ("https://x.example/?a=1&b=2", "excluded-domain")
    ]


def test_no_tracker_tracks_no_links_but_reports_them() -> None:
    html = '<body><a href="https://x.example/">x</a></body>'
    report = rewrite_document(html, track=None, pixel_tag=PIXEL)
    assert report.text == f'<body><a href="https://x.example/">x</a>{PIXEL}</body>'
    assert report.links == (LinkReport("https://x.example/", skipped="clicks-off"),)
    assert report.pixel


def test_no_tracker_and_no_pixel_returns_input() -> None:
    html = '<body><a href="https://x.example/">x</a></body>'
    assert rewrite_document(html, track=None, pixel_tag=None).text == html


def test_unsafe_tracking_url_is_refused() -> None:
    with pytest.raises(ValueError, match="unsafe characters"):
        rewrite_document(
            '<a href="https://x.example/">x</a>',
            track=lambda destination, text: LinkReport(
                destination, 'https://t.example/" onclick="x'
            ),
            pixel_tag=None,
        )


@pytest.mark.parametrize(
    ("html", "expected"),
    [
        pytest.param(
            "<html><body><p>x</p></body></html>",
            f"<html><body><p>x</p>{PIXEL}</body></html>",
            id="before-body-close",
        ),
        pytest.param(
            "<HTML><BODY><P>x</P></BODY ></HTML>\r\n",
            f"<HTML><BODY><P>x</P>{PIXEL}</BODY ></HTML>\r\n",
            id="uppercase-body-close-with-space",
        ),
        pytest.param(
            "<body><p>x</p></body><p>y</p></body>",
            f"<body><p>x</p></body><p>y</p>{PIXEL}</body>",
            id="last-body-close",
        ),
        pytest.param(
            "<body><p>x</p></body><!-- </body> -->",
            f"<body><p>x</p>{PIXEL}</body><!-- </body> -->",
            id="body-close-in-comment-ignored",
        ),
        pytest.param(
            "<body><p>x</p></body><script>'</body>'</script>",
            f"<body><p>x</p>{PIXEL}</body><script>'</body>'</script>",
            id="body-close-in-script-ignored",
        ),
        pytest.param(
            "<body><p>x</p><!-- </body> -->",
            f"<body><p>x</p><!-- </body> -->{PIXEL}",
            id="only-body-close-in-comment",
        ),
        pytest.param("<p>x</p>\n", f"<p>x</p>\n{PIXEL}", id="no-body-close-appended"),
        pytest.param(
            "<body><p>x</p></bodyx>", f"<body><p>x</p></bodyx>{PIXEL}", id="not-a-body-close"
        ),
    ],
)
def test_pixel_placement(html: str, expected: str) -> None:
    assert rewrite_document(html, track=None, pixel_tag=PIXEL).text == expected


def test_pixel_and_links_together() -> None:
    html = '<body><a href="https://x.example/">x</a></body>\r\n<a href="https://y.example/">'
    recorder = ClickRecorder()
    out = rewrite_document(html, track=recorder, pixel_tag=PIXEL).text
    assert out == f'<body><a href="{T0}">x</a>{PIXEL}</body>\r\n<a href="{T1}">'
    assert recorder.destinations == ["https://x.example/", "https://y.example/"]


@pytest.mark.parametrize(
    "text",
    [
        pytest.param("Hello,\r\nsee https://x.example/a?b=1&c=2\r\n", id="plain"),
        pytest.param("Docs: <https://x.example/docs>", id="angle-bracket-url"),
        pytest.param("From: Bob <bob@example.com>", id="angle-bracket-address"),
        pytest.param("if a < b and b > c", id="comparison"),
        pytest.param("", id="empty"),
    ],
)
def test_plain_text_is_untouched(text: str) -> None:
    assert not looks_like_html(text)
    recorder = ClickRecorder()
    assert rewrite_document(text, track=recorder, pixel_tag=PIXEL).text == text
    assert recorder.destinations == []


@pytest.mark.parametrize(
    "text",
    [
        pytest.param("<p>Hello</p>", id="paragraph"),
        pytest.param("Hello<br/>world", id="self-closing"),
        pytest.param("Hello<BR>world", id="uppercase"),
        pytest.param('<a href="https://x.example/">x</a>', id="link"),
        pytest.param("text</div>", id="end-tag"),
        pytest.param("<!DOCTYPE html>", id="doctype"),
        pytest.param("<!-- note -->", id="comment"),
        pytest.param("<table\n  width=600>", id="multi-line-tag"),
    ],
)
def test_looks_like_html(text: str) -> None:
    assert looks_like_html(text)


# --- Real-world emails -------------------------------------------------------------

CORPUS = Path(__file__).resolve().parents[2] / "shared" / "corpus"


def _corpus_params() -> list[object]:
    emails = sorted(CORPUS.glob("emails/**/*.html")) if CORPUS.is_dir() else []
    if not emails:
        reason = f"no email corpus at {CORPUS}"
        return [pytest.param(None, id="no-corpus", marks=pytest.mark.skip(reason=reason))]
    return [pytest.param(path, id=path.relative_to(CORPUS).as_posix()) for path in emails]


@functools.cache
def _declared_charsets() -> dict[str, str]:
    """Map corpus paths to the charset that MANIFEST.tsv notes (e.g. charset-iso-2022-jp)."""
    charsets = {}
    for line in (CORPUS / "MANIFEST.tsv").read_text(encoding="utf-8").splitlines()[1:]:
        path, *_, features = line.split("\t")
        for feature in features.split(","):
            if feature.startswith("charset-"):
                charsets[path] = feature.removeprefix("charset-")
    return charsets


def _read_email(path: Path) -> str:
    # Decoding bytes (not text mode) keeps CRLF line endings as they are.
    data = path.read_bytes()
    charset = _declared_charsets().get(path.relative_to(CORPUS).as_posix(), "utf-8")
    try:
        return data.decode(charset)
    except UnicodeDecodeError:
        return data.decode("latin-1")  # only the ASCII markup matters here


def _browser_url(value: str) -> str:
    """What the URL standard makes of an href: C0 and space trimmed, tabs/newlines dropped."""
    return re.sub(r"[\t\n\r]", "", value.strip("".join(map(chr, range(0x21)))))


def _is_http(url: str) -> bool:
    return url.lower().startswith(("http://", "https://"))


def _lexbor_links(lexbor: Any, markup: str) -> list[str]:
    """The href of every link an HTML5 parser finds in ``markup``: ``<a>``, ``<area>`` and
    VML shapes, plus those inside conditional comments, which it parses in turn."""
    hrefs = []
    for node in lexbor.LexborHTMLParser(markup).root.traverse(include_text=False):
        tag = node.tag or ""
        if tag == "-comment":
            inner = re.match(
                r"\[if [^\]]*\]>(.*?)(?:<!\[endif\])?$", node.comment_content or "", re.S | re.I
            )
            if inner:
                hrefs += _lexbor_links(lexbor, inner[1])
        elif (tag in ("a", "area") or tag.startswith("v:")) and "href" in node.attributes:
            hrefs.append(node.attributes["href"] or "")
    return hrefs


def _lexbor_base(lexbor: Any, html: str) -> str | None:
    node = lexbor.LexborHTMLParser(html).css_first("base[href]")
    base = None if node is None else _browser_url(node.attributes["href"] or "")
    return base if base and _is_http(base) else None


def _resolve(url: str, base: str | None) -> str:
    """Where a mail client goes for a link written ``url`` (decoded and trimmed)."""
    if (
        not url
        or url.startswith("#")
        or has_placeholder(url)
        or re.match(r"[a-z][a-z0-9+.-]*:", url, re.I)
    ):
        return url
    if base is not None:
        return urljoin(base, url)
    return "https:" + url if url.startswith("//") else url


@pytest.mark.parametrize("path", _corpus_params())
def test_corpus_email(path: Path, tracker: Tracker) -> None:
    lexbor = pytest.importorskip("selectolax.lexbor")
    html = _read_email(path)
    report = tracker.rewrite_html_report(html, message_id="m", recipient="ada@example.com")
    out = report.text
    base = _lexbor_base(lexbor, html)
    pixel = re.search(r"<img [^>]*/o/[^>]*>", out)
    assert pixel is not None
    tracked = [link for link in report.links if link.tracked]
    click = re.escape(f"{BASE_URL}/c/") + r"[A-Za-z0-9_.-]+"

    # (1) Outside the tracked href values and the pixel, the output is the input. Split
    # the output on them and walk the input alongside: each literal piece must be there
    # verbatim, and what a tracking URL replaced must be the link as written.
    pieces = re.split(f"({click}|{re.escape(pixel[0])})", out)
    literals, replaced = pieces[0::2], pieces[1::2]
    assert [p for p in replaced if p != pixel[0]] == [link.tracking_url for link in tracked]
    assert replaced.count(pixel[0]) == 1
    at = 0
    pixel_at = -1
    links = iter(tracked)
    for index, marker in enumerate(replaced):
        assert html.startswith(literals[index], at)
        at += len(literals[index])
        if marker == pixel[0]:
            pixel_at = at
            continue
        following = literals[index + 1]
        assert following  # a tracked value always ends before a quote, space or ">"
        is_last = index + 1 == len(replaced)
        value_end = len(html) - len(following) if is_last else html.index(following, at)
        # (2) Each tracked link leads, through /c, to exactly the link's destination:
        # entities decoded, surrounding whitespace trimmed.
        response = tracker.handler.handle(
            "GET", "c", marker.rsplit("/", 1)[1], user_agent=None, forwarded_for=None, peer=None
        )
        link = next(links)
        assert response.status == 302
        assert response.headers[0] == ("Location", header_safe_url(link.destination))
        assert link.destination == _resolve(_browser_url(unescape(html[at:value_end])), base)
        at = value_end
    assert html[at:] == literals[-1]

    # (3) The pixel sits right before the last </body>, or at the end without one. (No
    # corpus email has a "</body>" inside a comment or script, so a plain search will do.)
    body_closes = [m.start() for m in re.finditer(r"</body[\s/>]", html, re.IGNORECASE)]
    assert pixel_at == (body_closes[-1] if body_closes else len(html))

    # (4) An HTML5 parser finds the same links, conditional comments included; each one
    # not tracked has a reason that fits it.
    oracle = sorted(_resolve(_browser_url(href), base) for href in _lexbor_links(lexbor, html))
    assert sorted(link.destination for link in report.links) == oracle
    for link in report.links:
        if link.tracked:
            assert _is_http(link.destination)
            assert not has_placeholder(link.destination)
        elif link.skipped == "not-http":
            assert re.match(r"[a-z][a-z0-9+.-]*:", link.destination, re.I)
        elif link.skipped in ("relative", "fragment", "empty"):
            assert not _is_http(link.destination)
        else:
            assert link.skipped in ("placeholder", "unsubscribe"), link
