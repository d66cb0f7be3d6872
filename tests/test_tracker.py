from __future__ import annotations

import re
from pathlib import Path

import pytest

from arktrack import ConfigError, EventType, Tracker, rewrite_html
from arktrack.tracker import MAX_URL_LENGTH

from .conftest import BASE_URL, SECRET

EMAIL = (
    '<!DOCTYPE html PUBLIC "-//W3C//DTD XHTML 1.0 Transitional//EN" '
    '"http://www.w3.org/TR/xhtml1/DTD/xhtml1-transitional.dtd">\n'
    "<html><body><table><tr><td>\n"
    "<a href='https://example.com/a?x=1&amp;y=2'>one</a>\n"
    '<a href="mailto:help@example.com">mail</a>\n'
    "</td></tr></table></body></html>\n"
)


def hit(tracker: Tracker, url: str, ua: str = "Mozilla/5.0") -> int:
    kind, token = url.rsplit("/", 2)[1:]
    response = tracker.handler.handle(
        "GET", kind, token, user_agent=ua, forwarded_for=None, peer="198.51.100.7"
    )
    return response.status


def links(html: str) -> list[str]:
    return re.findall(r"(?:href|src)=[\"']([^\"']+)", html)


def test_rewrite_tracks_links_adds_pixel_and_registers(tracker: Tracker) -> None:
    out = tracker.rewrite_html(EMAIL, message_id="msg_123", recipient="user@example.com")
    click_url, mailto, pixel = links(out)
    assert click_url.startswith(f"{BASE_URL}/c/")
    assert mailto == "mailto:help@example.com"
    assert pixel.startswith(f"{BASE_URL}/o/")
    assert out.index(pixel) < out.index("</body>")
    assert "user@example.com" not in out
    assert tracker.stats().summary.delivered == 1

    assert hit(tracker, pixel) == 200
    assert hit(tracker, click_url) == 302
    tracker.flush()
    opened, clicked = tracker.events(message_id="msg_123")
    assert opened.to_dict() == {
        "type": "email.opened",
        "data": {
            "emailId": "msg_123",
            "to": "user@example.com",
            "userAgent": "Mozilla/5.0",
            "ipAddress": "198.51.100.7",
            "location": None,
            "timestamp": opened.data["timestamp"],
        },
    }
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", opened.data["timestamp"])
    assert clicked.type is EventType.CLICKED
    assert list(clicked.data) == ["emailId", "to", "url", "userAgent", "ipAddress", "timestamp"]
    assert clicked.data["url"] == "https://example.com/a?x=1&y=2"


@pytest.mark.parametrize(
    ("opens", "clicks"),
    [(True, False), (False, True), (False, False)],
)
def test_track_flags_leave_their_part_untouched(
    tracker: Tracker, opens: bool, clicks: bool
) -> None:
    out = tracker.rewrite_html(
        EMAIL, message_id="m", recipient="u@example.com", track_opens=opens, track_clicks=clicks
    )
    assert ("/o/" in out) is opens
    assert ("https://example.com/a?x=1&amp;y=2" in out) is not clicks
    if not opens and not clicks:
        assert out == EMAIL
    # Sensitive mail sent untracked still counts as delivered.
    assert tracker.stats().summary.delivered == 1


def test_plain_text_is_returned_untouched(tracker: Tracker) -> None:
    text = "Hello,\nsee https://example.com/a for details.\n"
    assert tracker.rewrite_html(text, message_id="m", recipient="u@example.com") == text


def test_links_too_long_for_outlook_stay_untracked(tracker: Tracker) -> None:
    fits = "https://example.com/" + "a" * 200
    too_long = "https://example.com/?" + "&".join(f"k{i}=v{i * 7919 % 104729}" for i in range(300))
    html = f'<p><a href="{fits}">a</a> <a href="{too_long}">b</a></p>'
    out = tracker.rewrite_html(html, message_id="m", recipient="u@example.com")
    assert fits not in out
    assert f'href="{too_long}"' in out
    tracked = [url for url in links(out) if url.startswith(BASE_URL)]
    assert len(tracked) == 2  # the fitting link and the pixel
    assert all(len(url) <= MAX_URL_LENGTH for url in tracked)
    assert tracker.click_url(too_long, message_id="m", recipient="u@example.com") is None


@pytest.mark.parametrize(
    ("message_id", "recipient", "setting"),
    [
        ("", "u@example.com", "message_id"),
        ("m", "  ", "recipient"),
        (None, "u", "message_id"),
        # Token fields are NUL-separated.
        ("m\x00n", "u@example.com", "message_id"),
    ],
)
def test_missing_ids_are_refused_by_name(
    tracker: Tracker, message_id: object, recipient: str, setting: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        tracker.rewrite_html("<p>x</p>", message_id=message_id, recipient=recipient)  # type: ignore[arg-type]
    assert caught.value.setting == setting


def test_path_prefix_in_base_url() -> None:
    prefixed = Tracker(
        secret_key=SECRET, base_url="https://app.example.com/t/", storage="memory://"
    )
    url = prefixed.open_url("m", "u@example.com")
    assert url.startswith("https://app.example.com/t/o/")
    assert prefixed.settings.path_prefix == "/t"
    prefixed.close()


def test_rewrite_html_function_uses_given_or_env_tracker(
    tracker: Tracker, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    out = rewrite_html(EMAIL, message_id="m", recipient="u@example.com", tracker=tracker)
    assert f"{BASE_URL}/c/" in out

    import arktrack.tracker as module

    monkeypatch.setattr(module, "_default", None)
    monkeypatch.setenv("ARKTRACK_SECRET_KEY", SECRET)
    monkeypatch.setenv("ARKTRACK_BASE_URL", "https://env.example.com")
    monkeypatch.setenv("ARKTRACK_STORAGE", f"sqlite:///{tmp_path / 'env.db'}")
    out = rewrite_html(EMAIL, message_id="m", recipient="u@example.com")
    assert "https://env.example.com/c/" in out
    assert module.default_tracker().stats().summary.delivered == 1
    module.default_tracker().close()


def test_bounce_removes_from_delivered(tracker: Tracker) -> None:
    for rcpt in ("a@example.com", "b@example.com"):
        tracker.rewrite_html(EMAIL, message_id="msg_1", recipient=rcpt)
    assert tracker.record_bounce("msg_1", "b@example.com") == 1
    assert tracker.stats().summary.delivered == 1
    assert tracker.record_bounce("msg_1") == 2
    assert tracker.stats().summary.delivered == 0


@pytest.mark.parametrize(
    "destination",
    [
        "javascript:alert(1)",
        "mailto:a@example.com",
        "/relative",
        "https://x.example/\udce9",
        "https://x.example/\x00",
    ],
)
def test_click_url_refuses_what_can_never_redirect(tracker: Tracker, destination: str) -> None:
    assert tracker.click_url(destination, message_id="m", recipient="u@example.com") is None


@pytest.mark.parametrize("sent_at", ["2024-01-01", "naive", "date"])
def test_sent_at_must_be_an_aware_datetime(tracker: Tracker, sent_at: str) -> None:
    from datetime import date, datetime

    value = {"naive": datetime(2024, 1, 1), "date": date(2024, 1, 1)}.get(sent_at, sent_at)
    with pytest.raises(ConfigError) as caught:
        tracker.register_message("m", "u@example.com", sent_at=value)  # type: ignore[arg-type]
    assert caught.value.setting == "sent_at"


@pytest.mark.parametrize("setting", ["message_id", "recipient"])
def test_ids_that_are_not_unicode_text_are_refused_by_name(tracker: Tracker, setting: str) -> None:
    ids = {"message_id": "m", "recipient": "u@example.com", setting: "x\udcff"}
    with pytest.raises(ConfigError) as caught:
        tracker.rewrite_html('<a href="https://x.example/">x</a>', **ids)
    assert caught.value.setting == setting
    assert tracker.stats().summary.delivered == 0


def test_base_url_with_an_ipv6_host_or_a_plus_works() -> None:
    # Characters that need no escaping in an attribute are fine in tracking links.
    for base_url in ("http://[::1]:8000", "https://t.example/a+b"):
        other = Tracker(secret_key=SECRET, base_url=base_url, storage="memory://")
        out = other.rewrite_html(
            '<a href="https://x.example/">x</a>', message_id="m", recipient="u@example.com"
        )
        other.close()
        assert out.startswith(f'<a href="{base_url}/c/')


@pytest.mark.parametrize("method", ["rewrite_html", "rewrite_text"])
def test_bytes_bodies_are_refused_with_a_hint(tracker: Tracker, method: str) -> None:
    with pytest.raises(TypeError, match="decode the bytes first"):
        getattr(tracker, method)(b"<p>x</p>", message_id="m", recipient="u@example.com")
    assert tracker.stats().summary.delivered == 0
