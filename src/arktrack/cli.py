"""The ``arktrack`` command: ``demo``, ``serve``, ``rewrite``, ``stats`` and ``db``.

Settings come from ``ARKTRACK_*`` environment variables, as for the library.
"""

from __future__ import annotations

import argparse
import email
import email.policy
import json
import os
import re
import secrets
import socket
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict
from email.message import EmailMessage
from typing import Any

from .errors import ArkTrackError, ConfigError, StorageError
from .links import MessageReport, Options, RewriteOptions, RewriteReport
from .settings import DEFAULT_STORAGE, ENV_NAMES
from .storage import open_storage
from .tracker import Tracker


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        result: int = args.run(args)
        return result
    except ArkTrackError as exc:
        print(f"arktrack: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # "arktrack rewrite ... | head": the reader has gone, which is not an error of
        # ours. Point stdout at nothing so the interpreter's final flush stays quiet.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="arktrack",
        description="Email open and click tracking. Settings: "
        + ", ".join(ENV_NAMES.values())
        + f" (storage defaults to {DEFAULT_STORAGE}).",
    )
    commands = parser.add_subparsers(required=True, metavar="COMMAND")

    demo = commands.add_parser("demo", help="run a local demo: a sample email to open and click")
    _server_options(demo, port=8000)
    demo.set_defaults(run=_demo)

    serve = commands.add_parser("serve", help="run a standalone tracking server (uvicorn)")
    _server_options(serve, port=8080)
    serve.set_defaults(run=_serve)

    rewrite = commands.add_parser(
        "rewrite",
        help="track the links of an HTML email, a plain-text body or a whole message",
        description="Write the input to standard output with its links tracked and the "
        "open pixel added, and register the message as sent.",
    )
    rewrite.add_argument("file", nargs="?", help="the input (default: standard input)")
    rewrite.add_argument("--message-id", required=True)
    rewrite.add_argument("--recipient", required=True)
    kind = rewrite.add_mutually_exclusive_group()
    kind.add_argument(
        "--text", action="store_true", help="the input is a plain-text body (default: HTML)"
    )
    kind.add_argument(
        "--message",
        action="store_true",
        help="the input is a whole message (.eml): track its HTML part",
    )
    rewrite.add_argument(
        "--track-text", action="store_true", help="with --message: track its plain-text part too"
    )
    rewrite.add_argument("--no-opens", action="store_true", help="no open pixel")
    rewrite.add_argument("--no-clicks", action="store_true", help="leave links as they are")
    rewrite.add_argument(
        "--exclude-domain",
        action="append",
        default=[],
        metavar="DOMAIN",
        help="leave links to DOMAIN and its subdomains as they are (repeatable)",
    )
    rewrite.add_argument(
        "--track-unsubscribe",
        action="store_true",
        help="track unsubscribe and opt-out links too (by default they stay as they are)",
    )
    rewrite.add_argument(
        "--pixel-at-start",
        action="store_true",
        help="put the open pixel right after <body> instead of before </body>",
    )
    rewrite.add_argument(
        "--report",
        action="store_true",
        help="after the output, list on standard error what was done to each link",
    )
    rewrite.set_defaults(run=_rewrite)

    stats = commands.add_parser("stats", help="opens, clicks and rates for a date range")
    stats.add_argument("--start", help="first day, YYYY-MM-DD (UTC; default: the beginning)")
    stats.add_argument("--end", help="last day, YYYY-MM-DD (UTC; default: today)")
    stats.add_argument("--json", action="store_true", help="print JSON")
    stats.set_defaults(run=_stats)

    db = commands.add_parser("db", help="schema migrations (Alembic)")
    db.add_argument("action", choices=["upgrade", "current"])
    db.set_defaults(run=_db)
    return parser


def _server_options(parser: argparse.ArgumentParser, port: int) -> None:
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on")
    parser.add_argument("--port", type=int, default=port, help="0 picks a free port")


def _bind(host: str, port: int) -> socket.socket:
    try:
        sock = socket.create_server((host, port))
    except OSError as exc:
        raise ArkTrackError(f"cannot listen on {host}:{port}: {exc.strerror}") from None
    sock.set_inheritable(True)
    return sock


def _run_server(app: Any, sock: socket.socket) -> None:
    import uvicorn

    config = uvicorn.Config(
        app,
        log_level="warning",
        access_log=False,
        lifespan="on",
        # ARKTRACK_TRUSTED_PROXIES decides whose X-Forwarded-For is believed, not uvicorn.
        proxy_headers=False,
    )
    uvicorn.Server(config).run(sockets=[sock])


def _local_url(sock: socket.socket) -> str:
    host, port = sock.getsockname()[:2]
    return f"http://{'[' + host + ']' if ':' in host else host}:{port}"


def _demo(args: argparse.Namespace) -> int:
    from .demo import SAMPLE_RECIPIENT, demo_app

    sock = _bind(args.host, args.port)
    base = os.environ.get("ARKTRACK_BASE_URL") or _local_url(sock)
    # A demo needs no setup: without a configured key, links are signed with a fresh one
    # and stay valid while this process runs.
    tracker = Tracker.from_env(
        base_url=base, secret_key=os.environ.get("ARKTRACK_SECRET_KEY") or secrets.token_urlsafe()
    )
    message_id = f"demo_{int(time.time())}"
    app = demo_app(tracker, message_id)
    print(
        f"arktrack demo: tracking server on {base}, storage {_storage_setting()}\n\n"
        f"  1. Open the sample email:   {base}/demo/email\n"
        "  2. Click one of its links\n"
        f"  3. See the numbers change:  {base}/demo/stats   (or: arktrack stats)\n\n"
        f"The email was rewritten for {SAMPLE_RECIPIENT} as message {message_id}. "
        "Ctrl+C stops.",
        flush=True,
    )
    try:
        _run_server(app, sock)
    finally:
        tracker.close()
    return 0


def _serve(args: argparse.Namespace) -> int:
    from .asgi import tracking_app

    sock = _bind(args.host, args.port)
    tracker = Tracker.from_env(base_url=os.environ.get("ARKTRACK_BASE_URL") or _local_url(sock))
    print(
        f"arktrack: serving /o and /c on {_local_url(sock)} "
        f"(links point to {tracker.settings.base_url}), storage {_storage_setting()}",
        flush=True,
    )
    try:
        _run_server(tracking_app(tracker), sock)
    finally:
        tracker.close()
    return 0


def _rewrite(args: argparse.Namespace) -> int:
    if args.track_text and not args.message:
        raise ConfigError("--track-text", "only applies with --message")
    # Checked before the input is read: a mistyped option must not wait for standard input.
    options = _rewrite_options(args)
    tracker = Tracker.from_env()
    try:
        raw = _read_input(args.file)
        if args.message:
            out, report_lines = _rewrite_message(tracker, raw, args, options)
        else:
            # surrogateescape round-trips bytes that are not UTF-8 (a legacy charset)
            # unchanged.
            body = raw.decode("utf-8", "surrogateescape")
            rewrite = tracker.rewrite_text_report if args.text else tracker.rewrite_html_report
            report = rewrite(body, message_id=args.message_id, recipient=args.recipient, **options)
            out = report.text.encode("utf-8", "surrogateescape")
            report_lines = _report_lines(report, pixel=not args.text)
    finally:
        tracker.close()
    sys.stdout.buffer.write(out)
    sys.stdout.flush()
    if args.report:
        # Standard error only: standard output is the rewritten document, to be piped on.
        for line in report_lines:
            print(line, file=sys.stderr)
    return 0


def _rewrite_options(args: argparse.Namespace) -> RewriteOptions:
    options: RewriteOptions = {
        "track_opens": not args.no_opens,
        "track_clicks": not args.no_clicks,
        "exclude_domains": args.exclude_domain,
        "skip_unsubscribe": not args.track_unsubscribe,
        "pixel_position": "start" if args.pixel_at_start else "end",
    }
    try:
        Options.of(options)
    except ConfigError as exc:
        # Name the option as the user typed it, not the keyword argument it becomes.
        if exc.setting == "exclude_domains":
            raise ConfigError("--exclude-domain", exc.problem) from None
        raise
    return options


def _read_input(file: str | None) -> bytes:
    if not file:
        return sys.stdin.buffer.read()
    try:
        with open(file, "rb") as handle:
            return handle.read()
    except OSError as exc:
        raise ArkTrackError(f"cannot read {file}: {exc.strerror}") from None


def _rewrite_message(
    tracker: Tracker, raw: bytes, args: argparse.Namespace, options: RewriteOptions
) -> tuple[bytes, list[str]]:
    """The rewritten message as bytes, and the lines ``--report`` prints about it."""
    message = _parse_message(raw)
    report = tracker.rewrite_message(
        message,
        message_id=args.message_id,
        recipient=args.recipient,
        track_text=args.track_text,
        **options,
    )
    # The email package writes every line with the policy's line ending ("\n" for
    # policy.default); keep the one the file used, so that only the tracked parts differ.
    linesep = "\r\n" if raw.split(b"\n", 1)[0].endswith(b"\r") else "\n"
    # Headers as they were read: refolding would break List-Unsubscribe and any DKIM
    # signature. An mbox "From " line stays too.
    policy = email.policy.default.clone(linesep=linesep, refold_source="none")
    out = message.as_bytes(unixfrom=message.get_unixfrom() is not None, policy=policy)
    return out, _message_report_lines(report, track_text=args.track_text)


def _parse_message(raw: bytes) -> EmailMessage:
    """Parse a message, and make sure it can be rewritten and written back out.

    The email package accepts anything, but some malformed headers make it fail later,
    with an IndexError or a UnicodeEncodeError from deep inside it, when they are parsed
    (lazily, on first use) or written. Parsing the headers ``rewrite_message`` reads and
    writing the message once here turns that into a one-line error before the message is
    registered as sent. Other headers are left unparsed: the message is written back as
    it is, and one malformed ``To:`` must not stop a test of the body.
    """
    try:
        message = email.message_from_bytes(raw, policy=email.policy.default)
        for part in message.walk():
            for name in _MIME_HEADERS:
                part.get_all(name)
        message.as_bytes()
    except Exception as exc:  # whatever the email package's own bugs raise
        raise ArkTrackError(
            f"cannot parse the message: the email package fails on it "
            f"({type(exc).__name__}: {_shown(str(exc))})"
        ) from None
    if not message.keys():
        raise ArkTrackError("not an email message: it has no headers (for HTML, drop --message)")
    return message


# What finding and rewriting the body parts reads of each part.
_MIME_HEADERS = (
    "content-type",
    "content-disposition",
    "content-transfer-encoding",
    "content-id",
)


def _message_report_lines(report: MessageReport, *, track_text: bool) -> list[str]:
    lines = (
        _report_lines(report.html, pixel=True, prefix="html: ")
        if report.html is not None
        else ["html: no HTML part, or one that cannot be decoded: left as it was"]
    )
    if not track_text:
        lines.append("text: left as it was (--track-text tracks it)")
    elif report.text is None:
        lines.append("text: no plain-text part, or one that cannot be decoded: left as it was")
    else:
        lines.extend(_report_lines(report.text, pixel=False, prefix="text: "))
    return lines


def _report_lines(report: RewriteReport, *, pixel: bool, prefix: str = "") -> list[str]:
    """One line per link, then a summary; ``pixel`` says whether the open pixel applies
    (it does not to plain text)."""
    lines = [
        f"{prefix}tracked  {_shown(link.destination)}"
        if link.tracked
        else f"{prefix}skipped  {link.skipped}  {_shown(link.destination)}"
        for link in report.links
    ]
    count = len(report.links)
    summary = (
        f"{prefix}{count} link{'' if count == 1 else 's'}: "
        f"{len(report.tracked)} tracked, {len(report.skipped)} skipped"
    )
    if pixel:
        summary += f"; pixel: {'yes' if report.pixel else 'no'}"
    lines.append(summary)
    return lines


# Control characters would break a report line in two or drive the terminal; lone
# surrogates (bytes that were not UTF-8, kept by surrogateescape) cannot be printed.
_UNPRINTABLE = re.compile(r"[\x00-\x1f\x7f-\x9f\ud800-\udfff]")


def _shown(value: str) -> str:
    """``value`` on one printable line: a byte that was not UTF-8 as ``\\xe9``, a control
    character as ``\\x0a``."""

    def escape(match: re.Match[str]) -> str:
        code = ord(match[0])
        if 0xDC80 <= code <= 0xDCFF:  # surrogateescape's stand-in for a byte
            return f"\\x{code - 0xDC00:02x}"
        return f"\\x{code:02x}" if code <= 0xFF else f"\\u{code:04x}"

    return _UNPRINTABLE.sub(escape, value)


def _stats(args: argparse.Namespace) -> int:
    from .stats import compute

    storage = open_storage(_storage_setting(), setting="ARKTRACK_STORAGE")
    try:
        stats = compute(storage, args.start, args.end)
    finally:
        storage.close()
    summary = stats.summary
    if args.json:
        print(
            json.dumps(
                {
                    "startDate": stats.start_date and stats.start_date.isoformat(),
                    "endDate": stats.end_date.isoformat(),
                    "summary": asdict(summary),
                }
            )
        )
        return 0
    since = stats.start_date or "the beginning"
    print(f"Messages sent from {since} to {stats.end_date} (UTC)")
    for label, value in summary.labelled():
        print(f"  {label:<20}{value}")
    return 0


def _db(args: argparse.Namespace) -> int:
    from sqlalchemy.exc import SQLAlchemyError

    from .storage.migrate import current_revision, upgrade
    from .storage.sql import create_engine_for

    engine = create_engine_for(_storage_setting(), "ARKTRACK_STORAGE")
    try:
        if args.action == "upgrade":
            upgrade(engine)
        print(current_revision(engine) or "no arktrack tables yet")
    except SQLAlchemyError as exc:
        raise StorageError(f"database error: {exc}") from exc
    finally:
        engine.dispose()
    return 0


def _storage_setting() -> str:
    return os.environ.get("ARKTRACK_STORAGE") or DEFAULT_STORAGE


if __name__ == "__main__":
    raise SystemExit(main())
