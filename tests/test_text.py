from __future__ import annotations

import pytest

from arktrack.text import CONTEXT_LIMIT, TextLink, find_urls, replace_urls

WIKI = "https://en.wikipedia.org/wiki/Python_(programming_language)"


def urls(text: str) -> list[str]:
    return [link.url for link in find_urls(text)]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # Schemes and where a URL may start.
        pytest.param("https://x.example/a", ["https://x.example/a"], id="whole-text"),
        pytest.param("go to http://x.example now", ["http://x.example"], id="http"),
        pytest.param("HTTPS://X.example/A", ["HTTPS://X.example/A"], id="scheme-any-case"),
        pytest.param("HtTp://x.example", ["HtTp://x.example"], id="scheme-mixed-case"),
        pytest.param("xhttps://x.example", [], id="not-mid-word"),
        pytest.param("9https://x.example", [], id="not-after-digit"),
        pytest.param("éhttps://x.example", [], id="not-after-non-ascii-letter"),
        pytest.param("ftp://x.example mailto:a@x.example", [], id="other-schemes"),
        pytest.param("https:/x.example", [], id="one-slash"),
        pytest.param("URL:https://x.example", ["https://x.example"], id="after-colon"),
        # Nothing after the scheme.
        pytest.param("https://", [], id="scheme-alone"),
        pytest.param("https://.", [], id="scheme-and-period"),
        pytest.param("see https://...", [], id="scheme-and-ellipsis"),
        pytest.param("(https://)", [], id="scheme-in-parens"),
        pytest.param("https:// x.example", [], id="space-after-scheme"),
        # What ends a URL.
        pytest.param("https://x.example/a b", ["https://x.example/a"], id="space"),
        pytest.param("https://x.example/a\tb", ["https://x.example/a"], id="tab"),
        pytest.param("https://x.example/a\r\nb", ["https://x.example/a"], id="crlf"),
        pytest.param("https://x.example/a\u00a0b", ["https://x.example/a"], id="no-break-space"),
        pytest.param("https://x.example/a\u200bb", ["https://x.example/a"], id="zero-width-space"),
        pytest.param("<https://x.example/a>", ["https://x.example/a"], id="angle-brackets"),
        pytest.param("<https://x.example/a>.", ["https://x.example/a"], id="angle-brackets-period"),
        pytest.param('"https://x.example"', ["https://x.example"], id="double-quotes"),
        pytest.param('href="https://x.example/a"', ["https://x.example/a"], id="after-equals"),
        pytest.param("`https://x.example/a`", ["https://x.example/a"], id="backticks"),
        pytest.param("'https://x.example/a'", ["https://x.example/a"], id="single-quotes"),
        pytest.param("“https://x.example/a”", ["https://x.example/a"], id="curly-quotes"),
        pytest.param("«https://x.example/a»", ["https://x.example/a"], id="guillemets"),
        pytest.param("「https://x.example/a」。", ["https://x.example/a"], id="cjk-brackets"),
        # Trailing sentence punctuation.
        pytest.param("See https://x.example/a.", ["https://x.example/a"], id="sentence-end"),
        pytest.param("https://x.example/a, and", ["https://x.example/a"], id="comma"),
        pytest.param("https://x.example/a; b", ["https://x.example/a"], id="semicolon"),
        pytest.param("at https://x.example/a: b", ["https://x.example/a"], id="colon"),
        pytest.param("https://x.example/a!", ["https://x.example/a"], id="exclamation"),
        pytest.param("is it https://x.example/a?", ["https://x.example/a"], id="question-mark"),
        pytest.param("https://x.example/a...", ["https://x.example/a"], id="ellipsis"),
        pytest.param("https://x.example/a…", ["https://x.example/a"], id="unicode-ellipsis"),
        pytest.param("https://x.example/a?!.", ["https://x.example/a"], id="punctuation-run"),
        pytest.param("https://x.example/.", ["https://x.example/"], id="slash-then-period"),
        # Brackets: balanced ones are kept, unbalanced closing ones trimmed.
        pytest.param("see https://x.example/a).", ["https://x.example/a"], id="paren-period"),
        pytest.param("(https://x.example/a)", ["https://x.example/a"], id="in-parens"),
        pytest.param("(see https://x.example/a)", ["https://x.example/a"], id="parens-end"),
        pytest.param(WIKI, [WIKI], id="balanced-paren"),
        pytest.param(f"({WIKI})", [WIKI], id="balanced-paren-in-parens"),
        pytest.param(f"see {WIKI}.", [WIKI], id="balanced-paren-period"),
        pytest.param(f"({WIKI}).", [WIKI], id="balanced-paren-in-parens-period"),
        pytest.param("https://x.example/a_(b)_", ["https://x.example/a_(b)"], id="paren-then-_"),
        pytest.param("[https://x.example/a]", ["https://x.example/a"], id="in-square-brackets"),
        pytest.param("{https://x.example/a}", ["https://x.example/a"], id="in-braces"),
        # Markdown.
        pytest.param("[text](https://x.example/a)", ["https://x.example/a"], id="markdown-link"),
        pytest.param(
            "[text](https://x.example/a).", ["https://x.example/a"], id="markdown-link-period"
        ),
        pytest.param(
            "[https://x.example/a](https://x.example/b)",
            ["https://x.example/a", "https://x.example/b"],
            id="markdown-link-with-url-text",
        ),
        pytest.param("[1]: https://x.example/a", ["https://x.example/a"], id="markdown-reference"),
        pytest.param("*https://x.example*", ["https://x.example"], id="emphasis"),
        pytest.param("**https://x.example/a**.", ["https://x.example/a"], id="strong"),
        pytest.param("_https://x.example/a_", ["https://x.example/a"], id="underscore-emphasis"),
        pytest.param("https://x.example/a_b", ["https://x.example/a_b"], id="underscore-mid-url"),
        # Everything that belongs to a URL is kept.
        pytest.param("https://x.example/?a=1,2", ["https://x.example/?a=1,2"], id="comma-query"),
        pytest.param("https://x.example/?a=1,2,", ["https://x.example/?a=1,2"], id="comma-trail"),
        pytest.param("https://x.example/?a=1.5", ["https://x.example/?a=1.5"], id="period-query"),
        pytest.param(
            "https://x.example/p?a=1&b=2#frag", ["https://x.example/p?a=1&b=2#frag"], id="query"
        ),
        pytest.param("https://x.example/#!/a", ["https://x.example/#!/a"], id="hashbang"),
        pytest.param("https://x.example:8443/a", ["https://x.example:8443/a"], id="port"),
        pytest.param("https://x.example:8443.", ["https://x.example:8443"], id="port-period"),
        pytest.param(
            "https://user:pa$$@x.example/a", ["https://user:pa$$@x.example/a"], id="userinfo"
        ),
        pytest.param("https://x.example/a%20b%2C", ["https://x.example/a%20b%2C"], id="escapes"),
        pytest.param("http://[::1]:8080/a", ["http://[::1]:8080/a"], id="ipv6"),
        pytest.param("http://[::1]/].", ["http://[::1]/"], id="ipv6-stray-bracket"),
        pytest.param("https://x.example/it's", ["https://x.example/it's"], id="apostrophe"),
        pytest.param("https://x.example/a-b~c", ["https://x.example/a-b~c"], id="dash-tilde"),
        pytest.param("https://x.example/a/", ["https://x.example/a/"], id="trailing-slash"),
        pytest.param("https://bücher.example/straße", ["https://bücher.example/straße"], id="idn"),
        pytest.param(
            "Voir https://bücher.example/straße.", ["https://bücher.example/straße"], id="idn-end"
        ),
        pytest.param("https://例え.テスト/パス。", ["https://例え.テスト/パス"], id="idn-cjk"),
        # Template placeholders are found whole, so the caller can see and skip them.
        pytest.param(
            "https://x.example/?u={{id}}", ["https://x.example/?u={{id}}"], id="jinja-placeholder"
        ),
        pytest.param(
            "https://x.example/?u={{ id }}", ["https://x.example/?u={{"], id="spaced-placeholder"
        ),
        pytest.param(
            "(https://x.example/?u={{id}}).", ["https://x.example/?u={{id}}"], id="placeholder-end"
        ),
        pytest.param(
            "https://x.example/?u=*|UNSUB|*", ["https://x.example/?u=*|UNSUB|*"], id="merge-tag"
        ),
        pytest.param(
            "https://x.example/?u=*|UNSUB|*.",
            ["https://x.example/?u=*|UNSUB|*"],
            id="merge-tag-end",
        ),
        pytest.param("https://x.example/%%id%%", ["https://x.example/%%id%%"], id="percent-tag"),
        pytest.param("https://x.example/[[id]]", ["https://x.example/[[id]]"], id="bracket-tag"),
        pytest.param("https://{{host}}/a", ["https://{{host}}/a"], id="placeholder-host"),
        # Several URLs.
        pytest.param(
            "https://x.example/a https://x.example/b",
            ["https://x.example/a", "https://x.example/b"],
            id="two-on-a-line",
        ),
        pytest.param(
            "https://x.example/a, https://x.example/b and https://x.example/c.",
            ["https://x.example/a", "https://x.example/b", "https://x.example/c"],
            id="list",
        ),
        pytest.param(
            "a\r\nhttps://x.example/a\r\n\r\n\thttps://x.example/b\r\n",
            ["https://x.example/a", "https://x.example/b"],
            id="crlf-lines",
        ),
        pytest.param(
            "https://web.archive.org/web/2020/https://x.example/a",
            ["https://web.archive.org/web/2020/https://x.example/a"],
            id="url-in-url",
        ),
        pytest.param("no links here (((", [], id="none"),
        pytest.param("", [], id="empty"),
    ],
)
def test_find_urls(text: str, expected: list[str]) -> None:
    assert urls(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        pytest.param("https://x.example/a", id="alone"),
        pytest.param("Read (https://x.example/a).\r\nNext: https://x.example/b\r\n", id="crlf"),
        pytest.param("«https://bücher.example/straße» https://例え.テスト/", id="non-ascii"),
        pytest.param("[https://x.example/a](https://x.example/b)", id="markdown"),
    ],
)
def test_offsets_point_at_the_url(text: str) -> None:
    links = find_urls(text)
    assert links
    for link in links:
        assert text[link.start : link.end] == link.url


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param("Unsubscribe: https://x.example/u", ["Unsubscribe:"], id="label"),
        pytest.param("https://x.example/u", [""], id="line-start"),
        pytest.param(
            "Hello,\r\n  Unsubscribe:\thttps://x.example/u\r\n", ["Unsubscribe:"], id="crlf-tab"
        ),
        pytest.param("old mac\rUnsub https://x.example/u", ["Unsub"], id="bare-cr"),
        pytest.param(
            "Links: https://x.example/a https://x.example/b\nOff: https://x.example/u",
            ["Links:", "", "Off:"],
            id="several",
        ),
        pytest.param("Read it (https://x.example/a).", ["Read it ("], id="paren"),
        pytest.param("a\n\n\nhttps://x.example/u", ["a"], id="after-blank-lines"),
        pytest.param(
            "To unsubscribe, visit:\r\n  https://x.example/u",
            ["To unsubscribe, visit:"],
            id="label-above",
        ),
        pytest.param(
            "Shop https://x.example/s\nhttps://x.example/u", ["Shop", ""], id="not-past-a-url"
        ),
    ],
)
def test_context_is_the_line_before_the_url(text: str, expected: list[str]) -> None:
    assert [link.context for link in find_urls(text)] == expected


def test_context_keeps_the_end_of_a_very_long_line() -> None:
    text = "x" * (3 * CONTEXT_LIMIT) + " Unsubscribe: https://x.example/u"
    (link,) = find_urls(text)
    # The last CONTEXT_LIMIT characters before the URL, stripped.
    assert link.context == "x" * (CONTEXT_LIMIT - len(" Unsubscribe: ")) + " Unsubscribe:"


def test_find_urls_returns_text_links() -> None:
    assert find_urls("Go: https://x.example/a.") == [
        TextLink(start=4, end=23, url="https://x.example/a", context="Go:")
    ]


# A megabyte of each; a regex that backtracks, or a scan that restarts from the URL's
# start, would take minutes or hours on these instead of well under a second.
HUGE = 1_000_000


@pytest.mark.parametrize(
    ("text", "expected_count"),
    [
        pytest.param("https://" * (HUGE // 8), 1, id="schemes"),
        pytest.param("https:// " * (HUGE // 9), 0, id="schemes-spaced"),
        pytest.param("(((" * (HUGE // 3), 0, id="open-parens"),
        pytest.param("https://x.example/" + ")" * HUGE, 1, id="close-parens"),
        pytest.param("https://x.example/" + "(" * HUGE, 1, id="open-parens-in-url"),
        pytest.param("https://x.example/" + "." * HUGE, 1, id="periods"),
        pytest.param("https://a]" * (HUGE // 10), HUGE // 10, id="stray-brackets"),
        pytest.param("https://x.example/a " * (HUGE // 20), HUGE // 20, id="one-long-line"),
    ],
)
def test_huge_inputs_finish(text: str, expected_count: int) -> None:
    links = find_urls(text)
    assert len(links) == expected_count
    assert all(text[link.start : link.end] == link.url for link in links)


def test_huge_url_is_found_whole() -> None:
    text = "https://" * (HUGE // 8)
    assert find_urls(text) == [TextLink(0, len(text), text, "")]


def test_replace_urls_changes_only_the_urls() -> None:
    text = (
        "Hi,\r\n\tRead (https://x.example/a). Or *https://x.example/b*\r\n"
        "Unsubscribe: <https://x.example/u>\r\n[c](https://x.example/c)\r\n"
    )
    links = find_urls(text)
    assert [link.url for link in links] == [
        "https://x.example/a",
        "https://x.example/b",
        "https://x.example/u",
        "https://x.example/c",
    ]
    new = ["https://t.example/c/0", "https://t.example/c/1", None, "https://t.example/c/3"]
    assert replace_urls(text, zip(links, new, strict=True)) == (
        "Hi,\r\n\tRead (https://t.example/c/0). Or *https://t.example/c/1*\r\n"
        "Unsubscribe: <https://x.example/u>\r\n[c](https://t.example/c/3)\r\n"
    )


@pytest.mark.parametrize(
    "text",
    [
        pytest.param("Read (https://x.example/a).\r\n\tUnsub: https://x.example/u\r\n", id="crlf"),
        pytest.param("«https://bücher.example/straße»…\n", id="non-ascii"),
        pytest.param("https://x.example/?u={{id}} https://x.example/a", id="placeholder"),
        pytest.param("no urls\r\n", id="no-urls"),
    ],
)
def test_replace_urls_round_trips(text: str) -> None:
    links = find_urls(text)
    assert replace_urls(text, ((link, link.url) for link in links)) == text
    assert replace_urls(text, ((link, None) for link in links)) == text
    # Replacing each URL by a marker and back leaves every other character in place.
    marked = replace_urls(text, ((link, f"<{index}>") for index, link in enumerate(links)))
    for index, link in enumerate(links):
        marked = marked.replace(f"<{index}>", link.url, 1)
    assert marked == text


def test_replace_urls_accepts_links_in_any_order() -> None:
    text = "https://x.example/a https://x.example/b"
    first, second = find_urls(text)
    assert replace_urls(text, [(second, "B"), (first, "A")]) == "A B"


def test_replace_urls_with_no_links_returns_the_text() -> None:
    assert replace_urls("a\r\nb", []) == "a\r\nb"


def test_replace_urls_rejects_links_from_another_text() -> None:
    (link,) = find_urls("x https://x.example/a")
    with pytest.raises(ValueError, match="not at offset 2"):
        replace_urls("https://x.example/a", [(link, "https://t.example/")])


def test_replace_urls_rejects_overlapping_links() -> None:
    text = "https://x.example/abc"
    whole = TextLink(0, len(text), text, "")
    part = TextLink(8, len(text), text[8:], "")
    with pytest.raises(ValueError, match="overlaps"):
        replace_urls(text, [(whole, "A"), (part, "B")])
