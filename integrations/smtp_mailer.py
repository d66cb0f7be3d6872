"""Send an HTML email with tracked links and an open pixel through any SMTP server, using
only the standard library's ``smtplib`` and ``email`` plus arktrack's
``Tracker.rewrite_message``.

The tracking settings come from the environment, the same values the web app that serves
the pixel and the redirects uses (``integrations/flask_app.py`` or ``starlette_app.py``)::

    export ARKTRACK_SECRET_KEY=...                   # the web app's key
    export ARKTRACK_BASE_URL=http://127.0.0.1:8000   # where that app is reachable
    export ARKTRACK_STORAGE=sqlite:///arktrack.db    # the app's database

From the repository root::

    python -m integrations.smtp_mailer --smtp-host 127.0.0.1 --smtp-port 1025 \\
        --sender news@example.com --to ada@example.com --subject "What's new" \\
        --html email.html [--text email.txt] [--track-text]

Or from Python::

    from integrations.smtp_mailer import send_tracked

    send_tracked(sender=..., recipient=..., subject=..., text=..., html=...,
                 host="smtp.example.com", port=587, starttls=True,
                 username=..., password=..., tracker=tracker, track_text=False)

Tracking tokens name one recipient, so each recipient gets a message of their own: call
``send_tracked`` once per address. The HTML part gets tracked links and the open pixel.
The plain-text alternative goes out exactly as given unless ``track_text=True``
(``--track-text``), which tracks its bare ``http(s)://`` URLs too, by the same rules:
unsubscribe links, excluded domains and template placeholders stay as written.
"""

from __future__ import annotations

import argparse
import smtplib
import sys
from collections.abc import Sequence
from email.message import EmailMessage
from email.utils import make_msgid
from pathlib import Path

from arktrack import Tracker
from arktrack.tracker import default_tracker

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
    track_text: bool = False,
) -> EmailMessage:
    """The email tracked for ``recipient``: a text part and an HTML part as alternatives,
    the HTML with tracked links and the open pixel, the text tracked only with
    ``track_text``. ``message_id`` goes without angle brackets (default: a fresh one).
    Without ``tracker``, one built from ``ARKTRACK_*`` variables is used."""
    # One identifier for both worlds: the Message-ID header is what a bounce report
    # quotes, so tracker.record_bounce(message_id) can be fed straight from it.
    header_id = make_msgid() if message_id is None else f"<{message_id}>"
    message = EmailMessage()
    message["From"] = sender
    message["To"] = recipient
    message["Subject"] = subject
    message["Message-ID"] = header_id
    message.set_content(text)
    message.add_alternative(html, subtype="html")
    # Tracked as a whole message: rewrite_message keeps each part's charset and transfer
    # encoding, and registers the message only once its bodies are rewritten.
    (tracker if tracker is not None else default_tracker()).rewrite_message(
        message, message_id=header_id.strip("<>"), recipient=recipient, track_text=track_text
    )
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
    track_text: bool = False,
    timeout: float = 30.0,
) -> str:
    """Build the tracked message, send it and return its arktrack message id (the
    Message-ID header without its angle brackets). ``track_text`` tracks the plain-text
    part's links too."""
    message = build_message(
        sender=sender,
        recipient=recipient,
        subject=subject,
        text=text,
        html=html,
        message_id=message_id,
        tracker=tracker,
        track_text=track_text,
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
    parser.add_argument(
        "--track-text",
        action="store_true",
        help="track the links of the plain-text part too (default: only the HTML part)",
    )
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
        track_text=args.track_text,
    )
    print(f"sent {message_id} to {args.to}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
