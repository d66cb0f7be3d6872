"""Signed, URL-safe tokens for the open pixel and for tracked links.

A token is ``base64(json payload) + "." + base64(HMAC-SHA256)``, signed with itsdangerous.
Each purpose has its own salt, so an open token never passes as a click token. Keys rotate
the itsdangerous way: the last key signs, every key verifies.

Tokens are self-contained: a click token carries its destination, so the redirect works
with storage down. They carry no plaintext address: the recipient travels as a short keyed
hash (``recipient_ref``) that storage maps back to the address registered at send time.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import zlib
from base64 import urlsafe_b64decode, urlsafe_b64encode
from collections.abc import Sequence
from typing import NamedTuple

from itsdangerous import Signer
from itsdangerous.encoding import base64_encode
from itsdangerous.signer import SigningAlgorithm

from .errors import InvalidToken

OPEN_SALT = "arktrack.open.v1"
CLICK_SALT = "arktrack.click.v1"
RECIPIENT_SALT = "arktrack.recipient.v1"
# 9 bytes = 72 bits: collisions among one message's recipients are out of reach, and the
# base64 form is exactly 12 characters with no padding.
RECIPIENT_REF_BYTES = 9
# Payloads are tiny; anything larger than this after decompression was not made by us.
MAX_PAYLOAD = 8192
# Compressed payloads start with "." (the itsdangerous convention), which base64 never does.
COMPRESSED = b"."


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
        self._open = _signer(secret_keys, OPEN_SALT)
        self._click = _signer(secret_keys, CLICK_SALT)
        ref_key = _signer(secret_keys, RECIPIENT_SALT).secret_keys[-1]
        self._ref_mac = hmac.new(ref_key, digestmod=hashlib.sha256)

    def recipient_ref(self, recipient: str) -> str:
        mac = self._ref_mac.copy()
        mac.update(recipient.encode("utf-8"))
        return base64_encode(mac.digest()[:RECIPIENT_REF_BYTES]).decode("ascii")

    def dump_open(self, token: OpenToken) -> str:
        return _sign(self._open, [token.message_id, token.recipient_ref])

    def dump_click(self, token: ClickToken) -> str:
        return _sign(self._click, [token.message_id, token.recipient_ref, token.url])

    def load_open(self, value: str) -> OpenToken:
        message_id, ref = _unsign(self._open, value, 2)
        return OpenToken(message_id, ref)

    def load_click(self, value: str) -> ClickToken:
        message_id, ref, url = _unsign(self._click, value, 3)
        if not url.lower().startswith(("http://", "https://")):
            raise InvalidToken("click token destination is not an http(s) URL")
        return ClickToken(message_id, ref, url)


class _KeyedHMAC(SigningAlgorithm):
    """HMAC-SHA256 keyed once per key. itsdangerous's ``HMACAlgorithm`` keys a new HMAC on
    every call, which costs more than the MAC of a token this short."""

    def __init__(self, keys: Sequence[bytes]) -> None:
        self._keyed = {key: hmac.new(key, digestmod=hashlib.sha256) for key in keys}

    def get_signature(self, key: bytes, value: bytes) -> bytes:
        mac = self._keyed[key].copy()
        mac.update(value)
        return mac.digest()


def _signer(secret_keys: Sequence[str], salt: str) -> Signer:
    # itsdangerous derives the key from (secret, salt) on every sign/verify; derive each key
    # once with itsdangerous's own scheme and hand the results over as-is.
    derived = [
        Signer(key, salt=salt, digest_method=hashlib.sha256).derive_key() for key in secret_keys
    ]
    return Signer(
        derived,
        salt=salt,
        key_derivation="none",
        digest_method=hashlib.sha256,
        algorithm=_KeyedHMAC(derived),
    )


def _verified_payload(signer: Signer, signed: bytes) -> bytes:
    """The payload of ``signed`` if its signature is exactly one we would issue, newest
    key first. Comparing the encoded signature, rather than decoding the one given as
    ``Signer.unsign`` does, also refuses the other spellings that base64's spare bits in
    the last character allow: a link that differs from ours in any byte is not ours."""
    payload, dot, signature = signed.rpartition(b".")
    if dot:
        for key in reversed(signer.secret_keys):
            expected = urlsafe_b64encode(signer.algorithm.get_signature(key, payload))
            expected = expected.rstrip(b"=")
            if hmac.compare_digest(expected, signature):
                return payload
    raise InvalidToken("signature does not match")


def _sign(signer: Signer, fields: list[str]) -> str:
    raw = json.dumps(fields, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    packed = zlib.compress(raw, 9)
    payload = (
        COMPRESSED + base64_encode(packed) if len(packed) < len(raw) - 1 else base64_encode(raw)
    )
    return signer.sign(payload).decode("ascii")


def _unsign(signer: Signer, value: str, arity: int) -> list[str]:
    try:
        payload = _verified_payload(signer, value.encode("ascii"))
        if payload.startswith(COMPRESSED):
            inflater = zlib.decompressobj()
            raw = inflater.decompress(_b64decode(payload[1:]), MAX_PAYLOAD)
            if inflater.unconsumed_tail:
                raise InvalidToken("token payload too large")
        else:
            raw = _b64decode(payload)
        fields = json.loads(raw.decode("utf-8"))
    except (UnicodeError, ValueError, zlib.error) as exc:
        raise InvalidToken(str(exc) or type(exc).__name__) from None
    if type(fields) is not list or len(fields) != arity:
        raise InvalidToken("token payload has an unexpected shape")
    for field in fields:
        if type(field) is not str:
            raise InvalidToken("token payload has an unexpected shape")
    return fields


def _b64decode(data: bytes) -> bytes:
    # itsdangerous's base64_decode, minus its type juggling: this runs on every click.
    return urlsafe_b64decode(data + b"=" * (-len(data) % 4))
