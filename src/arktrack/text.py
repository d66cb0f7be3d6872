"""The bare ``http(s)://`` URLs of a plain-text mail body, found the way people write them.

A plain-text body has no markup to say where a link ends, so :func:`find_urls` follows
the conventions of prose (and of the Markdown people type into it): a URL runs to the
next whitespace, and punctuation that ends the sentence around it is not part of it.
:func:`replace_urls` then swaps the found spans and leaves every other character as it
was::

    from arktrack.text import find_urls, replace_urls

    body = "Read it (https://x.example/a).\\r\\nUnsubscribe: https://x.example/u\\r\\n"
    links = find_urls(body)
    # [TextLink(start=9, end=28, url='https://x.example/a', context='Read it ('),
    #  TextLink(start=45, end=64, url='https://x.example/u', context='Unsubscribe:')]
    tracked = [(link, None if "unsub" in link.context.lower() else "https://t.example/c/1")
               for link in links]
    replace_urls(body, tracked)
    # 'Read it (https://t.example/c/1).\\r\\nUnsubscribe: https://x.example/u\\r\\n'

Template placeholders (``{{id}}``, ``*|UNSUB|*``, ``%%id%%``, ``[[id]]``) are kept whole
inside the URL, so the caller can see them and leave such a link alone.

Every step looks at each character a bounded number of times, so a megabyte of hostile
input (``https://`` repeated, ``(((``) costs no more than a megabyte of mail.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable
from typing import NamedTuple

__all__ = ["TextLink", "find_urls", "replace_urls"]


class TextLink(NamedTuple):
    """A URL found in plain text: ``text[start:end] == url``."""

    start: int
    end: int
    url: str
    #: What the URL's line says before it (since the previous URL on the line, if any),
    #: or for a URL alone at the start of its line, the last non-blank line above it (not
    #: past the previous URL); stripped ("Unsubscribe:"), so a caller can recognise links
    #: that must not be tracked. Capped to its last :data:`CONTEXT_LIMIT` characters.
    context: str


#: Mail lines are at most 998 characters (RFC 5322 section 2.1.1); longer contexts are
#: cut to their end, which keeps many URLs on one huge line from costing quadratic time.
CONTEXT_LIMIT = 1000

# Not preceded by a letter or digit, so "xhttp://" is not a link, while "_https://" and
# "*https://" (Markdown emphasis) and "(https://" are. A fixed-width lookbehind and a
# literal leave the engine nothing to backtrack over.
_SCHEME = re.compile(r"(?<![^\W_])https?://", re.IGNORECASE)

# Characters a bare URL in prose cannot contain: whitespace (including no-break and
# ideographic spaces), the delimiters people put around URLs ("<...>", quotes,
# backticks), and the zero-width characters some clients insert to break autolinking.
# A "<%" stays in: it opens a template tag (ERB, SendGrid's <%asm_group_id%>) that the
# caller must see to leave the link alone.
_URL_END = re.compile(r"[\s>\"`\u200b\ufeff]|<(?!%)")

_SQUARE_BRACKET = re.compile(r"[\[\]]")
# What makes "https://..." a link: a letter or digit, or the opening of a template
# placeholder ("https://{{ host }}/"), which the caller must see to skip the link.
_LINK_CONTENT = re.compile(r"[^\W_]|[{%\[$<]")
_LINE_BREAK = re.compile(r"[\r\n]")

# Sentence punctuation written after a URL rather than as part of it.
_TRAILING = frozenset(".,;:!?'_")
_CLOSERS = {")": "(", "]": "[", "}": "{"}
# Quotes, sentence ends and closing brackets outside ASCII ("”", "»", "…", "。", "」").
_UNICODE_TRAILING_CATEGORIES = frozenset({"Pe", "Pf", "Pi", "Po"})


def find_urls(text: str) -> list[TextLink]:
    """The ``http://`` and ``https://`` URLs in ``text``, in order of appearance."""
    links: list[TextLink] = []
    position = 0
    # The end of the whitespace-delimited run holding the current match: a Markdown
    # "[url](url)" holds two URLs, and finding the run's end again for the second would
    # make a long run of such pairs quadratic.
    run_end = -1
    line_start = 0
    lines_scanned_to = 0
    while scheme := _SCHEME.search(text, position):
        start, after_scheme = scheme.span()
        if after_scheme > run_end:
            url_end = _URL_END.search(text, after_scheme)
            run_end = url_end.start() if url_end else len(text)
        end = _trim(text, start, after_scheme, _cut_at_stray_bracket(text, after_scheme, run_end))
        if not _LINK_CONTENT.search(text, after_scheme, end):
            # "https://" alone, or followed only by punctuation.
            position = after_scheme
            continue
        for line_break in _LINE_BREAK.finditer(text, lines_scanned_to, start):
            line_start = line_break.end()
        lines_scanned_to = start
        # From the previous URL on the line, if any: "Unsubscribe: <url>  Shop: <url>"
        # is about the first link only.
        previous_end = links[-1].end if links else 0
        context = text[max(line_start, previous_end, start - CONTEXT_LIMIT) : start].strip()
        if not context and line_start > previous_end:
            # A URL alone on its line is labelled by the line above: "To unsubscribe,
            # visit:\n<url>". Never looking back past the previous URL keeps this linear.
            above = text[max(previous_end, line_start - CONTEXT_LIMIT) : line_start].strip()
            context = _LINE_BREAK.split(above)[-1].strip()
        links.append(TextLink(start, end, text[start:end], context))
        position = end
    return links


def _cut_at_stray_bracket(text: str, start: int, end: int) -> int:
    """Where the URL in ``text[start:end]`` ends at a ``]`` that closes no ``[`` in it.

    Square brackets are kept in URLs for IPv6 hosts and ``[[placeholders]]``, but an
    unmatched ``]`` cannot be in a URL: it ends the link text of a Markdown
    ``[https://x.example](https://x.example)``.
    """
    depth = 0
    for bracket in _SQUARE_BRACKET.finditer(text, start, end):
        if bracket.group() == "[":
            depth += 1
        elif depth:
            depth -= 1
        else:
            return bracket.start()
    return end


def _trim(text: str, start: int, after_scheme: int, end: int) -> int:
    """Where the URL ``text[start:end]`` ends once trailing sentence punctuation is off."""
    # Counted once and updated as closers are dropped, so a long tail of ")))" is linear.
    opened = {closer: text.count(opener, start, end) for closer, opener in _CLOSERS.items()}
    closed = {closer: text.count(closer, start, end) for closer in _CLOSERS}
    while end > after_scheme:
        last = text[end - 1]
        if last in _CLOSERS:
            # Keeps the ")" of https://en.wikipedia.org/wiki/Python_(programming_language)
            # but drops the one of "(https://x.example/a)".
            if closed[last] <= opened[last]:
                break
            closed[last] -= 1
        elif last == "*":
            # Markdown emphasis, unless it closes a Mailchimp merge tag "*|UNSUB|*".
            if text[end - 2] == "|":
                break
        elif last not in _TRAILING and not (
            not last.isascii() and unicodedata.category(last) in _UNICODE_TRAILING_CATEGORIES
        ):
            break
        end -= 1
    return end


def replace_urls(text: str, links: Iterable[tuple[TextLink, str | None]]) -> str:
    """``text`` with each link's span replaced by its new URL (``None``: left as is).

    Every character outside the replaced spans is kept as it was, line endings included.
    Links must come from :func:`find_urls` on this same ``text``; a link whose URL is not
    at its offsets, or that overlaps another, raises :class:`ValueError` rather than
    corrupting the body.
    """
    replacements = sorted(
        ((link, new_url) for link, new_url in links if new_url is not None),
        key=lambda pair: pair[0].start,
    )
    pieces: list[str] = []
    position = 0
    for link, new_url in replacements:
        if link.end - link.start != len(link.url) or not text.startswith(link.url, link.start):
            raise ValueError(f"{link.url!r} is not at offset {link.start} of this text")
        if link.start < position:
            raise ValueError(f"{link.url!r} at offset {link.start} overlaps another link")
        pieces.append(text[position : link.start])
        pieces.append(new_url)
        position = link.end
    pieces.append(text[position:])
    return "".join(pieces)
