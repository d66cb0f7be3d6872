"""Rewrite the links of an HTML email and add an open-tracking pixel, changing nothing else.

Email HTML is fragile: Outlook conditional comments, template placeholders, DOCTYPEs
and odd quoting all matter to some mail client, and re-serialising a document through
an HTML parser loses some of them. So this module never builds a tree. It scans the
text once with regular expressions that follow the HTML tokenizer closely enough to
know where tags, comments and raw-text elements begin and end, records the spans it
wants to change, and builds the output by joining slices of the input around them::

    from arktrack.rewrite import rewrite_document

    destinations = []

    def click_url(destination):
        destinations.append(destination)
        return f"https://t.example/c/{len(destinations)}"

    sent_html = rewrite_document(
        html,
        click_url=click_url,
        pixel_tag='<img src="https://t.example/o/abc" width="1" height="1" alt="" />',
    )

Outside the replaced ``href`` values and the inserted pixel, the output is the input,
byte for byte.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from html import unescape
from html.entities import html5 as _NAMED_REFERENCES

__all__ = ["looks_like_html", "rewrite_document"]

# The inside of a tag after its name, up to and including the closing ">". A quote only
# opens a quoted value right after "=" (as in the HTML tokenizer), so a ">" inside a
# quoted value does not end the tag, while a stray quote in a name or an unquoted value
# does not start one. Every character has exactly one way to match, which keeps the
# regex linear even when a tag is never closed.
_TAG_REST = r"""
    [^>"'=]*
    (?:
        (?:
            =\s*"[^"]*"
          | =\s*'[^']*'
          | =\s*[^\s"'>][^\s>]*(?![^\s>])    # an unquoted value runs to whitespace or ">"
          | =(?=\s*>)                        # "=" with no value
          | ["']                             # a stray quote inside a name
        )
        [^>"'=]*
    )*
    >
"""

# Elements whose content is text, not markup, so a "<a href" inside them is not a link.
# This is the HTML spec's whole list (not just script, style, textarea and title) so
# that we agree with what a mail client renders.
_RAW_TEXT_TAGS = ("script", "style", "textarea", "title", "xmp", "iframe", "noembed", "noframes")
_RAW_TEXT_NAMES = "|".join(_RAW_TEXT_TAGS)

# One alternative per kind of token we must recognise. Tags we do not care about are
# still matched whole, so that a "<" inside one of their quoted values is never
# mistaken for the start of a tag. The "<" stays outside the alternatives: then the
# regex engine jumps from one "<" to the next instead of trying every alternative at
# every character, which makes the scan several times faster.
_TOKEN = re.compile(
    rf"""
    < (?:
        (?P<comment> !-- (?: -?> | [\s\S]*? (?: --!?> | \Z ) ) )
      | (?P<cdata> !\[CDATA\[ [\s\S]*? (?: \]\]> | \Z ) )
      | (?P<declaration> (?: [!?] | /[^a-zA-Z>] ) [^>]* (?: > | \Z ) )  # <!DOCTYPE>, <?xml?>
      | (?P<link> (?P<link_name> (?i: a | area ) ) (?![^\s/>]) {_TAG_REST} )
      | (?P<raw_text> (?P<raw_name> (?i: {_RAW_TEXT_NAMES} ) ) (?![^\s/>]) {_TAG_REST} )
      | (?P<body_close> / (?i: body ) (?![^\s/>]) {_TAG_REST} )
      | (?P<tag> /? [a-zA-Z] [^\s/>]* (?![^\s/>]) {_TAG_REST} )
      | (?P<unclosed_tag> /? [a-zA-Z] )
    )
    """,
    re.VERBOSE,
)

_RAW_TEXT_CLOSE = {
    name: re.compile(rf"</{name}(?=[\s/>])", re.IGNORECASE) for name in _RAW_TEXT_TAGS
}

# One attribute of a tag whose extent _TOKEN already found; separators (whitespace and
# "/") are skipped by the search between matches.
_ATTRIBUTE = re.compile(
    r"""
    (?P<name> [^\s/>] [^\s/>=]* )
    (?: \s*=\s* (?: "(?P<double>[^"]*)" | '(?P<single>[^']*)' | (?P<bare>[^\s>]+) ) )?
    """,
    re.VERBOSE,
)

_TRACKABLE_SCHEME = re.compile(r"https?://", re.IGNORECASE)

# A replacement URL must need no escaping in any attribute quoting style, or it would
# break the markup around it.
_URL_SAFE = re.compile(r"[A-Za-z0-9\-_.~:/%]+")

_CHARACTER_REFERENCE = re.compile(
    r"&(?: \#[0-9]+;? | \#[xX][0-9a-fA-F]+;?"
    r"  | (?P<name>[a-zA-Z][a-zA-Z0-9]*)(?P<semicolon>;?)(?P<equals>=?) )",
    re.VERBOSE,
)

# What the URL standard ignores around a URL (C0 controls and space) and inside it.
_URL_PADDING = "".join(chr(code) for code in range(0x21))
_URL_IGNORED = str.maketrans("", "", "\t\n\r")

_MARKUP = re.compile(r"<(?:[a-zA-Z][a-zA-Z0-9-]*[\s/>]|/[a-zA-Z]|![-\[a-zA-Z])")

_Edit = tuple[int, int, str]


def looks_like_html(text: str) -> bool:
    """Tell whether ``text`` contains HTML markup rather than being plain text.

    Plain-text mail often holds ``<https://...>`` or ``Name <user@example.com>``, so only
    a real tag (``<p>``, ``<br/>``, ``</div``), a comment or a DOCTYPE counts.
    """
    return _MARKUP.search(text) is not None


def rewrite_document(
    html: str,
    *,
    click_url: Callable[[str], str | None] | None,
    pixel_tag: str | None,
) -> str:
    """Return ``html`` with its links sent through ``click_url`` and ``pixel_tag`` added.

    ``click_url`` is called once per ``<a href>`` or ``<area href>`` whose destination
    is an absolute ``http://`` or ``https://`` URL. The destination is what a browser
    would follow: the value with character references decoded, surrounding whitespace
    removed and tabs or newlines dropped. ``click_url`` returns the tracking URL, made of
    letters, digits and ``-_.~:/%`` only, or ``None`` to leave that link alone. Links in
    comments and in raw-text elements such as ``<script>`` are not links and are left
    alone. ``pixel_tag`` goes right before the last ``</body>``, or at the end of the
    document when there is none. Either may be ``None`` to turn that tracking off.

    Plain text (see :func:`looks_like_html`) is returned unchanged.
    """
    if (click_url is None and pixel_tag is None) or not looks_like_html(html):
        return html
    edits, body_close = _scan(html, 0, len(html), click_url)
    if pixel_tag is not None:
        where = len(html) if body_close is None else body_close
        edits.append((where, where, pixel_tag))
        edits.sort(key=lambda edit: edit[0])
    return _splice(html, edits)


def _scan(
    html: str, start: int, end: int, click_url: Callable[[str], str | None] | None
) -> tuple[list[_Edit], int | None]:
    """Find the link edits in ``html[start:end]`` and the offset of its last ``</body>``.

    It takes a range so that the inside of a conditional comment can be scanned the same
    way as the document.
    """
    edits: list[_Edit] = []
    body_close: int | None = None
    pos = start
    while (token := _TOKEN.search(html, pos, end)) is not None:
        pos = token.end()
        kind = token.lastgroup
        if kind == "link":
            if click_url is not None:
                edit = _link_edit(html, token.end("link_name"), pos, click_url)
                if edit is not None:
                    edits.append(edit)
        elif kind == "raw_text":
            close = _RAW_TEXT_CLOSE[token["raw_name"].lower()].search(html, pos, end)
            if close is None:
                break  # an unclosed raw-text element runs to the end of the document
            pos = close.start()
        elif kind == "body_close":
            body_close = token.start()
        elif kind == "unclosed_tag":
            break  # as in HTML, a tag that is never closed swallows the rest
        # Comments (including Outlook's <!--[if mso]> blocks), CDATA sections,
        # declarations and other tags are skipped whole. Tracking links inside
        # conditional comments would mean scanning the comment's inside here.
    return edits, body_close


def _link_edit(
    html: str, attributes_start: int, tag_end: int, click_url: Callable[[str], str | None]
) -> _Edit | None:
    """Return the edit that tracks the link whose attributes are in the given span."""
    for attribute in _ATTRIBUTE.finditer(html, attributes_start, tag_end):
        if attribute["name"].lower() != "href":
            continue
        # Only the first href counts: browsers ignore repeated attributes. The last
        # group matched is the value's, or the name's when the href has no value.
        group = attribute.lastgroup
        if group is None or group == "name":
            return None
        destination = _destination(attribute[group])
        if _TRACKABLE_SCHEME.match(destination) is None:
            return None
        replacement = click_url(destination)
        if replacement is None:
            return None
        if _URL_SAFE.fullmatch(replacement) is None:
            raise ValueError(f"click_url returned a URL with unsafe characters: {replacement!r}")
        return attribute.start(group), attribute.end(group), replacement
    return None


def _destination(value: str) -> str:
    """Return the URL a browser would follow for the attribute value ``value``."""
    if "&" in value:
        value = _CHARACTER_REFERENCE.sub(_decode_reference, value)
    return value.strip(_URL_PADDING).translate(_URL_IGNORED)


def _decode_reference(reference: re.Match[str]) -> str:
    # html.unescape alone would turn "?a=1&region=eu" into "?a=1®ion=eu"; inside an
    # attribute, browsers leave a named reference without ";" alone when a letter, a
    # digit or "=" follows it, so a query string keeps its meaning.
    name = reference["name"]
    if name is None:
        return unescape(reference[0])
    if reference["semicolon"]:
        decoded = _NAMED_REFERENCES.get(name + ";")
        return reference[0] if decoded is None else decoded + reference["equals"]
    if reference["equals"] or name not in _NAMED_REFERENCES:
        return reference[0]
    return _NAMED_REFERENCES[name]


def _splice(html: str, edits: list[_Edit]) -> str:
    """Apply non-overlapping ``(start, end, text)`` edits, sorted by start, to ``html``."""
    pieces: list[str] = []
    copied_to = 0
    for start, end, text in edits:
        pieces.append(html[copied_to:start])
        pieces.append(text)
        copied_to = end
    pieces.append(html[copied_to:])
    return "".join(pieces)
