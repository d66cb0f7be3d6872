from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from arktrack import Tracker
from arktrack.cli import main

from .conftest import BASE_URL, SECRET

EMAIL = b'<!DOCTYPE html>\r\n<html><body>\r\n<a href="https://example.com/a">a</a>\xe9\r\n</body></html>'


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> str:
    url = f"sqlite:///{tmp_path / 'cli.db'}"
    monkeypatch.setenv("ARKTRACK_SECRET_KEY", SECRET)
    monkeypatch.setenv("ARKTRACK_BASE_URL", BASE_URL)
    monkeypatch.setenv("ARKTRACK_STORAGE", url)
    return url


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
