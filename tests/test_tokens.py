from __future__ import annotations

import hashlib
import hmac
import zlib
from collections.abc import Sequence

import pytest
from itsdangerous import Signer
from itsdangerous.encoding import base64_decode, base64_encode

from arktrack import InvalidToken
from arktrack.tokens import CLICK_SALT, OPEN_SALT, ClickToken, OpenToken, TokenCodec

KEY = "first-key-0123456789"
NEW_KEY = "second-key-0123456789"


def test_open_and_click_tokens_round_trip() -> None:
    codec = TokenCodec([KEY])
    ref = codec.recipient_ref("user@example.com")
    assert codec.load_open(codec.dump_open(OpenToken("msg_1", ref))) == OpenToken("msg_1", ref)
    click = ClickToken("msg_1", ref, "https://example.com/a?b=1&c=é")
    assert codec.load_click(codec.dump_click(click)) == click


def test_tokens_are_url_safe_and_carry_no_address() -> None:
    codec = TokenCodec([KEY])
    address = "someone.special@example.org"
    ref = codec.recipient_ref(address)
    for token in (
        codec.dump_open(OpenToken("msg_1", ref)),
        codec.dump_click(ClickToken("msg_1", ref, "https://example.com/" + "x" * 300)),
    ):
        assert set(token) <= set(
            "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_."
        )
        decoded = b"".join(base64_decode(part) for part in token.lstrip(".").split(".")[:1])
        assert address.encode() not in decoded
        assert b"someone" not in decoded


def test_long_destinations_are_compressed() -> None:
    codec = TokenCodec([KEY])
    url = "https://example.com/?" + "&".join(f"utm_param{i}=value{i}" for i in range(40))
    token = codec.dump_click(ClickToken("m", "r", url))
    assert token.startswith(".")
    assert len(token) < len(url)
    assert codec.load_click(token).url == url


def test_compression_is_as_short_as_zlibs_default_and_reads_its_tokens() -> None:
    # The small window keeps zlib cheap; links already sent were made with the default.
    codec = TokenCodec([KEY])
    url = "https://example.com/p?" + "&".join(f"utm_{i}=campaign-{i % 3}" for i in range(60))
    fields = ClickToken("m", "r", url)
    raw = "\x00".join(fields).encode()
    signer = Signer(KEY, salt=CLICK_SALT, digest_method=hashlib.sha256)
    old = signer.sign(b"." + base64_encode(zlib.compress(raw, 9))).decode("ascii")
    token = codec.dump_click(fields)
    assert len(token) <= len(old)
    assert codec.load_click(old) == codec.load_click(token) == fields


@pytest.mark.parametrize("key_length", [0, 1, 32, 63, 64, 65, 200])
def test_the_mac_is_hmac_sha256(key_length: int) -> None:
    from arktrack.tokens import _KeyedMAC

    key = bytes(range(key_length))
    keyed = _KeyedMAC(key)
    for message in (b"", b"x", bytes(range(256)) * 3):
        assert keyed.digest(message) == hmac.digest(key, message, "sha256")


def test_recipient_ref_is_stable_short_and_keyed() -> None:
    codec = TokenCodec([KEY])
    ref = codec.recipient_ref("a@example.com")
    assert ref == TokenCodec([KEY]).recipient_ref("a@example.com")
    assert len(ref) == 12
    assert ref != codec.recipient_ref("b@example.com")
    assert ref != TokenCodec([NEW_KEY]).recipient_ref("a@example.com")


def test_open_token_is_not_a_click_token() -> None:
    codec = TokenCodec([KEY])
    with pytest.raises(InvalidToken):
        codec.load_click(codec.dump_open(OpenToken("m", "r")))
    with pytest.raises(InvalidToken):
        codec.load_open(codec.dump_click(ClickToken("m", "r", "https://example.com/")))


def test_key_rotation_last_key_signs_all_verify() -> None:
    old = TokenCodec([KEY])
    rotated = TokenCodec([KEY, NEW_KEY])
    new_only = TokenCodec([NEW_KEY])
    old_token = old.dump_click(ClickToken("m", "r", "https://example.com/"))
    new_token = rotated.dump_click(ClickToken("m", "r", "https://example.com/"))
    assert rotated.load_click(old_token).url == "https://example.com/"
    assert new_only.load_click(new_token).url == "https://example.com/"
    with pytest.raises(InvalidToken):
        old.load_click(new_token)
    with pytest.raises(InvalidToken):
        new_only.load_click(old_token)


@pytest.mark.parametrize(
    "token",
    [
        pytest.param("", id="empty"),
        pytest.param("abc", id="no-signature"),
        pytest.param("abc.def", id="bad-signature"),
        pytest.param("é.é", id="non-ascii"),
        pytest.param("." * 50, id="dots"),
        pytest.param("%2e%2e/etc", id="escaped"),
    ],
)
def test_garbage_is_invalid(token: str) -> None:
    with pytest.raises(InvalidToken):
        TokenCodec([KEY]).load_click(token)


def _forge(fields: Sequence[str]) -> str:
    """A token whose payload we choose, correctly signed: what a key holder could make."""
    signer = Signer(KEY, salt=CLICK_SALT, digest_method=hashlib.sha256)
    return signer.sign(base64_encode("\x00".join(fields))).decode()


@pytest.mark.parametrize(
    "fields",
    [
        pytest.param(["m", "r", "javascript:alert(1)"], id="javascript"),
        pytest.param(["m", "r", "data:text/html,x"], id="data"),
        pytest.param(["m", "r"], id="short"),
        pytest.param(["m", "r", "https://x", "extra"], id="long"),
    ],
)
def test_signed_but_unacceptable_payloads_are_refused(fields: Sequence[str]) -> None:
    with pytest.raises(InvalidToken):
        TokenCodec([KEY]).load_click(_forge(fields))


def test_tokens_are_standard_itsdangerous_signatures() -> None:
    codec = TokenCodec([KEY, NEW_KEY])
    opened = codec.dump_open(OpenToken("m", "r"))
    clicked = codec.dump_click(ClickToken("m", "r", "https://example.com/"))
    # Any itsdangerous Signer with the same key and salt verifies them: the format is
    # itsdangerous's own, whatever arktrack does to make signing fast.
    assert Signer(NEW_KEY, salt=OPEN_SALT, digest_method=hashlib.sha256).validate(opened)
    assert Signer(NEW_KEY, salt=CLICK_SALT, digest_method=hashlib.sha256).validate(clicked)
    assert not Signer(KEY, salt=OPEN_SALT, digest_method=hashlib.sha256).validate(opened)
