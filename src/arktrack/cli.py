"""The ``arktrack`` command: ``demo``, ``serve``, ``rewrite``, ``stats`` and ``db``.

Settings come from ``ARKTRACK_*`` environment variables, as for the library.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import socket
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict
from typing import Any

from .errors import ArkTrackError, StorageError
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

    rewrite = commands.add_parser("rewrite", help="track the links of an HTML email")
    rewrite.add_argument("file", nargs="?", help="HTML file (default: standard input)")
    rewrite.add_argument("--message-id", required=True)
    rewrite.add_argument("--recipient", required=True)
    rewrite.add_argument("--no-opens", action="store_true", help="no open pixel")
    rewrite.add_argument("--no-clicks", action="store_true", help="leave links as they are")
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
    tracker = Tracker.from_env()
    if args.file:
        try:
            with open(args.file, "rb") as handle:
                raw = handle.read()
        except OSError as exc:
            raise ArkTrackError(f"cannot read {args.file}: {exc.strerror}") from None
    else:
        raw = sys.stdin.buffer.read()
    # surrogateescape round-trips bytes that are not UTF-8 (a legacy charset) unchanged.
    html = raw.decode("utf-8", "surrogateescape")
    out = tracker.rewrite_html(
        html,
        message_id=args.message_id,
        recipient=args.recipient,
        track_opens=not args.no_opens,
        track_clicks=not args.no_clicks,
    )
    sys.stdout.buffer.write(out.encode("utf-8", "surrogateescape"))
    sys.stdout.flush()
    tracker.close()
    return 0


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
