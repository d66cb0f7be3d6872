"""Email messages in tests: parsed as a mail client would, and their body parts."""

from __future__ import annotations

import email
import email.policy
from email.message import EmailMessage


def parse(raw: bytes) -> EmailMessage:
    message = email.message_from_bytes(raw, policy=email.policy.default)
    assert isinstance(message, EmailMessage)
    return message


def reparse(message: EmailMessage) -> EmailMessage:
    """The message as a recipient gets it: serialised to bytes and parsed back."""
    return parse(message.as_bytes())


def body(message: EmailMessage, subtype: str) -> EmailMessage:
    part = message.get_body((subtype,))
    assert isinstance(part, EmailMessage)
    return part
