"""Signed, URL-safe tokens for the open pixel and for tracked links.

A token is ``base64(payload) + "." + base64(HMAC-SHA256)``, exactly what an itsdangerous
``Signer`` with the same key, salt and SHA-256 makes and verifies; the payload is the fields
joined by NUL, a character no message id or tracked URL contains. Each purpose has its own
salt, so an open token never passes as a click token. Keys rotate the itsdangerous way:
the last key signs, every key verifies. Keys are derived from the secrets with
itsdangerous's own scheme, once; the MACs are then computed here directly, because going
through ``Signer`` for every token costs more than the HMAC itself.

Tokens are self-contained: a click token carries its destination, so the redirect works
with storage down. They carry no plaintext address: the recipient travels as a short keyed
hash (``recipient_ref``) that storage maps back to the address registered at send time.
"""

from __future__ import annotations

import hashlib
import hmac
import zlib
from binascii import a2b_base64, b2a_base64
from collections.abc import Sequence
from typing import NamedTuple

from itsdangerous import Signer
from itsdangerous.encoding import base64_encode

from .errors import InvalidToken

OPEN_SALT = "arktrack.open.v1"
CLICK_SALT = "arktrack.click.v1"
RECIPIENT_SALT = "arktrack.recipient.v1"
# 9 bytes = 72 bits: collisions among one message's recipients are out of reach, and the
# base64 form is exactly 12 characters with no padding.
RECIPIENT_REF_BYTES = 9
# Payloads are tiny; anything larger than this after decompression was not made by us.
MAX_PAYLOAD = 8192
# zlib costs about 4 us whatever the input, and saves nothing on payloads this short; on
# long URLs it keeps links under Outlook's 2,048 characters.
COMPRESS_FROM = 128
# A 2 KB window covers any payload that fits in a link. zlib's default (32 KB, and
# memLevel 8) allocates about 270 KB per call, which cost 50 us instead of 5 whenever
# malloc handed it fresh pages; the stream is the same format and as short.
ZLIB_WBITS = 11
ZLIB_MEMLEVEL = 4
# Compressed payloads start with "." (the itsdangerous convention), which base64 never does.
COMPRESSED = b"."
# Between fields. Parsing a split is a fifth of the cost of JSON on the click path.
SEPARATOR = "\x00"


# Named tuples, not dataclasses: a click builds one on the request path, and a frozen
# dataclass costs twice as much to make.
class OpenToken(NamedTuple):
    message_id: str
    recipient_ref: str


class ClickToken(NamedTuple):
    message_id: str
    recipient_ref: str
    url: str


class TokenCodec:
    """Makes and reads tokens. Build one per set of keys: key derivation happens here,
    once, because doing it per token costs more than the HMAC itself."""

    def __init__(self, secret_keys: Sequence[str]) -> None:
        self._open_macs = _keyed_macs(secret_keys, OPEN_SALT)
        self._click_macs = _keyed_macs(secret_keys, CLICK_SALT)
        self._ref_mac = _keyed_macs(secret_keys, RECIPIENT_SALT)[0]

    def recipient_ref(self, recipient: str) -> str:
        mac = self._ref_mac.digest(recipient.encode("utf-8"))
        return base64_encode(mac[:RECIPIENT_REF_BYTES]).decode("ascii")

    def dump_open(self, token: OpenToken) -> str:
        return _sign(self._open_macs[0], token)

    def dump_click(self, token: ClickToken) -> str:
        """Raises ValueError for a field holding NUL, which a token cannot carry."""
        return _sign(self._click_macs[0], token)

    def load_open(self, value: str) -> OpenToken:
        message_id, ref = _unsign(self._open_macs, value, 2)
        return OpenToken(message_id, ref)

    def load_click(self, value: str) -> ClickToken:
        message_id, ref, url = _unsign(self._click_macs, value, 3)
        if not url[:8].lower().startswith(("http://", "https://")):
            raise InvalidToken("click token destination is not an http(s) URL")
        return ClickToken(message_id, ref, url)


class _KeyedMAC:
    """HMAC-SHA256 (RFC 2104) under one key, with the key's inner and outer blocks hashed
    once: a MAC is then two hash copies and three short updates. Every click pays for
    one, and ``hmac.HMAC.copy`` cost 70% more."""

    __slots__ = ("_inner", "_outer")

    def __init__(self, key: bytes) -> None:
        block = hashlib.sha256().block_size
        if len(key) > block:
            key = hashlib.sha256(key).digest()
        key = key.ljust(block, b"\0")
        self._inner = hashlib.sha256(key.translate(_INNER_PAD))
        self._outer = hashlib.sha256(key.translate(_OUTER_PAD))

    def digest(self, message: bytes) -> bytes:
        inner = self._inner.copy()
        inner.update(message)
        outer = self._outer.copy()
        outer.update(inner.digest())
        return outer.digest()


# Each key byte XORed with RFC 2104's ipad and opad, as bytes.translate tables.
_INNER_PAD = bytes(byte ^ 0x36 for byte in range(256))
_OUTER_PAD = bytes(byte ^ 0x5C for byte in range(256))


def _keyed_macs(secret_keys: Sequence[str], salt: str) -> list[_KeyedMAC]:
    """A MAC keyed with each secret's key for ``salt``, derived the way an itsdangerous
    ``Signer`` derives it; the newest (signing) key first."""
    return [
        _KeyedMAC(Signer(key, salt=salt, digest_method=hashlib.sha256).derive_key())
        for key in reversed(secret_keys)
    ]


def _mac(keyed: _KeyedMAC, payload: bytes) -> bytes:
    """The signature of ``payload`` as a token carries it: unpadded URL-safe base64."""
    signature = keyed.digest(payload)
    return b2a_base64(signature, newline=False).translate(_TO_URLSAFE).rstrip(b"=")


def _sign(keyed: _KeyedMAC, fields: Sequence[str]) -> str:
    text = SEPARATOR.join(fields)
    if text.count(SEPARATOR) != len(fields) - 1:
        raise ValueError("a token field cannot contain NUL")
    raw = text.encode("utf-8")
    payload = base64_encode(raw)
    if len(raw) >= COMPRESS_FROM:
        deflate = zlib.compressobj(9, zlib.DEFLATED, ZLIB_WBITS, ZLIB_MEMLEVEL)
        packed = deflate.compress(raw) + deflate.flush()
        if len(packed) < len(raw) - 1:
            payload = COMPRESSED + base64_encode(packed)
    return (payload + b"." + _mac(keyed, payload)).decode("ascii")


def _unsign(macs: Sequence[_KeyedMAC], value: str, arity: int) -> list[str]:
    """The fields of ``value`` if its signature is exactly one we would issue (newest key
    first). Comparing the encoded signature, rather than decoding the one given as
    ``Signer.unsign`` does, also refuses the other spellings that base64's spare bits in
    the last character allow: a link that differs from ours in any byte is not ours."""
    try:
        payload, dot, signature = value.encode("ascii").rpartition(b".")
        if not dot:
            raise InvalidToken("token has no signature")
        for keyed in macs:
            if hmac.compare_digest(_mac(keyed, payload), signature):
                break
        else:
            raise InvalidToken("signature does not match")
        if payload[:1] == COMPRESSED:
            inflater = zlib.decompressobj()
            raw = inflater.decompress(_b64decode(payload[1:]), MAX_PAYLOAD)
            if inflater.unconsumed_tail:
                raise InvalidToken("token payload too large")
        else:
            raw = _b64decode(payload)
        fields = raw.decode("utf-8").split(SEPARATOR)
    except (UnicodeError, ValueError, zlib.error) as exc:
        raise InvalidToken(str(exc) or type(exc).__name__) from None
    if len(fields) != arity:
        raise InvalidToken("token payload has an unexpected shape")
    return fields


def _b64decode(data: bytes) -> bytes:
    # itsdangerous's base64_decode, and base64's own urlsafe_b64decode, minus their type
    # juggling: this runs on every click. binascii is as lenient as both.
    return a2b_base64(data.translate(_FROM_URLSAFE) + b"=" * (-len(data) % 4))


# base64's URL-safe alphabet, as base64.urlsafe_b64encode/decode translate it.
_TO_URLSAFE = bytes.maketrans(b"+/", b"-_")
_FROM_URLSAFE = bytes.maketrans(b"-_", b"+/")
