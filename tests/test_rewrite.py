from __future__ import annotations

import functools
import re
from html import unescape
from pathlib import Path

import pytest

from arktrack.rewrite import looks_like_html, rewrite_document

PIXEL = '<img src="https://t.example/o/1" width="1" height="1" alt="" />'


class ClickRecorder:
    """A click_url that numbers the links it sees and remembers their destinations."""

    def __init__(self) -> None:
        self.destinations: list[str] = []

    def __call__(self, destination: str) -> str:
        self.destinations.append(destination)
        return f"https://t.example/c/{len(self.destinations) - 1}"


def rewrite_links(html: str) -> tuple[str, list[str]]:
    recorder = ClickRecorder()
    return rewrite_document(html, click_url=recorder, pixel_tag=None), recorder.destinations


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
            '<p><a href="https://x.example/{{#if vip}}>vip{{/if}}" class="b">x</a>',
            f'<p><a href="{T0}" class="b">x</a>',
            ["https://x.example/{{#if vip}}>vip{{/if}}"],
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
        pytest.param('<a href="//x.example/a">x</a>', id="protocol-relative"),
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
        pytest.param(
            '<!--[if mso]><a href="https://x.example/">x</a><![endif]-->',
            id="outlook-conditional-comment",
        ),
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


def test_click_url_returning_none_leaves_link_byte_identical() -> None:
    html = "<p><a HREF = 'https://x.example/?a=1&amp;b=2' >x</a><a href=\"https://y.example/\">"
    seen: list[str] = []

    def skip_x(destination: str) -> str | None:
        seen.append(destination)
        return None if destination.startswith("https://x.") else "https://t.example/c/y"

    out = rewrite_document(html, click_url=skip_x, pixel_tag=None)
    assert out == html.replace("https://y.example/", "https://t.example/c/y")
    assert seen == ["https://x.example/?a=1&b=2", "https://y.example/"]


def test_click_url_none_tracks_no_links() -> None:
    html = '<body><a href="https://x.example/">x</a></body>'
    out = rewrite_document(html, click_url=None, pixel_tag=PIXEL)
    assert out == f'<body><a href="https://x.example/">x</a>{PIXEL}</body>'


def test_no_click_url_and_no_pixel_returns_input() -> None:
    html = '<body><a href="https://x.example/">x</a></body>'
    assert rewrite_document(html, click_url=None, pixel_tag=None) == html


def test_unsafe_tracking_url_is_refused() -> None:
    with pytest.raises(ValueError, match="unsafe characters"):
        rewrite_document(
            '<a href="https://x.example/">x</a>',
            click_url=lambda destination: 'https://t.example/" onclick="x',
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
    assert rewrite_document(html, click_url=None, pixel_tag=PIXEL) == expected


def test_pixel_and_links_together() -> None:
    html = '<body><a href="https://x.example/">x</a></body>\r\n<a href="https://y.example/">'
    recorder = ClickRecorder()
    out = rewrite_document(html, click_url=recorder, pixel_tag=PIXEL)
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
    assert rewrite_document(text, click_url=recorder, pixel_tag=PIXEL) == text
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
TRACKING_URL = r"https://t\.example/c/\d+"


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


@pytest.mark.parametrize("path", _corpus_params())
def test_corpus_email(path: Path) -> None:
    lexbor = pytest.importorskip("selectolax.lexbor")
    html = _read_email(path)
    recorder = ClickRecorder()
    out = rewrite_document(html, click_url=recorder, pixel_tag=PIXEL)
    destinations = recorder.destinations

    # (1) Outside the tracking URLs and the pixel, the output is the input. Split the
    # output on them and walk the input alongside: each literal piece must be there
    # verbatim, and what a tracking URL replaced must decode to its destination.
    pieces = re.split(f"({TRACKING_URL}|{re.escape(PIXEL)})", out)
    literals, replaced = pieces[0::2], pieces[1::2]
    assert [p for p in replaced if p != PIXEL] == [
        f"https://t.example/c/{i}" for i in range(len(destinations))
    ]
    assert replaced.count(PIXEL) == 1
    at = 0
    pixel_at = -1
    for index, marker in enumerate(replaced):
        assert html.startswith(literals[index], at)
        at += len(literals[index])
        if marker == PIXEL:
            pixel_at = at
            continue
        following = literals[index + 1]
        assert following  # a tracked value always ends before a quote, space or ">"
        is_last = index + 1 == len(replaced)
        value_end = len(html) - len(following) if is_last else html.index(following, at)
        value = html[at:value_end]
        assert _browser_url(unescape(value)) == destinations[int(marker.rsplit("/", 1)[1])]
        at = value_end
    assert html[at:] == literals[-1]

    # (2) The pixel sits right before the last </body>, or at the end without one. (No
    # corpus email has a "</body>" inside a comment or script, so a plain search will do.)
    body_closes = [m.start() for m in re.finditer(r"</body[\s/>]", html, re.IGNORECASE)]
    if body_closes:
        assert pixel_at == body_closes[-1]
    else:
        assert pixel_at == len(html)

    # (3) Destinations are clean absolute http(s) URLs.
    for destination in destinations:
        assert _is_http(destination)
        assert destination == destination.strip()
        assert "&amp;" not in destination

    # (4) An HTML5 parser finds the same links (it does not look inside comments).
    parsed = lexbor.LexborHTMLParser(html)
    oracle = [
        _browser_url(node.attributes["href"])
        for node in parsed.css("a[href], area[href]")
        if node.attributes["href"] is not None
    ]
    assert sorted(url for url in oracle if _is_http(url)) == sorted(destinations)
