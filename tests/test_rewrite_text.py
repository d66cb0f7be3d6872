"""Plain-text tracking through a real :class:`Tracker`: ``rewrite_text``,
``rewrite_text_report`` and the module function, checked against the tokens themselves
and the click handler that redirects them."""

from __future__ import annotations

from collections.abc import Callable
from typing import Unpack

import pytest

import arktrack
from arktrack import EventType, LinkReport, RewriteOptions, RewriteReport, Tracker
from arktrack.text import find_urls
from arktrack.tracker import MAX_URL_LENGTH

from .conftest import BASE_URL

MESSAGE_ID = "msg_text_1"
RECIPIENT = "ada@example.com"
CLICK_PREFIX = f"{BASE_URL}/c/"


def report(tracker: Tracker, text: str, **options: Unpack[RewriteOptions]) -> RewriteReport:
    return tracker.rewrite_text_report(text, message_id=MESSAGE_ID, recipient=RECIPIENT, **options)


def click_url(tracker: Tracker, destination: str) -> str:
    url = tracker.click_url(destination, message_id=MESSAGE_ID, recipient=RECIPIENT)
    assert url is not None
    return url


def token_of(tracking_url: str) -> str:
    assert tracking_url.startswith(CLICK_PREFIX)
    return tracking_url.removeprefix(CLICK_PREFIX)


def destination_of(tracker: Tracker, tracking_url: str) -> str:
    click = tracker.codec.load_click(token_of(tracking_url))
    assert click.message_id == MESSAGE_ID
    assert click.recipient_ref == tracker.codec.recipient_ref(RECIPIENT)
    return click.url


def skips(result: RewriteReport) -> list[tuple[str, str | None]]:
    return [(link.destination, link.skipped) for link in result.links]


# -- the three entry points -------------------------------------------------------------

BODY = (
    "Hi Zo\u00eb,\r\n"
    "\r\n"
    "see https://x.example/a).\r\n"
    "\tOr (https://x.example/b?q=1&r=2), \u201chttps://x.example/c\u201d\u2026\r\n"
    "Wiki: https://en.wikipedia.org/wiki/Python_(programming_language).  \r\n"
    "mailto:help@example.com, ftp://x.example/f, xhttps://x.example/g\r\n"
)
DESTINATIONS = [
    "https://x.example/a",
    "https://x.example/b?q=1&r=2",
    "https://x.example/c",
    "https://en.wikipedia.org/wiki/Python_(programming_language)",
]


def expected_body(c: Callable[[str], str]) -> str:
    """BODY with each destination replaced by ``c(destination)`` and nothing else."""
    a, b, q, wiki = (c(url) for url in DESTINATIONS)
    return (
        "Hi Zo\u00eb,\r\n"
        "\r\n"
        f"see {a}).\r\n"
        f"\tOr ({b}), \u201c{q}\u201d\u2026\r\n"
        f"Wiki: {wiki}.  \r\n"
        "mailto:help@example.com, ftp://x.example/f, xhttps://x.example/g\r\n"
    )


def via_method(tracker: Tracker, text: str) -> str:
    return tracker.rewrite_text(text, message_id=MESSAGE_ID, recipient=RECIPIENT)


def via_report(tracker: Tracker, text: str) -> str:
    return report(tracker, text).text


def via_function(tracker: Tracker, text: str) -> str:
    return arktrack.rewrite_text(text, message_id=MESSAGE_ID, recipient=RECIPIENT, tracker=tracker)


ENTRY_POINTS = [
    pytest.param(via_method, id="Tracker.rewrite_text"),
    pytest.param(via_report, id="Tracker.rewrite_text_report"),
    pytest.param(via_function, id="arktrack.rewrite_text"),
]


def tracked_urls(text: str) -> list[str]:
    return [link.url for link in find_urls(text) if link.url.startswith(BASE_URL)]


@pytest.mark.parametrize("rewrite", ENTRY_POINTS)
def test_bare_urls_are_tracked_and_every_other_byte_is_kept(
    tracker: Tracker, rewrite: Callable[[Tracker, str], str]
) -> None:
    out = rewrite(tracker, BODY)
    assert out == expected_body(lambda url: click_url(tracker, url))
    # Each token carries the URL exactly as written, trailing punctuation trimmed.
    assert [destination_of(tracker, url) for url in tracked_urls(out)] == DESTINATIONS


@pytest.mark.parametrize("rewrite", ENTRY_POINTS)
def test_the_message_is_registered(
    tracker: Tracker, rewrite: Callable[[Tracker, str], str]
) -> None:
    assert tracker.stats().summary.delivered == 0
    rewrite(tracker, BODY)
    assert tracker.stats().summary.delivered == 1
    # Again for the same message and recipient: still one.
    rewrite(tracker, BODY)
    assert tracker.stats().summary.delivered == 1
    # One (message, recipient) row to mark.
    assert tracker.record_bounce(MESSAGE_ID, RECIPIENT) == 1


def test_registration_reaches_sql_storage(sqlite_tracker: Tracker) -> None:
    out = sqlite_tracker.rewrite_text(
        "Go: https://x.example/a\n", message_id=MESSAGE_ID, recipient=RECIPIENT
    )
    assert sqlite_tracker.stats().summary.delivered == 1
    (tracking_url,) = tracked_urls(out)
    response = sqlite_tracker.handler.handle(
        "GET", "c", token_of(tracking_url), user_agent=None, forwarded_for=None, peer=None
    )
    assert response.status == 302
    assert sqlite_tracker.flush(10)
    (click,) = sqlite_tracker.events()
    # The recipient is resolved from the registered message.
    assert (click.type, click.email_id, click.to) == (EventType.CLICKED, MESSAGE_ID, RECIPIENT)


def test_text_without_links_is_returned_as_is_and_still_registered(tracker: Tracker) -> None:
    text = "No links here.\r\nJust http:// and https://. and (((\r\n"
    result = report(tracker, text)
    assert result == RewriteReport(text, ())
    assert tracker.stats().summary.delivered == 1


def test_report_lists_every_link_in_order(tracker: Tracker) -> None:
    text = (
        "A https://x.example/a, B https://x.example/b?u={{ id }}\nUnsubscribe: https://x.example/u"
    )
    result = report(tracker, text)
    assert result.links == (
        LinkReport("https://x.example/a", tracking_url=click_url(tracker, "https://x.example/a")),
        LinkReport("https://x.example/b?u={{", skipped="placeholder"),
        LinkReport("https://x.example/u", skipped="unsubscribe"),
    )
    assert result.pixel is False
    assert [link.destination for link in result.tracked] == ["https://x.example/a"]
    assert [link.destination for link in result.skipped] == [
        "https://x.example/b?u={{",
        "https://x.example/u",
    ]


def test_the_same_url_twice_gets_the_same_token(tracker: Tracker) -> None:
    result = report(tracker, "https://x.example/a\nagain: https://x.example/a.\n")
    first, second = result.links
    assert first.tracking_url is not None
    assert first == second
    assert result.text == f"{first.tracking_url}\nagain: {first.tracking_url}.\n"


def test_tokens_are_bound_to_message_and_recipient(tracker: Tracker) -> None:
    one = tracker.rewrite_text("https://x.example/a", message_id="m1", recipient="a@example.com")
    two = tracker.rewrite_text("https://x.example/a", message_id="m2", recipient="a@example.com")
    three = tracker.rewrite_text("https://x.example/a", message_id="m1", recipient="b@example.com")
    assert len({one, two, three}) == 3
    clicks = [tracker.codec.load_click(token_of(url)) for url in (one, two, three)]
    assert [(c.message_id, c.recipient_ref) for c in clicks] == [
        ("m1", tracker.codec.recipient_ref("a@example.com")),
        ("m2", tracker.codec.recipient_ref("a@example.com")),
        ("m1", tracker.codec.recipient_ref("b@example.com")),
    ]
    assert {c.url for c in clicks} == {"https://x.example/a"}
    assert tracker.stats().summary.delivered == 3


# -- the click handler ------------------------------------------------------------------


@pytest.mark.parametrize(
    "destination",
    [
        pytest.param("https://x.example/a", id="plain"),
        pytest.param("https://x.example/b?q=1&r=2#frag", id="query-fragment"),
        pytest.param("http://x.example:8080/p/a%20b;x=1", id="http-port-escapes"),
        pytest.param("HTTPS://X.EXAMPLE/Caps", id="upper-case"),
        pytest.param(
            "https://en.wikipedia.org/wiki/Python_(programming_language)", id="parentheses"
        ),
    ],
)
def test_tracked_text_link_redirects_to_the_url_as_written(
    tracker: Tracker, destination: str
) -> None:
    out = tracker.rewrite_text(
        f"Read it ({destination}).\n", message_id=MESSAGE_ID, recipient=RECIPIENT
    )
    (tracking_url,) = tracked_urls(out)
    assert out == f"Read it ({tracking_url}).\n"
    response = tracker.handler.handle(
        "GET", "c", token_of(tracking_url), user_agent=None, forwarded_for=None, peer=None
    )
    assert response.status == 302
    assert dict(response.headers)["Location"] == destination
    assert response.body == b""
    assert tracker.flush(10)
    (click,) = tracker.events(type=EventType.CLICKED)
    assert (click.email_id, click.to, click.url) == (MESSAGE_ID, RECIPIENT, destination)
    assert tracker.stats().summary.clicks == 1


def test_a_forged_text_token_is_refused(tracker: Tracker) -> None:
    out = tracker.rewrite_text("https://x.example/a", message_id=MESSAGE_ID, recipient=RECIPIENT)
    token = token_of(out)
    forged = ("A" if token[0] != "A" else "B") + token[1:]
    response = tracker.handler.handle(
        "GET", "c", forged, user_agent=None, forwarded_for=None, peer=None
    )
    assert response.status == 404
    assert "Location" not in dict(response.headers)


# -- skip rules, as for HTML ------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "destination"),
    [
        pytest.param(
            "Profile: https://x.example/?u={{ id }} (yours)\n",
            "https://x.example/?u={{",
            id="handlebars-with-spaces",
        ),
        pytest.param(
            "Profile: https://x.example/?u={{id}}.\n", "https://x.example/?u={{id}}", id="mustache"
        ),
        pytest.param(
            "Profile: https://x.example/p/{% url 'me' %}\n",
            "https://x.example/p/{%",
            id="jinja-tag",
        ),
        pytest.param(
            "Leave: https://x.example/?u=*|UNSUB|*\n",
            "https://x.example/?u=*|UNSUB|*",
            id="mailchimp",
        ),
        pytest.param(
            "Hi: https://x.example/?u=%recipient.x%\n",
            "https://x.example/?u=%recipient.x%",
            id="mailgun",
        ),
        pytest.param(
            "Hi: https://x.example/?u=[[id]]\n", "https://x.example/?u=[[id]]", id="double-square"
        ),
        pytest.param(
            "Hi: https://x.example/?u=${user.id}\n",
            "https://x.example/?u=${user.id}",
            id="dollar-brace",
        ),
        pytest.param("Hi: https://{{host}}/a\n", "https://{{host}}/a", id="placeholder-host"),
    ],
)
def test_placeholders_are_left_as_written(tracker: Tracker, text: str, destination: str) -> None:
    result = report(tracker, text)
    assert result.text == text
    assert result.links == (LinkReport(destination, skipped="placeholder"),)


# A "<" ends a URL in prose, but not when it opens a template tag: left glued to a tracked
# URL, the tag would be rendered into the token and break it.
@pytest.mark.parametrize(
    "text",
    [
        pytest.param("Profile: https://x.example/?u=<%= id %>\n", id="erb-after-url"),
        pytest.param("Prefs: https://x.example/?g=<%asm_group_id%>\n", id="sendgrid-after-url"),
        pytest.param("Hi: https://{{ host }}/a\n", id="spaced-placeholder-host"),
    ],
)
def test_placeholders_the_url_finder_cuts_short_are_left_as_written(
    tracker: Tracker, text: str
) -> None:
    result = report(tracker, text)
    assert result.text == text
    assert result.tracked == ()
    assert {link.skipped for link in result.links} <= {"placeholder"}


def test_double_percent_placeholder_is_a_placeholder(tracker: Tracker) -> None:
    text = "Hi: https://x.example/?e=%%emailaddr%%\n"
    result = report(tracker, text)
    assert result.text == text
    assert skips(result) == [("https://x.example/?e=%%emailaddr%%", "placeholder")]


def test_spaced_placeholder_host_is_reported(tracker: Tracker) -> None:
    # The space ends the URL as found; the report shows that much of it.
    result = report(tracker, "Hi: https://{{ host }}/a\n")
    assert skips(result) == [("https://{{", "placeholder")]


@pytest.mark.parametrize(
    ("text", "destination"),
    [
        pytest.param(
            "Unsubscribe: https://x.example/u?id=1\n", "https://x.example/u?id=1", id="label"
        ),
        pytest.param(
            "To opt out, visit https://x.example/p?id=1.\n",
            "https://x.example/p?id=1",
            id="opt-out",
        ),
        pytest.param(
            "Abmelden: https://x.example/p?id=1\n", "https://x.example/p?id=1", id="german"
        ),
        pytest.param(
            "Bye: https://x.example/unsubscribe?id=1\n",
            "https://x.example/unsubscribe?id=1",
            id="by-url",
        ),
        pytest.param(
            "https://x.example/list/UNSUB/1\n", "https://x.example/list/UNSUB/1", id="by-url-caps"
        ),
    ],
)
def test_unsubscribe_links_are_left_as_written(
    tracker: Tracker, text: str, destination: str
) -> None:
    result = report(tracker, text)
    assert result.text == text
    assert result.links == (LinkReport(destination, skipped="unsubscribe"),)

    tracked = report(tracker, text, skip_unsubscribe=False)
    (link,) = tracked.links
    assert link.skipped is None
    assert link.tracking_url is not None
    assert destination_of(tracker, link.tracking_url) == destination
    assert tracked.text == text.replace(destination, link.tracking_url)


def test_unsubscribe_context_is_the_line_since_the_previous_url(tracker: Tracker) -> None:
    text = (
        "Shop: https://x.example/shop\n"
        "Unsubscribe at https://x.example/u?id=1 or shop again https://x.example/s2\n"
    )
    result = report(tracker, text)
    # The first line says nothing of unsubscribing; on the second, what comes before the
    # unsubscribe link is not about the link after it.
    assert skips(result) == [
        ("https://x.example/shop", None),
        ("https://x.example/u?id=1", "unsubscribe"),
        ("https://x.example/s2", None),
    ]
    assert result.text == text.replace(
        "https://x.example/shop", click_url(tracker, "https://x.example/shop")
    ).replace("https://x.example/s2", click_url(tracker, "https://x.example/s2"))


@pytest.mark.parametrize(
    "excluded",
    [
        pytest.param(["x.example"], id="plain"),
        pytest.param(["X.Example."], id="case-and-root-dot"),
        pytest.param(("other.example", "x.example"), id="tuple"),
    ],
)
def test_excluded_domains_and_their_subdomains_are_left_as_written(
    tracker: Tracker, excluded: list[str]
) -> None:
    text = (
        "a https://x.example/a b https://news.x.example/b c https://X.EXAMPLE:8443/c\n"
        "d https://notx.example/d e https://x.example.org/e\n"
    )
    result = tracker.rewrite_text_report(
        text, message_id=MESSAGE_ID, recipient=RECIPIENT, exclude_domains=excluded
    )
    assert skips(result) == [
        ("https://x.example/a", "excluded-domain"),
        ("https://news.x.example/b", "excluded-domain"),
        ("https://X.EXAMPLE:8443/c", "excluded-domain"),
        ("https://notx.example/d", None),
        ("https://x.example.org/e", None),
    ]
    assert result.text == text.replace(
        "https://notx.example/d", click_url(tracker, "https://notx.example/d")
    ).replace("https://x.example.org/e", click_url(tracker, "https://x.example.org/e"))


def test_an_idn_domain_is_excluded_in_either_form(tracker: Tracker) -> None:
    text = (
        "https://b\u00fccher.example/a https://xn--bcher-kva.example/b "
        "https://sub.b\u00fccher.example/c"
    )
    for excluded in ("b\u00fccher.example", "xn--bcher-kva.example"):
        result = tracker.rewrite_text_report(
            text, message_id=MESSAGE_ID, recipient=RECIPIENT, exclude_domains=[excluded]
        )
        assert result.text == text
        assert {link.skipped for link in result.links} == {"excluded-domain"}
        assert len(result.links) == 3


def test_clicks_off_leaves_the_text_untouched(tracker: Tracker) -> None:
    text = (
        "A https://x.example/a\nB https://x.example/?u={{ id }}\nUnsubscribe: https://x.example/u\n"
    )
    result = tracker.rewrite_text_report(
        text, message_id=MESSAGE_ID, recipient=RECIPIENT, track_clicks=False
    )
    assert result.text == text
    assert skips(result) == [
        ("https://x.example/a", "clicks-off"),
        ("https://x.example/?u={{", "clicks-off"),
        ("https://x.example/u", "clicks-off"),
    ]
    # Untracked mail still counts as sent.
    assert tracker.stats().summary.delivered == 1


def test_opens_off_and_pixel_position_do_not_change_text(tracker: Tracker) -> None:
    options: list[RewriteOptions] = [
        {"track_opens": False},
        {"pixel_position": "start"},
        {"track_opens": True, "pixel_position": "end"},
    ]
    expected = f"Go: {click_url(tracker, 'https://x.example/a')}\n"
    for option in options:
        result = tracker.rewrite_text_report(
            "Go: https://x.example/a\n", message_id=MESSAGE_ID, recipient=RECIPIENT, **option
        )
        assert (result.text, result.pixel) == (expected, False)


def test_a_link_too_long_once_tracked_is_left_as_written(tracker: Tracker) -> None:
    fits = "https://x.example/" + "a" * 200
    too_long = "https://x.example/?" + "&".join(f"k{i}=v{i * 7919 % 104729}" for i in range(300))
    assert tracker.click_url(too_long, message_id=MESSAGE_ID, recipient=RECIPIENT) is None
    fitting_url = click_url(tracker, fits)
    assert len(fitting_url) <= MAX_URL_LENGTH
    text = f"Fits: {fits}\nLong: {too_long}.\n"
    result = report(tracker, text)
    assert result.links == (
        LinkReport(fits, tracking_url=fitting_url),
        LinkReport(too_long, skipped="too-long"),
    )
    assert result.text == f"Fits: {fitting_url}\nLong: {too_long}.\n"


def test_a_url_with_nul_is_left_as_written(tracker: Tracker) -> None:
    text = "Go: https://x.example/a\x00b now"
    result = report(tracker, text)
    assert result.text == text
    assert skips(result) == [("https://x.example/a\x00b", "unencodable")]


@pytest.mark.parametrize(
    ("options", "error"),
    [
        pytest.param({"exclude_domains": "x.example"}, "exclude_domains", id="one-string"),
        pytest.param({"exclude_domains": [""]}, "exclude_domains", id="empty-domain"),
        pytest.param({"pixel_position": "middle"}, "pixel_position", id="pixel-position"),
    ],
)
def test_bad_options_raise_and_register_nothing(
    tracker: Tracker, options: dict[str, object], error: str
) -> None:
    with pytest.raises(arktrack.ConfigError) as raised:
        tracker.rewrite_text(
            "https://x.example/a",
            message_id=MESSAGE_ID,
            recipient=RECIPIENT,
            **options,  # type: ignore[arg-type]
        )
    assert raised.value.setting == error
    with pytest.raises(TypeError, match="unknown rewrite option"):
        tracker.rewrite_text(
            "https://x.example/a",
            message_id=MESSAGE_ID,
            recipient=RECIPIENT,
            track_links=False,  # type: ignore[call-arg]
        )
    assert tracker.stats().summary.delivered == 0


def test_an_unsubscribe_label_on_the_line_above_counts(tracker: Tracker) -> None:
    text = "Thanks for reading.\n\nTo unsubscribe, visit:\nhttps://x.example/prefs/abc\n"
    result = report(tracker, text)
    assert result.text == text
    assert skips(result) == [("https://x.example/prefs/abc", "unsubscribe")]
