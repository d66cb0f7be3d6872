"""Send an HTML email with tracked links and an open pixel through any SMTP server, using
only the standard library's ``smtplib`` and ``email`` plus arktrack's ``rewrite_html``.

The tracking settings come from the environment, the same values the web app that serves
the pixel and the redirects uses (``integrations/flask_app.py`` or ``starlette_app.py``)::

    export ARKTRACK_SECRET_KEY=...                   # the web app's key
    export ARKTRACK_BASE_URL=http://127.0.0.1:8000   # where that app is reachable
    export ARKTRACK_STORAGE=sqlite:///arktrack.db    # the app's database

From the repository root::

    python -m integrations.smtp_mailer --smtp-host 127.0.0.1 --smtp-port 1025 \\
        --sender news@example.com --to ada@example.com --subject "What's new" \\
        --html email.html [--text email.txt]

Or from Python::

    from integrations.smtp_mailer import send_tracked

    send_tracked(sender=..., recipient=..., subject=..., text=..., html=...,
                 host="smtp.example.com", port=587, starttls=True,
                 username=..., password=..., tracker=tracker)

Tracking tokens name one recipient, so each recipient gets a message of their own: call
``send_tracked`` once per address. Only the HTML part is tracked; the plain-text
alternative goes out exactly as given.
"""

from __future__ import annotations

import argparse
import smtplib
import sys
from collections.abc import Sequence
from email.message import EmailMessage
from email.utils import make_msgid
from pathlib import Path

from arktrack import Tracker, rewrite_html

PLAIN_FALLBACK = "This message is in HTML; open it in a mail client that shows HTML.\n"


def build_message(
    *,
    sender: str,
    recipient: str,
    subject: str,
    text: str,
    html: str,
    message_id: str | None = None,
    tracker: Tracker | None = None,
) -> EmailMessage:
    """The email with its HTML tracked for ``recipient``: a text part and an HTML part as
    alternatives. ``message_id`` goes without angle brackets (default: a fresh one).
    Without ``tracker``, one built from ``ARKTRACK_*`` variables is used."""
    # One identifier for both worlds: the Message-ID header is what a bounce report
    # quotes, so tracker.record_bounce(message_id) can be fed straight from it.
    header_id = make_msgid() if message_id is None else f"<{message_id}>"
    tracked = rewrite_html(
        html, message_id=header_id.strip("<>"), recipient=recipient, tracker=tracker
    )
    message = EmailMessage()
    message["From"] = sender
    message["To"] = recipient
    message["Subject"] = subject
    message["Message-ID"] = header_id
    message.set_content(text)
    message.add_alternative(tracked, subtype="html")
    return message


def send_tracked(
    *,
    sender: str,
    recipient: str,
    subject: str,
    text: str,
    html: str,
    host: str = "localhost",
    port: int = 25,
    starttls: bool = False,
    username: str | None = None,
    password: str | None = None,
    message_id: str | None = None,
    tracker: Tracker | None = None,
    timeout: float = 30.0,
) -> str:
    """Build the tracked message, send it and return its arktrack message id (the
    Message-ID header without its angle brackets)."""
    message = build_message(
        sender=sender,
        recipient=recipient,
        subject=subject,
        text=text,
        html=html,
        message_id=message_id,
        tracker=tracker,
    )
    with smtplib.SMTP(host, port, timeout=timeout) as smtp:
        if starttls:
            smtp.starttls()
        if username is not None:
            smtp.login(username, password or "")
        smtp.send_message(message)
    return str(message["Message-ID"]).strip("<>")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Send an HTML email with tracked links through an SMTP server. "
        "Tracking settings: ARKTRACK_SECRET_KEY, ARKTRACK_BASE_URL, ARKTRACK_STORAGE."
    )
    parser.add_argument("--smtp-host", default="localhost")
    parser.add_argument("--smtp-port", type=int, default=25)
    parser.add_argument("--starttls", action="store_true")
    parser.add_argument("--sender", required=True, help="the From address")
    parser.add_argument("--to", required=True, help="one recipient")
    parser.add_argument("--subject", required=True)
    parser.add_argument("--html", required=True, type=Path, help="the HTML body, a file")
    parser.add_argument("--text", type=Path, help="the plain-text alternative, a file")
    parser.add_argument("--message-id", help="default: a fresh Message-ID")
    args = parser.parse_args(argv)
    text = args.text.read_text("utf-8") if args.text else PLAIN_FALLBACK
    message_id = send_tracked(
        sender=args.sender,
        recipient=args.to,
        subject=args.subject,
        text=text,
        html=args.html.read_text("utf-8"),
        host=args.smtp_host,
        port=args.smtp_port,
        starttls=args.starttls,
        message_id=args.message_id,
    )
    print(f"sent {message_id} to {args.to}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
