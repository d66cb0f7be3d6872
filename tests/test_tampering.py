"""A forged or tampered link must never redirect anywhere."""

from __future__ import annotations

import string
from urllib.parse import urlsplit

import pytest

from arktrack import Tracker
from arktrack.handler import CLICK, Response
from arktrack.tokens import ClickToken

from .conftest import BASE_URL, SECRET

DESTINATION = "https://shop.example.com/cart?item=42"
ALPHABET = string.ascii_letters + string.digits + "-_."


def click(tracker: Tracker, token: str) -> Response:
    return tracker.handler.handle(
        "GET", CLICK, token, user_agent="test", forwarded_for=None, peer="203.0.113.9"
    )


def tracked_token(tracker: Tracker, url: str = DESTINATION) -> str:
    tracked = tracker.click_url(url, message_id="msg_1", recipient="user@example.com")
    assert tracked is not None
    return urlsplit(tracked).path.rsplit("/", 1)[1]


def assert_refused(response: Response) -> None:
    assert response.status == 404
    assert "Location" not in dict(response.headers)


def test_valid_token_redirects(tracker: Tracker) -> None:
    response = click(tracker, tracked_token(tracker))
    assert response.status == 302
    assert dict(response.headers)["Location"] == DESTINATION


def test_every_byte_flipped_never_redirects(tracker: Tracker) -> None:
    token = tracked_token(tracker)
    for position, original in enumerate(token):
        for replacement in {ALPHABET[(ALPHABET.index(original) + 1) % len(ALPHABET)], "A", "."}:
            if replacement == original:
                continue
            forged = token[:position] + replacement + token[position + 1 :]
            assert_refused(click(tracker, forged))
    tracker.flush()
    assert tracker.events() == []


def test_every_truncation_never_redirects(tracker: Tracker) -> None:
    token = tracked_token(tracker)
    for length in range(len(token)):
        assert_refused(click(tracker, token[:length]))
    assert_refused(click(tracker, token + "A"))


def test_swapped_destination_never_redirects(tracker: Tracker) -> None:
    real = tracked_token(tracker)
    evil = tracked_token(tracker, "https://evil.example.net/phish")
    payload, signature = real.rsplit(".", 1)
    evil_payload = evil.rsplit(".", 1)[0]
    assert_refused(click(tracker, f"{evil_payload}.{signature}"))
    assert_refused(click(tracker, f"{payload}.{evil.rsplit('.', 1)[1]}"))


def test_token_from_another_key_never_redirects(tracker: Tracker) -> None:
    other = Tracker(
        secret_key="some-other-secret-0123456789", base_url=BASE_URL, storage="memory://"
    )
    assert_refused(click(tracker, tracked_token(other)))
    other.close()


def test_open_token_on_click_path_never_redirects(tracker: Tracker) -> None:
    open_url = tracker.open_url("msg_1", "user@example.com")
    assert_refused(click(tracker, open_url.rsplit("/", 1)[1]))


def test_rotation_keeps_old_links_working() -> None:
    old = Tracker(secret_key=SECRET, base_url=BASE_URL, storage="memory://")
    token = tracked_token(old)
    new_key = "the-new-key-0123456789"
    rotated = Tracker(secret_key=[SECRET, new_key], base_url=BASE_URL, storage="memory://")
    retired = Tracker(secret_key=[new_key], base_url=BASE_URL, storage="memory://")
    assert click(rotated, token).status == 302
    assert click(rotated, tracked_token(rotated)).status == 302
    assert click(retired, tracked_token(rotated)).status == 302
    assert_refused(click(retired, token))
    for made in (old, rotated, retired):
        made.close()


@pytest.mark.parametrize(
    "url",
    [
        pytest.param("https://example.com/\r\nSet-Cookie: x=1", id="crlf"),
        pytest.param("https://example.com/a b", id="space"),
        pytest.param("https://bücher.example/straße?q=ü", id="idn"),
    ],
)
def test_location_header_is_always_safe(tracker: Tracker, url: str) -> None:
    token = tracker.codec.dump_click(ClickToken("m", "r", url))
    location = dict(click(tracker, token).headers)["Location"]
    assert location.isascii()
    assert all(0x21 <= ord(char) <= 0x7E for char in location)


def test_idn_location_is_punycode() -> None:
    from arktrack.handler import header_safe_url

    assert (
        header_safe_url("https://bücher.example/straße?q=ü")
        == "https://xn--bcher-kva.example/stra%C3%9Fe?q=%C3%BC"
    )
    assert header_safe_url("https://example.com/plain?a=1") == "https://example.com/plain?a=1"


def test_tampered_open_tokens_get_the_pixel_and_record_nothing(tracker: Tracker) -> None:
    token = tracker.open_url("msg_1", "user@example.com").rsplit("/", 1)[1]
    for position, original in enumerate(token):
        forged = token[:position] + ("A" if original != "A" else "B") + token[position + 1 :]
        response = tracker.handler.handle(
            "GET", "o", forged, user_agent=None, forwarded_for=None, peer=None
        )
        assert response.status == 200
    tracker.flush()
    assert tracker.events() == []


def test_empty_open_token_gets_the_pixel_and_records_nothing(tracker: Tracker) -> None:
    response = tracker.handler.handle(
        "GET", "o", "", user_agent=None, forwarded_for=None, peer=None
    )
    assert response.status == 200
    tracker.flush()
    assert tracker.events() == []
