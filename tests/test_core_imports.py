"""The core imports no web framework: it works with Flask and Starlette absent."""

from __future__ import annotations

import subprocess
import sys
import textwrap

BLOCKER = textwrap.dedent(
    """
    import sys
    BLOCKED = {"flask", "werkzeug", "starlette", "fastapi", "uvicorn", "gunicorn", "anyio"}

    class Block:
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in BLOCKED:
                raise ModuleNotFoundError(f"blocked for this test: {name}")
            return None

    sys.meta_path.insert(0, Block())
    """
)

PROGRAM = BLOCKER + textwrap.dedent(
    """
    import arktrack, arktrack.asgi, arktrack.wsgi, arktrack.cli
    from arktrack import ArkTracking, Tracker
    tracker = Tracker(secret_key="k" * 20, base_url="https://t.example", storage="memory://")
    html = tracker.rewrite_html('<p><a href="https://e.example/">x</a></p>',
                                message_id="m", recipient="u@example.com")
    assert "https://t.example/c/" in html

    def app(environ, start_response):
        start_response("200 OK", [])
        return [b"ok"]

    path = tracker.open_url("m", "u@example.com").removeprefix("https://t.example")
    status = []
    ArkTracking(app, tracker=tracker)({"REQUEST_METHOD": "GET", "PATH_INFO": path},
                                      lambda s, h: status.append(s))
    assert status == ["200 OK"], status
    tracker.flush()
    assert len(tracker.events()) == 1
    print("ok")
    """
)


def test_core_works_without_web_frameworks() -> None:
    result = subprocess.run(
        [sys.executable, "-c", PROGRAM], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"


def test_importing_arktrack_loads_no_framework() -> None:
    program = (
        "import sys, arktrack\n"
        "frameworks = {'flask', 'starlette', 'uvicorn', 'werkzeug'}\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in frameworks))"
    )
    result = subprocess.run(
        [sys.executable, "-c", program], capture_output=True, text=True, timeout=60, check=True
    )
    assert result.stdout.strip() == "[]"
