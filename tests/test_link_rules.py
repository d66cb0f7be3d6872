"""What ``rewrite_html`` tracks and skips, and why, through a real Tracker: each tracked
link is checked by following its token back to the destination."""

from __future__ import annotations

import re

import pytest

from arktrack import ConfigError, LinkReport, Tracker

BASE = "https://track.example.com"
TRACKED = re.compile(re.escape(BASE) + r"/c/[A-Za-z0-9_.-]+")


def rewrite(tracker: Tracker, html: str, **options: object) -> tuple[str, list[LinkReport]]:
    report = tracker.rewrite_html_report(
        html,
        message_id="m1",
        recipient="ada@example.com",
        **options,  # type: ignore[arg-type]
    )
    # Every tracked URL in the output belongs to a link the report says was tracked, and
    # leads back to that link's destination.
    tracked = [link for link in report.links if link.tracked]
    assert TRACKED.findall(report.text) == [link.tracking_url for link in tracked]
    for link in tracked:
        assert link.tracking_url is not None
        token = link.tracking_url.rsplit("/", 1)[1]
        assert tracker.codec.load_click(token).url == link.destination
    return report.text, list(report.links)


def reasons(links: list[LinkReport]) -> list[str | None]:
    return [link.skipped for link in links]


def test_conditional_comment_vml_button_and_its_html_twin_both_count(tracker: Tracker) -> None:
    html = (
        "<body><!--[if mso]>\n"
        '<v:roundrect xmlns:v="urn:schemas-microsoft-com:vml" href="https://x.example/buy"'
        ' style="height:40px" arcsize="10%"><center>Buy</center></v:roundrect>\n'
        "<![endif]-->\n"
        '<!--[if !mso]><!--><a href="https://x.example/buy">Buy</a><!--<![endif]-->\n'
        '<!-- <a href="https://x.example/commented-out">old</a> -->'
        "</body>"
    )
    out, links = rewrite(tracker, html, track_opens=False)
    assert [link.destination for link in links] == ["https://x.example/buy"] * 2
    assert all(link.tracked for link in links)
    assert 'href="https://x.example/commented-out"' in out
    assert out.count("https://x.example/buy") == 0


def test_conditional_comment_a_tags_and_upper_case(tracker: Tracker) -> None:
    html = '<body><!--[IF GTE MSO 9]><a HREF="https://x.example/">x</a><![ENDIF]--></body>'
    out, links = rewrite(tracker, html, track_opens=False)
    assert reasons(links) == [None]
    assert out.startswith('<body><!--[IF GTE MSO 9]><a HREF="https://track.example.com/c/')


def test_body_tags_inside_conditional_comments_do_not_place_the_pixel(tracker: Tracker) -> None:
    html = "<body><p>x</p><!--[if mso]></body><![endif]--></body>"
    out, _ = rewrite(tracker, html, track_clicks=False)
    assert out.index("<img") == len("<body><p>x</p><!--[if mso]></body><![endif]-->")


@pytest.mark.parametrize(
    "attribute",
    [
        "data-no-track",
        'data-no-track=""',
        "data-pm-no-track",
        'clicktracking="off"',
        "clicktracking=OFF",
        'disable-tracking="true"',
        "ses:no-track",
        "mc:disable-tracking",
        'data-msys-clicktrack="0"',
        "data-mautic-disable-tracking",
    ],
)
@pytest.mark.parametrize("track_clicks", [True, False])
def test_opt_out_attributes_skip_the_link_and_are_removed(
    tracker: Tracker, attribute: str, track_clicks: bool
) -> None:
    html = (
        f'<p><a {attribute} href="https://x.example/">x</a>'
        f'<a\n  href="https://y.example/"\n  {attribute}>y</a></p>'
    )
    out, links = rewrite(tracker, html, track_opens=False, track_clicks=track_clicks)
    assert out == '<p><a href="https://x.example/">x</a><a\n  href="https://y.example/">y</a></p>'
    assert reasons(links) == ["opt-out", "opt-out"]


@pytest.mark.parametrize(
    "attribute", ['clicktracking="on"', 'disable-tracking="false"', 'data-msys-clicktrack="1"']
)
def test_attributes_that_do_not_opt_out_stay(tracker: Tracker, attribute: str) -> None:
    html = f'<p><a {attribute} href="https://x.example/">x</a></p>'
    out, links = rewrite(tracker, html, track_opens=False)
    assert reasons(links) == [None]
    assert out.startswith(f'<p><a {attribute} href="{BASE}/c/')


def test_opt_out_attributes_are_removed_even_with_all_tracking_off(tracker: Tracker) -> None:
    html = '<p><a data-no-track href="https://x.example/">x</a><a data-no-track>y</a></p>'
    out, _ = rewrite(tracker, html, track_opens=False, track_clicks=False)
    assert out == '<p><a href="https://x.example/">x</a><a>y</a></p>'


@pytest.mark.parametrize(
    ("href", "reason"),
    [
        ("mailto:a@example.com", "not-http"),
        ("tel:+33123456789", "not-http"),
        ("sms:+33123456789", "not-http"),
        ("javascript:alert(1)", "not-http"),
        ("data:text/html,hi", "not-http"),
        ("ftp://x.example/", "not-http"),
        ("#top", "fragment"),
        ("/account", "relative"),
        ("account?x=1", "relative"),
        ("", "empty"),
        ("{{ unsubscribe_url }}", "placeholder"),
        ("https://x.example/?u={{user.id}}", "placeholder"),
        ("https://x.example/{% url 'home' %}", "placeholder"),
        ("*|ARCHIVE|*", "placeholder"),
        ("https://x.example/?e=*|EMAIL|*", "placeholder"),
        ("https://x.example/%recipient.id%", "placeholder"),
        ("%recipient.profile_url%", "placeholder"),
        ("https://x.example/[[id]]", "placeholder"),
        ("&lt;%= @user.url %&gt;", "placeholder"),
        ("<%asm_group_unsubscribe_raw_url%>", "placeholder"),
        ("https://x.example/${user}", "placeholder"),
        ("https://x.example/?e=%%emailaddr%%", "placeholder"),
    ],
)
def test_links_left_byte_identical(tracker: Tracker, href: str, reason: str) -> None:
    html = f"<p><a href='{href}'>Read</a></p>"
    out, links = rewrite(tracker, html, track_opens=False)
    assert out == html
    assert reasons(links) == [reason]


@pytest.mark.parametrize(
    "href",
    [
        "https://x.example/a%20b%C3%A9",  # percent escapes are not placeholders
        "https://x.example/?pct=50%25&q=%E2%9C%93t%C3",
        "https://x.example/[id]",
        "https://x.example/{id}",
    ],
)
def test_urls_that_only_look_like_placeholders_are_tracked(tracker: Tracker, href: str) -> None:
    _, links = rewrite(tracker, f'<a href="{href}">x</a>', track_opens=False)
    assert reasons(links) == [None]


def test_protocol_relative_links_are_tracked_as_https(tracker: Tracker) -> None:
    _out, links = rewrite(tracker, '<a href="//x.example/a">x</a>', track_opens=False)
    assert [(link.destination, link.skipped) for link in links] == [("https://x.example/a", None)]


def test_base_href_makes_relative_links_absolute(tracker: Tracker) -> None:
    html = (
        '<html><head><base target="_self" href="https://x.example/shop/"></head><body>'
        '<a href="item?id=1">a</a> <a href="/about">b</a> <a href="//cdn.example/c">c</a>'
        ' <a href="#top">d</a> <a href="mailto:a@example.com">e</a></body></html>'
    )
    _, links = rewrite(tracker, html, track_opens=False)
    assert [(link.destination, link.skipped) for link in links] == [
        ("https://x.example/shop/item?id=1", None),
        ("https://x.example/about", None),
        ("https://cdn.example/c", None),
        ("#top", "fragment"),
        ("mailto:a@example.com", "not-http"),
    ]


def test_a_base_that_is_not_http_resolves_nothing(tracker: Tracker) -> None:
    html = (
        '<base href="file:///tmp/"><a href="x.html">a</a><!-- <base href="https://x.example/"> -->'
    )
    _, links = rewrite(tracker, html, track_opens=False)
    assert reasons(links) == ["relative"]


@pytest.mark.parametrize(
    "html",
    [
        '<a href="https://x.example/unsubscribe?u=1">Manage</a>',
        '<a href="https://x.example/u?id=1">Unsubscribe</a>',
        '<a href="https://x.example/u?id=1"><span>Opt&nbsp;out</span> of these emails</a>',
        '<a href="https://x.example/optout">here</a>',
        '<a href="https://x.example/u">Se désabonner</a>',
        '<a href="https://x.example/u">Abmelden</a>',
        '<map><area href="https://x.example/u" alt="Unsubscribe"></map>',
        # In any case, accented capitals included.
        '<a href="https://x.example/UNSUBSCRIBE?u=1">Manage</a>',
        '<a href="https://x.example/u">SE DÉSABONNER</a>',
        '<a href="https://x.example/u">Opt-Out</a>',
    ],
)
def test_unsubscribe_links_are_skipped_by_default(tracker: Tracker, html: str) -> None:
    out, links = rewrite(tracker, html, track_opens=False)
    assert out == html
    assert reasons(links) == ["unsubscribe"]
    _, links = rewrite(tracker, html, track_opens=False, skip_unsubscribe=False)
    assert reasons(links) == [None]


def test_link_text_ends_at_the_next_link(tracker: Tracker) -> None:
    # HTML closes an <a> when another opens: the second link's text is not the first's.
    html = '<a href="https://x.example/a">Read <a href="https://x.example/b">Unsubscribe</a>'
    _, links = rewrite(tracker, html, track_opens=False)
    assert reasons(links) == [None, "unsubscribe"]


def test_excluded_domains_cover_subdomains_and_idn(tracker: Tracker) -> None:
    html = (
        '<a href="https://Example.com/a">a</a><a href="https://www.example.com/b">b</a>'
        '<a href="https://notexample.com/c">c</a><a href="https://bücher.example/d">d</a>'
        '<a href="https://xn--bcher-kva.example/e">e</a>'
    )
    _, links = rewrite(
        tracker, html, track_opens=False, exclude_domains=["example.com.", "BÜCHER.example"]
    )
    assert reasons(links) == ["excluded-domain", "excluded-domain", None] + ["excluded-domain"] * 2


@pytest.mark.parametrize(
    ("options", "setting"),
    [
        ({"exclude_domains": "example.com"}, "exclude_domains"),
        ({"exclude_domains": [""]}, "exclude_domains"),
        ({"exclude_domains": [3]}, "exclude_domains"),
        ({"pixel_position": "top"}, "pixel_position"),
        ({"exclude_domains": None}, "exclude_domains"),
        ({"exclude_domains": ["https://x.example"]}, "exclude_domains"),
        ({"track_clicks": "false"}, "track_clicks"),
        ({"track_opens": 0}, "track_opens"),
        ({"skip_unsubscribe": None}, "skip_unsubscribe"),
    ],
)
def test_bad_options_are_refused_by_name(
    tracker: Tracker, options: dict[str, object], setting: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        rewrite(tracker, "<p>x</p>", **options)
    assert caught.value.setting == setting


def test_unknown_option_is_a_type_error(tracker: Tracker) -> None:
    with pytest.raises(TypeError, match="track_open"):
        rewrite(tracker, "<p>x</p>", track_open=False)


@pytest.mark.parametrize(
    ("html", "expected_prefix"),
    [
        ('<html><body class="x">\n<p>y</p></body></html>', '<html><body class="x"><img '),
        ("<p>no body</p>", "<p>no body</p><img "),
    ],
)
def test_pixel_right_after_body(tracker: Tracker, html: str, expected_prefix: str) -> None:
    out, _ = rewrite(tracker, html, pixel_position="start")
    assert out.startswith(expected_prefix)
    assert out.count("<img ") == 1


def test_links_too_long_once_tracked_are_reported(tracker: Tracker) -> None:
    long_url = "https://x.example/?q=" + "".join(f"{i:x}" for i in range(1000))
    out, links = rewrite(tracker, f'<a href="{long_url}">x</a>', track_opens=False)
    assert reasons(links) == ["too-long"]
    assert long_url in out


def test_report_lists_tracked_and_skipped(tracker: Tracker) -> None:
    report = tracker.rewrite_html_report(
        '<body><a href="https://x.example/">x</a><a href="mailto:a@example.com">m</a></body>',
        message_id="m1",
        recipient="ada@example.com",
    )
    assert [link.destination for link in report.tracked] == ["https://x.example/"]
    assert [(link.destination, link.skipped) for link in report.skipped] == [
        ("mailto:a@example.com", "not-http")
    ]
    assert report.pixel


@pytest.mark.parametrize(
    ("html", "expected"),
    [
        pytest.param(
            '<a data-no-track=""href="https://x.example/">x</a>',
            '<a href="https://x.example/">x</a>',
            id="glued-to-the-next-attribute",
        ),
        pytest.param(
            '<a title=t data-no-track=""href=https://x.example/>x</a>',
            "<a title=t href=https://x.example/>x</a>",
            id="between-unquoted-values",
        ),
        pytest.param(
            '<a href=https://x.example/ data-no-track=""title=t>x</a>',
            "<a href=https://x.example/ title=t>x</a>",
            id="after-an-unquoted-href",
        ),
        pytest.param(
            '<a href="https://x.example/" data-no-track/>x</a>',
            '<a href="https://x.example/" />x</a>',
            id="before-a-slash",
        ),
        pytest.param(
            "<a href=https://x.example/ data-no-track/>x</a>",
            "<a href=https://x.example/ />x</a>",
            id="before-a-slash-after-an-unquoted-value",
        ),
    ],
)
def test_removing_an_opt_out_never_merges_attributes(
    tracker: Tracker, html: str, expected: str
) -> None:
    out, links = rewrite(tracker, html, track_opens=False)
    assert out == expected
    assert [(link.destination, link.skipped) for link in links] == [
        ("https://x.example/", "opt-out")
    ]


def test_unterminated_conditional_comments_do_not_recurse(tracker: Tracker) -> None:
    # Each opener is a comment that runs to the end of the document, link included.
    html = "<p>" + "<!--[if mso]>" * 5000 + '<a href="https://x.example/">x</a>'
    assert rewrite(tracker, html, track_opens=False) == (html, [])


def test_vml_unsubscribe_button_is_skipped_like_its_html_twin(tracker: Tracker) -> None:
    html = (
        '<!--[if mso]><v:roundrect href="https://x.example/bye"><center>Unsubscribe</center>'
        '</v:roundrect><![endif]--><a href="https://x.example/bye">Unsubscribe</a>'
    )
    out, links = rewrite(tracker, html, track_opens=False)
    assert out == html
    assert reasons(links) == ["unsubscribe", "unsubscribe"]


def test_only_html_whitespace_separates_attributes(tracker: Tracker) -> None:
    # A no-break space is part of a name in HTML: "a\xa0href=..." is no <a> tag, and
    # "\xa0data-no-track" is no opt-out attribute.
    not_a_link = '<a\xa0href="https://x.example/">x</a>'
    assert rewrite(tracker, not_a_link, track_opens=False) == (not_a_link, [])
    _, links = rewrite(tracker, '<a href="https://x.example/"\xa0data-no-track>x</a>')
    assert reasons(links) == [None]


def test_an_unclosed_tag_ends_a_conditional_comment_scan(tracker: Tracker) -> None:
    html = "<!--[if mso]><div title=\"<a href='https://x.example/'>\"<![endif]-->"
    assert rewrite(tracker, html, track_opens=False) == (html, [])


def test_rewriting_twice_changes_nothing_more(tracker: Tracker) -> None:
    once, _ = rewrite(tracker, '<body><a href="https://x.example/">x</a></body>')
    twice = tracker.rewrite_html_report(once, message_id="m1", recipient="ada@example.com")
    assert twice.text == once
    assert [link.skipped for link in twice.links] == ["already-tracked"]
    assert not twice.pixel


def test_a_quoted_earlier_message_does_not_stop_this_ones_pixel(tracker: Tracker) -> None:
    earlier = tracker.rewrite_html("<body><p>hi</p></body>", message_id="m0", recipient="a@x.com")
    reply = f"<body><p>re:</p><blockquote>{earlier}</blockquote></body>"
    report = tracker.rewrite_html_report(reply, message_id="m1", recipient="ada@example.com")
    assert report.pixel
    assert report.text.count("<img ") == 2


def test_click_url_does_not_wrap_its_own_links(tracker: Tracker) -> None:
    tracked = tracker.click_url("https://x.example/", message_id="m", recipient="a@x.com")
    assert tracked is not None
    assert tracker.click_url(tracked, message_id="m", recipient="a@x.com") is None
