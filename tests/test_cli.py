from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from email.message import EmailMessage
from pathlib import Path
from typing import Unpack

import pytest

from arktrack import RewriteOptions, Tracker
from arktrack.cli import main
from arktrack.pixel import pixel_tag

from .conftest import BASE_URL, SECRET
from .messages import parse

EMAIL = b'<!DOCTYPE html>\r\n<html><body>\r\n<a href="https://example.com/a">a</a>\xe9\r\n</body></html>'
IDS = ("--message-id", "m1", "--recipient", "u@example.com")

# Plain text with a byte that is not UTF-8, CRLF line ends and a URL that ends a sentence.
TEXT_BODY = b"Caf\xe9 news,\r\nread https://x.example/a?b=1.\r\n\r\n-- \r\nThe team\r\n"

# One link of each fate: tracked, not http, unsubscribe.
LINKS = (
    "<html><body>\n"
    '<a href="https://x.example/a">read</a>\n'
    '<a href="mailto:team@x.example">write</a>\n'
    '<a href="https://news.x.example/unsubscribe?u=1">Unsubscribe</a>\n'
    "</body></html>\n"
)

# The body parts of ALTERNATIVE_EML, decoded: the CRLF before a boundary belongs to it.
HTML_PART = (
    "<html><body>\r\n"
    "<p>Caf\u00e9 cr\u00e8me, fresh from the roaster this morning, is waiting for you.</p>\r\n"
    '<p><a href="https://x.example/shop?a=1&amp;b=2">Shop</a></p>\r\n'
    "</body></html>"
)
TEXT_PART = "Caf\u00e9 cr\u00e8me: https://x.example/shop?a=1&b=2"
# As a mailer writes it: CRLF, the HTML part quoted-printable with a soft line break.
ALTERNATIVE_EML = (
    b"From: shop@x.example\r\n"
    b"To: u@example.com\r\n"
    b"Subject: Fresh coffee\r\n"
    b"MIME-Version: 1.0\r\n"
    b'Content-Type: multipart/alternative; boundary="b1"\r\n'
    b"\r\n"
    b"--b1\r\n"
    b'Content-Type: text/plain; charset="utf-8"\r\n'
    b"Content-Transfer-Encoding: 8bit\r\n"
    b"\r\n" + TEXT_PART.encode() + b"\r\n"
    b"--b1\r\n"
    b'Content-Type: text/html; charset="utf-8"\r\n'
    b"Content-Transfer-Encoding: quoted-printable\r\n"
    b"\r\n"
    b"<html><body>\r\n"
    b"<p>Caf=C3=A9 cr=C3=A8me, fresh from the roaster this morning, is waiting fo=\r\n"
    b"r you.</p>\r\n"
    b'<p><a href=3D"https://x.example/shop?a=3D1&amp;b=3D2">Shop</a></p>\r\n'
    b"</body></html>\r\n"
    b"--b1--\r\n"
)


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> str:
    url = f"sqlite:///{tmp_path / 'cli.db'}"
    monkeypatch.setenv("ARKTRACK_SECRET_KEY", SECRET)
    monkeypatch.setenv("ARKTRACK_BASE_URL", BASE_URL)
    monkeypatch.setenv("ARKTRACK_STORAGE", url)
    return url


@pytest.fixture
def reference() -> Iterator[Tracker]:
    """A tracker with the test keys and storage of its own: tokens are deterministic, so it
    says what the CLI's output must be."""
    made = Tracker(secret_key=SECRET, base_url=BASE_URL, storage="memory://")
    yield made
    made.close()


def delivered(url: str) -> int:
    tracker = Tracker(secret_key=SECRET, base_url=BASE_URL, storage=url)
    count = tracker.stats().summary.delivered
    tracker.close()
    return count


def run_cli(*args: str, stdin: bytes = b"") -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [sys.executable, "-m", "arktrack.cli", *args],
        input=stdin,
        capture_output=True,
        timeout=60,
        check=False,
    )


def test_rewrite_file_and_stdin_keep_every_other_byte(env: str, tmp_path: Path) -> None:
    source = tmp_path / "mail.html"
    source.write_bytes(EMAIL)
    from_file = run_cli(
        "rewrite", str(source), "--message-id", "m1", "--recipient", "u@example.com"
    )
    from_stdin = run_cli(
        "rewrite", "--message-id", "m1", "--recipient", "u@example.com", stdin=EMAIL
    )
    for result in (from_file, from_stdin):
        assert result.returncode == 0, result.stderr
        out = result.stdout
        assert out.startswith(b'<!DOCTYPE html>\r\n<html><body>\r\n<a href="' + BASE_URL.encode())
        assert b"\xe9\r\n" in out  # a byte that is not UTF-8 survives untouched
        assert b"/o/" in out
    untracked = run_cli(
        "rewrite",
        "--message-id",
        "m2",
        "--recipient",
        "u@example.com",
        "--no-opens",
        "--no-clicks",
        stdin=EMAIL,
    )
    assert untracked.stdout == EMAIL
    tracker = Tracker(secret_key=SECRET, base_url=BASE_URL, storage=env)
    assert tracker.stats().summary.delivered == 2
    tracker.close()


def test_stats_text_and_json(env: str, capsys: pytest.CaptureFixture[str]) -> None:
    tracker = Tracker(secret_key=SECRET, base_url=BASE_URL, storage=env)
    for n in range(4):
        tracker.register_message(f"m{n}", "u@example.com")
    tracker.close()
    assert main(["stats", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["summary"] == {
        "opens": 0,
        "clicks": 0,
        "delivered": 4,
        "open_rate": 0.0,
        "click_rate": 0.0,
        "click_to_open_rate": 0.0,
    }
    assert main(["stats", "--start", "2000-01-01"]) == 0
    out = capsys.readouterr().out
    assert "  Delivered           4\n" in out
    assert "  Open rate           0.0%\n" in out


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        ("ARKTRACK_SECRET_KEY", "short", "ARKTRACK_SECRET_KEY: each key needs at least 16"),
        ("ARKTRACK_BASE_URL", "nowhere", "ARKTRACK_BASE_URL: must be an absolute http(s) URL"),
        ("ARKTRACK_STORAGE", "nonsense", "ARKTRACK_STORAGE: 'nonsense' is not a database URL"),
    ],
)
def test_bad_settings_give_one_clear_line(
    env: str, monkeypatch: pytest.MonkeyPatch, variable: str, value: str, message: str
) -> None:
    monkeypatch.setenv(variable, value)
    result = run_cli("rewrite", "--message-id", "m", "--recipient", "u", stdin=b"<p>x</p>")
    assert result.returncode == 2
    assert result.stderr.decode().startswith(f"arktrack: {message}")
    assert b"Traceback" not in result.stderr


def test_bad_dates_and_missing_files(env: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["stats", "--start", "Jan 1"]) == 2
    assert "start_date: must be a date as YYYY-MM-DD" in capsys.readouterr().err
    assert main(["rewrite", "/no/such.html", "--message-id", "m", "--recipient", "u"]) == 2
    assert "cannot read /no/such.html" in capsys.readouterr().err


def test_db_upgrade_and_current(env: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["db", "current"]) == 0
    assert capsys.readouterr().out.strip() == "no arktrack tables yet"
    assert main(["db", "upgrade"]) == 0
    assert capsys.readouterr().out.strip() == "0001"


def test_port_in_use_is_a_clear_error(env: str, capsys: pytest.CaptureFixture[str]) -> None:
    import socket

    with socket.create_server(("127.0.0.1", 0)) as busy:
        port = busy.getsockname()[1]
        assert main(["serve", "--port", str(port)]) == 2
    assert f"cannot listen on 127.0.0.1:{port}" in capsys.readouterr().err


def test_rewrite_writes_nothing_when_the_message_cannot_be_registered(env: str) -> None:
    # A database that refuses new messages (a trigger here; a full disk in life). The
    # command registers before it exits, so it says so instead of printing a mail whose
    # opens and clicks would count nowhere.
    Tracker(secret_key=SECRET, base_url=BASE_URL, storage=env).close()  # the tables
    with sqlite3.connect(env.removeprefix("sqlite:///")) as conn:
        conn.execute(
            "CREATE TRIGGER refuse BEFORE INSERT ON arktrack_messages "
            "BEGIN SELECT RAISE(ABORT, 'database or disk is full'); END"
        )
    result = run_cli("rewrite", *IDS, stdin=EMAIL)
    assert result.returncode == 2
    assert result.stdout == b""
    assert b"database or disk is full" in result.stderr
    assert b"Traceback" not in result.stderr


def test_rewrite_text_tracks_urls_and_keeps_every_other_byte(env: str, reference: Tracker) -> None:
    result = run_cli("rewrite", "--text", *IDS, "--report", stdin=TEXT_BODY)
    assert result.returncode == 0, result.stderr
    click = reference.click_url(
        "https://x.example/a?b=1", message_id="m1", recipient="u@example.com"
    )
    assert click is not None
    assert result.stdout == TEXT_BODY.replace(b"https://x.example/a?b=1", click.encode())
    # Text has no pixel, so the summary says nothing of one.
    assert result.stderr == b"tracked  https://x.example/a?b=1\n1 link: 1 tracked, 0 skipped\n"
    assert delivered(env) == 1


def body_text(message: EmailMessage, subtype: str) -> str:
    part = message.get_body((subtype,))
    assert part is not None
    content = part.get_content()
    assert isinstance(content, str)
    return content


def test_rewrite_message_tracks_the_quoted_printable_html_part(
    env: str, reference: Tracker
) -> None:
    result = run_cli("rewrite", "--message", *IDS, stdin=ALTERNATIVE_EML)
    assert result.returncode == 0, result.stderr
    assert result.stderr == b""
    click = reference.click_url(
        "https://x.example/shop?a=1&b=2", message_id="m1", recipient="u@example.com"
    )
    assert click is not None
    pixel = pixel_tag(reference.open_url("m1", "u@example.com"))
    message = parse(result.stdout)
    assert message["Subject"] == "Fresh coffee"
    assert message.get_content_type() == "multipart/alternative"
    html = message.get_body(("html",))
    assert html is not None
    assert html["Content-Transfer-Encoding"] == "quoted-printable"
    assert body_text(message, "html") == HTML_PART.replace(
        "https://x.example/shop?a=1&amp;b=2", click
    ).replace("</body>", pixel + "</body>")
    assert body_text(message, "plain") == TEXT_PART  # no --track-text
    assert b"\r\n\r\n" + TEXT_PART.encode() + b"\r\n--b1\r\n" in result.stdout
    # The file's CRLF line ends are kept.
    assert b"\n" not in result.stdout.replace(b"\r\n", b"")
    assert delivered(env) == 1


def test_rewrite_message_report_per_part(
    env: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source = tmp_path / "mail.eml"
    source.write_bytes(ALTERNATIVE_EML)
    assert main(["rewrite", str(source), "--message", "--track-text", "--report", *IDS]) == 0
    captured = capsys.readouterr()
    assert captured.err == (
        "html: tracked  https://x.example/shop?a=1&b=2\n"
        "html: 1 link: 1 tracked, 0 skipped; pixel: yes\n"
        "text: tracked  https://x.example/shop?a=1&b=2\n"
        "text: 1 link: 1 tracked, 0 skipped\n"
    )
    tracked = parse(captured.out.encode())
    assert f"{BASE_URL}/c/" in body_text(tracked, "plain")

    plain = tmp_path / "plain.eml"
    plain.write_bytes(b"Content-Type: text/plain\n\nhttps://x.example/a\n")
    assert main(["rewrite", str(plain), "--message", "--report", *IDS]) == 0
    assert capsys.readouterr().err == (
        "html: no HTML part, or one that cannot be decoded: left as it was\n"
        "text: left as it was (--track-text tracks it)\n"
    )


@pytest.mark.parametrize(
    ("flags", "options", "report"),
    [
        pytest.param(
            [],
            {},
            [
                "tracked  https://x.example/a",
                "skipped  not-http  mailto:team@x.example",
                "skipped  unsubscribe  https://news.x.example/unsubscribe?u=1",
                "3 links: 1 tracked, 2 skipped; pixel: yes",
            ],
            id="default",
        ),
        pytest.param(
            ["--track-unsubscribe"],
            {"skip_unsubscribe": False},
            [
                "tracked  https://x.example/a",
                "skipped  not-http  mailto:team@x.example",
                "tracked  https://news.x.example/unsubscribe?u=1",
                "3 links: 2 tracked, 1 skipped; pixel: yes",
            ],
            id="track-unsubscribe",
        ),
        pytest.param(
            [
                "--track-unsubscribe",
                "--exclude-domain",
                "other.example",
                "--exclude-domain",
                "News.X.Example.",
            ],
            {"skip_unsubscribe": False, "exclude_domains": ["other.example", "news.x.example"]},
            [
                "tracked  https://x.example/a",
                "skipped  not-http  mailto:team@x.example",
                "skipped  excluded-domain  https://news.x.example/unsubscribe?u=1",
                "3 links: 1 tracked, 2 skipped; pixel: yes",
            ],
            id="exclude-domain",
        ),
        pytest.param(
            ["--exclude-domain", "x.example", "--pixel-at-start"],
            {"exclude_domains": ["x.example"], "pixel_position": "start"},
            [
                "skipped  excluded-domain  https://x.example/a",
                "skipped  not-http  mailto:team@x.example",
                "skipped  unsubscribe  https://news.x.example/unsubscribe?u=1",
                "3 links: 0 tracked, 3 skipped; pixel: yes",
            ],
            id="pixel-at-start",
        ),
        pytest.param(
            ["--no-opens", "--no-clicks"],
            {"track_opens": False, "track_clicks": False},
            [
                "skipped  clicks-off  https://x.example/a",
                "skipped  clicks-off  mailto:team@x.example",
                "skipped  clicks-off  https://news.x.example/unsubscribe?u=1",
                "3 links: 0 tracked, 3 skipped; pixel: no",
            ],
            id="nothing-tracked",
        ),
    ],
)
def test_rewrite_options_and_report(
    env: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    reference: Tracker,
    flags: list[str],
    options: RewriteOptions,
    report: list[str],
) -> None:
    source = tmp_path / "links.html"
    source.write_text(LINKS)
    assert main(["rewrite", str(source), *IDS, "--report", *flags]) == 0
    captured = capsys.readouterr()
    # Standard output is the document alone, ready to pipe on; the report is on stderr.
    assert captured.out == rewrite_reference(reference, LINKS, **options)
    assert captured.err.splitlines() == report


def rewrite_reference(tracker: Tracker, html: str, **options: Unpack[RewriteOptions]) -> str:
    return tracker.rewrite_html(html, message_id="m1", recipient="u@example.com", **options)


def test_pixel_at_start_puts_the_pixel_after_body(env: str, reference: Tracker) -> None:
    result = run_cli("rewrite", *IDS, "--pixel-at-start", "--no-clicks", stdin=LINKS.encode())
    pixel = pixel_tag(reference.open_url("m1", "u@example.com"))
    assert result.stdout == LINKS.replace("<body>", "<body>" + pixel).encode()


@pytest.mark.parametrize(
    ("flags", "error"),
    [
        pytest.param(
            ["--exclude-domain", ""],
            "arktrack: --exclude-domain: holds an empty domain\n",
            id="empty-domain",
        ),
        pytest.param(
            ["--exclude-domain", "x.example", "--exclude-domain", "  "],
            "arktrack: --exclude-domain: '  ' is not a domain name\n",
            id="blank-domain",
        ),
        pytest.param(
            ["--track-text"],
            "arktrack: --track-text: only applies with --message\n",
            id="track-text-without-message",
        ),
        pytest.param(
            ["--message-id", " "],
            "arktrack: message_id: must be a non-empty string, got ' '\n",
            id="blank-message-id",
        ),
    ],
)
def test_bad_rewrite_options_give_one_line_and_register_nothing(
    env: str, tmp_path: Path, capsys: pytest.CaptureFixture[str], flags: list[str], error: str
) -> None:
    source = tmp_path / "links.html"
    source.write_text(LINKS)
    assert main(["rewrite", str(source), *IDS, *flags]) == 2
    assert capsys.readouterr() == ("", error)
    assert delivered(env) == 0


def test_invalid_domain_is_one_line_without_traceback(env: str) -> None:
    result = run_cli("rewrite", *IDS, "--exclude-domain", "\u00e9..example", stdin=b"<p>x</p>")
    assert result.returncode == 2
    assert result.stdout == b""
    error = result.stderr.decode()
    assert error == "arktrack: --exclude-domain: 'é..example' is not a domain name\n"
    assert error.count("\n") == 1


def test_text_and_message_are_mutually_exclusive(
    env: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["rewrite", "--text", "--message", *IDS])
    assert exit_info.value.code == 2
    assert "argument --message: not allowed with argument --text" in capsys.readouterr().err


def test_message_the_email_package_fails_on_is_one_line(
    env: str, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Some malformed headers make the email package raise from deep inside; which ones
    # depends on the Python version, so the failure is simulated.
    def fail(self: EmailMessage, *args: object, **kwargs: object) -> bytes:
        raise IndexError("string index out of range")

    monkeypatch.setattr(EmailMessage, "as_bytes", fail)
    source = tmp_path / "mail.eml"
    source.write_bytes(ALTERNATIVE_EML)
    assert main(["rewrite", str(source), "--message", *IDS]) == 2
    assert capsys.readouterr() == (
        "",
        "arktrack: cannot parse the message: the email package fails on it "
        "(IndexError: string index out of range)\n",
    )
    assert delivered(env) == 0


def test_rewrite_message_keeps_headers_as_written(env: str) -> None:
    long_list = b", ".join(b"<https://x.example/unsubscribe/" + b"a" * 60 + b">" for _ in range(2))
    raw = (
        b"From sender@example.com Thu Dec  3 10:00:00 2026\n"
        b"List-Unsubscribe: " + long_list + b", <mailto:u@example.com>\n"
        b"Subject: " + b"A subject long enough to be folded by the email package " * 3 + b"\n"
        b"Content-Type: text/html; charset=utf-8\n\n"
        b'<p><a href="https://x.example/">x</a></p>\n'
    )
    result = run_cli("rewrite", "--message", "--no-opens", *IDS, stdin=raw)
    assert result.returncode == 0, result.stderr
    head, _, body = result.stdout.partition(b"\n\n")
    assert head == raw.partition(b"\n\n")[0]
    assert body.startswith(b'<p><a href="https://')


@pytest.mark.parametrize(
    "stdin", [b"", b'<!DOCTYPE html>\n<p><a href="https://x.example/">x</a></p>\n']
)
def test_rewrite_message_refuses_what_is_not_a_message(env: str, stdin: bytes) -> None:
    result = run_cli("rewrite", "--message", *IDS, stdin=stdin)
    assert result.returncode == 2
    assert result.stderr == (
        b"arktrack: not an email message: it has no headers (for HTML, drop --message)\n"
    )
    assert delivered(env) == 0


def test_a_closed_pipe_is_not_an_error(env: str, tmp_path: Path) -> None:
    source = tmp_path / "big.html"
    source.write_bytes(b"<p>" + b"x" * 1_000_000 + b"</p>")
    rewrite = f"{sys.executable} -m arktrack.cli rewrite {source} --message-id m --recipient u"
    command = f"{rewrite} | true"  # the reader leaves without reading
    result = subprocess.run(
        ["bash", "-o", "pipefail", "-c", command], capture_output=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr
    assert result.stderr == b""
