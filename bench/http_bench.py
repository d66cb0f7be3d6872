"""Throughput of the ``/o`` and ``/c`` endpoints, bare app vs the same app behind arktrack.

    .venv/bin/python bench/http_bench.py [--duration 10] [--connections 16] [--rounds 3]

Servers: gunicorn with one sync worker (WSGI) and uvicorn in one process (ASGI); load:
``wrk`` on loopback. Each tracked run gets a fresh SQLite file; after the server exits on
SIGTERM the events in it are counted against the requests wrk completed. See README.md.
"""

from __future__ import annotations

import argparse
import http.client
import importlib.util
import json
import os
import re
import secrets
import shutil
import signal
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from contextlib import closing, suppress
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import apps
import machine

from arktrack import Tracker

BENCH_DIR = Path(__file__).resolve().parent
RESULTS_DIR = BENCH_DIR / "results"
TARGET_RATIO = 0.75

RECIPIENT = "reader@example.com"
# Warm-up and probe requests use their own message, so the measured message's events can
# be matched one-for-one with the requests wrk counted.
MEASURED_ID = "bench-measured@arktrack"
WARMUP_ID = "bench-warmup@arktrack"

ENDPOINTS = {"o": "email.opened", "c": "email.clicked"}
SERVERS = ("gunicorn", "uvicorn")

# gunicorn's default graceful timeout is 30 s; anything past it is a hang, not a drain.
STOP_TIMEOUT = 45.0
START_TIMEOUT = 30.0


class BenchError(Exception):
    pass


# -- servers ------------------------------------------------------------------------------

# The server (with arktrack's writer thread) gets a core of its own and wrk the others, so
# that the tracked server's extra thread competes with the server, not with the load
# generator: on a 2-core machine, an unpinned writer thread slows wrk and shows up as a
# loss of throughput that a deployment would not see.
_CPUS = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
SERVER_CPUS = set(_CPUS[-1:]) if len(_CPUS) >= 2 else set()
LOAD_CPUS = set(_CPUS[:-1]) if len(_CPUS) >= 2 else set()


def pinned(cpus: set[int]) -> Callable[[], None] | None:
    if not cpus:
        return None
    return lambda: os.sched_setaffinity(0, cpus)


def uvicorn_impl() -> tuple[str, str]:
    """(loop, http) for uvicorn: the fast C implementations only when already installed."""
    loop = "uvloop" if importlib.util.find_spec("uvloop") else "asyncio"
    http = "httptools" if importlib.util.find_spec("httptools") else "h11"
    return loop, http


def server_command(server: str, module: str, port: int) -> list[str]:
    # ``python -m`` so the servers run on this interpreter, whichever venv that is.
    if server == "gunicorn":
        return [
            sys.executable,
            "-m",
            "gunicorn",
            "-w",
            "1",
            "-k",
            "sync",
            "-b",
            f"127.0.0.1:{port}",
            "--log-level",
            "warning",
            f"{module}:wsgi",
        ]
    loop, http = uvicorn_impl()
    return [
        sys.executable,
        "-m",
        "uvicorn",
        f"{module}:asgi",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--no-access-log",
        "--log-level",
        "warning",
        "--loop",
        loop,
        "--http",
        http,
    ]


def free_port() -> int:
    with closing(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class Server:
    """One server process in its own session, so that cleanup can reach its workers too."""

    def __init__(self, command: list[str], env: dict[str, str], log_path: Path) -> None:
        self.command = command
        self.log_path = log_path
        self._log = log_path.open("wb")
        self._reaped = False
        self.process = subprocess.Popen(
            command,
            env=env,
            cwd=BENCH_DIR,
            preexec_fn=pinned(SERVER_CPUS),
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def log_tail(self, lines: int = 30) -> str:
        self._log.flush()
        text = self.log_path.read_text(errors="replace").splitlines()
        return "\n".join(text[-lines:])

    def wait_ready(self, port: int) -> None:
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise BenchError(
                    f"{self.command[2]} exited with {self.process.returncode} at startup:\n"
                    + self.log_tail()
                )
            try:
                # A full request, not just a connect: gunicorn's master accepts connections
                # before its worker has imported the app.
                fetch(port, "/", timeout=1.0)
                return
            except OSError:
                time.sleep(0.1)
        raise BenchError(f"{self.command[2]} not answering after {START_TIMEOUT:.0f} s")

    def stop(self) -> int:
        """SIGTERM and wait: the exit is what flushes arktrack's queue to the database."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            code = self.process.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            self.kill()
            raise BenchError(
                f"{self.command[2]} still running {STOP_TIMEOUT:.0f} s after SIGTERM"
            ) from None
        self.kill()
        return code

    def kill(self) -> None:
        if self._reaped:
            return
        # The session id is the leader's pid, and stays reserved while any member (a
        # gunicorn worker) lives: whatever is left in it is ours.
        with suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait()
        self._reaped = True
        self._log.close()


def fetch(port: int, path: str, timeout: float = 5.0) -> dict[str, Any]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        body = response.read()
        return {
            "status": response.status,
            # Date changes every second; every other header must match byte for byte.
            "headers": [
                [name, value] for name, value in response.getheaders() if name.lower() != "date"
            ],
            "body": body.hex(),
        }
    finally:
        conn.close()


# -- wrk ------------------------------------------------------------------------------------


@dataclass
class WrkResult:
    requests: int
    seconds: float
    rps: float
    latency_ms: dict[str, float]
    socket_errors: dict[str, int]
    non_2xx_3xx: int


_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 60e3, "h": 3600e3}


def parse_wrk(output: str) -> WrkResult:
    total = re.search(r"(\d+) requests in ([\d.]+)(us|ms|s|m|h)\b", output)
    rate = re.search(r"Requests/sec:\s+([\d.]+)", output)
    if not total or not rate:
        raise BenchError(f"cannot read wrk's output:\n{output}")
    errors = re.search(
        r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", output
    )
    counts = [int(n) for n in errors.groups()] if errors else [0, 0, 0, 0]
    non_ok = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    latency = {
        f"p{pct}": float(value) * _UNITS[unit]
        for pct, value, unit in re.findall(
            r"^\s+(50|75|90|99)%\s+([\d.]+)(us|ms|s)\s*$", output, re.M
        )
    }
    return WrkResult(
        requests=int(total.group(1)),
        seconds=float(total.group(2)) * _UNITS[total.group(3)] / 1e3,
        rps=float(rate.group(1)),
        latency_ms=latency,
        socket_errors=dict(zip(("connect", "read", "write", "timeout"), counts, strict=True)),
        non_2xx_3xx=int(non_ok.group(1)) if non_ok else 0,
    )


def run_wrk(url: str, seconds: int, connections: int, threads: int) -> WrkResult:
    command = ["wrk", f"-t{threads}", f"-c{connections}", f"-d{seconds}s", "--latency", url]
    done = subprocess.run(
        command,
        capture_output=True,
        text=True,
        timeout=seconds + 60,
        check=False,
        preexec_fn=pinned(LOAD_CPUS),
    )
    if done.returncode != 0:
        raise BenchError(f"{' '.join(command)} failed:\n{done.stdout}{done.stderr}")
    return parse_wrk(done.stdout)


# -- one run --------------------------------------------------------------------------------


@dataclass
class Run:
    server: str
    endpoint: str
    variant: str
    round: int
    rps: float
    requests: int
    seconds: float
    latency_ms: dict[str, float]
    wrk_errors: dict[str, int]
    warmup_requests: int
    exit_code: int
    probe: dict[str, Any]
    events: int | None = None
    events_without_recipient: int | None = None


@dataclass(frozen=True)
class Plan:
    secret: str
    paths: dict[str, str]  # endpoint -> measured path
    warmup_paths: dict[str, str]
    duration: int
    warmup: int
    connections: int
    threads: int
    workdir: Path


def token_paths(secret: str, message_id: str) -> dict[str, str]:
    # Tokens don't depend on base_url or storage, so one throwaway tracker serves every run.
    tracker = Tracker(secret_key=secret, base_url="http://127.0.0.1", storage="memory://")
    try:
        click = tracker.click_url(apps.DESTINATION, message_id=message_id, recipient=RECIPIENT)
        if click is None:
            raise BenchError("the click URL came out longer than arktrack allows")
        return {
            "o": urlsplit(tracker.open_url(message_id, RECIPIENT)).path,
            "c": urlsplit(click).path,
        }
    finally:
        tracker.close()


def prepare_database(path: Path, secret: str, base_url: str) -> str:
    """A fresh database with both messages registered, so events resolve their recipient."""
    url = f"sqlite:///{path}"
    tracker = Tracker(secret_key=secret, base_url=base_url, storage=url)
    try:
        tracker.register_message(MEASURED_ID, RECIPIENT)
        tracker.register_message(WARMUP_ID, RECIPIENT)
    finally:
        tracker.close()
    return url


def count_events(path: Path, endpoint: str) -> tuple[int, int]:
    with closing(sqlite3.connect(path)) as conn:
        total, unresolved = conn.execute(
            "SELECT COUNT(*), COUNT(*) - COUNT(recipient) FROM arktrack_events"
            " WHERE message_id = ? AND type = ?",
            (MEASURED_ID, ENDPOINTS[endpoint]),
        ).fetchone()
    return int(total), int(unresolved)


def run_once(
    plan: Plan, server: str, endpoint: str, variant: str, round_no: int, live: list[Server]
) -> Run:
    port = free_port()
    label = f"r{round_no}-{server}-{endpoint}-{variant}"
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(BENCH_DIR), env.get("PYTHONPATH")]))
    db_path = plan.workdir / f"{label}.db"
    if variant == "tracked":
        base_url = f"http://127.0.0.1:{port}"
        env[apps.SECRET_ENV] = plan.secret
        env[apps.BASE_URL_ENV] = base_url
        env[apps.STORAGE_ENV] = prepare_database(db_path, plan.secret, base_url)
    module = "tracked_apps" if variant == "tracked" else "apps"
    proc = Server(server_command(server, module, port), env, plan.workdir / f"{label}.log")
    live.append(proc)
    try:
        proc.wait_ready(port)
        probe = fetch(port, plan.warmup_paths[endpoint])
        base = f"http://127.0.0.1:{port}"
        warm = run_wrk(
            base + plan.warmup_paths[endpoint], plan.warmup, plan.connections, plan.threads
        )
        measured = run_wrk(
            base + plan.paths[endpoint], plan.duration, plan.connections, plan.threads
        )
        exit_code = proc.stop()
    finally:
        proc.kill()
        live.remove(proc)
    run = Run(
        server=server,
        endpoint=endpoint,
        variant=variant,
        round=round_no,
        rps=measured.rps,
        requests=measured.requests,
        seconds=measured.seconds,
        latency_ms=measured.latency_ms,
        wrk_errors={**measured.socket_errors, "non_2xx_3xx": measured.non_2xx_3xx},
        warmup_requests=warm.requests,
        exit_code=exit_code,
        probe=probe,
    )
    if variant == "tracked":
        run.events, run.events_without_recipient = count_events(db_path, endpoint)
    return run


# -- report ---------------------------------------------------------------------------------


def summarise(runs: list[Run], connections: int) -> list[dict[str, Any]]:
    rows = []
    for server in SERVERS:
        for endpoint in ENDPOINTS:
            bare = [
                r for r in runs if (r.server, r.endpoint, r.variant) == (server, endpoint, "bare")
            ]
            tracked = [
                r
                for r in runs
                if (r.server, r.endpoint, r.variant) == (server, endpoint, "tracked")
            ]
            if not bare or not tracked:
                continue
            bare_rps = statistics.median(r.rps for r in bare)
            tracked_rps = statistics.median(r.rps for r in tracked)
            events = sum(r.events or 0 for r in tracked)
            requests = sum(r.requests for r in tracked)
            # Per run: every completed request must have its event; a few more events than
            # requests is fine, wrk drops up to one in-flight request per connection at the end.
            lost = sum(max(0, r.requests - (r.events or 0)) for r in tracked)
            surplus = max((r.events or 0) - r.requests for r in tracked)
            probes = {json.dumps(r.probe, sort_keys=True) for r in bare + tracked}
            rows.append(
                {
                    "server": server,
                    "endpoint": f"/{endpoint}",
                    "bare_rps": round(bare_rps, 1),
                    "tracked_rps": round(tracked_rps, 1),
                    "ratio": round(tracked_rps / bare_rps, 3),
                    "bare_rps_runs": [r.rps for r in bare],
                    "tracked_rps_runs": [r.rps for r in tracked],
                    "events_stored": events,
                    "requests_completed": requests,
                    "lost": lost,
                    "max_surplus": surplus,
                    "surplus_within_connections": surplus <= connections,
                    "events_without_recipient": sum(
                        r.events_without_recipient or 0 for r in tracked
                    ),
                    "wrk_errors": sum(sum(r.wrk_errors.values()) for r in bare + tracked),
                    "responses_identical": len(probes) == 1,
                    "tracked_exit_codes": sorted({r.exit_code for r in tracked}),
                    "meets_target": tracked_rps / bare_rps >= TARGET_RATIO and lost == 0,
                }
            )
    return rows


def format_table(rows: list[dict[str, Any]]) -> str:
    header = (
        f"{'server':<9} {'endpoint':<9} {'bare req/s':>11} {'tracked req/s':>14} "
        f"{'ratio':>6}  events stored / requests"
    )
    lines = [header]
    for row in rows:
        check = f"lost: {row['lost']}"
        if not row["surplus_within_connections"]:
            check += f", surplus {row['max_surplus']} > connections"
        lines.append(
            f"{row['server']:<9} {row['endpoint']:<9} {row['bare_rps']:>11.0f} "
            f"{row['tracked_rps']:>14.0f} {row['ratio']:>6.2f}  "
            f"{row['events_stored']} / {row['requests_completed']} ({check})"
        )
    return "\n".join(lines)


def environment() -> dict[str, Any]:
    wrk = subprocess.run(["wrk", "-v"], capture_output=True, text=True, check=False)
    loop, http = uvicorn_impl()
    return machine.describe("arktrack", "gunicorn", "uvicorn", "sqlalchemy") | {
        "server_cpus": sorted(SERVER_CPUS),
        "wrk_cpus": sorted(LOAD_CPUS),
        "wrk": (wrk.stdout + wrk.stderr).splitlines()[0].strip(),
        "uvicorn_loop": loop,
        "uvicorn_http": http,
    }


# -- main -----------------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=int, default=10, help="seconds per measured run")
    parser.add_argument("--warmup", type=int, default=2, help="seconds of warm-up per server")
    parser.add_argument("--connections", type=int, default=16, help="wrk -c")
    parser.add_argument("--threads", type=int, default=1, help="wrk -t")
    parser.add_argument("--rounds", type=int, default=3, help="bare/tracked pairs per config")
    parser.add_argument(
        "--servers", default=",".join(SERVERS), help="comma-separated subset of gunicorn,uvicorn"
    )
    parser.add_argument(
        "--endpoints", default=",".join(ENDPOINTS), help="comma-separated subset of o,c"
    )
    args = parser.parse_args(argv)
    args.servers = [s for s in args.servers.split(",") if s]
    args.endpoints = [e.strip("/") for e in args.endpoints.split(",") if e]
    if not set(args.servers) <= set(SERVERS) or not set(args.endpoints) <= set(ENDPOINTS):
        parser.error("unknown server or endpoint")
    if min(args.duration, args.warmup, args.connections, args.threads, args.rounds) < 1:
        parser.error("every number must be at least 1")
    if args.threads > args.connections:
        parser.error("wrk needs at least one connection per thread")
    return args


def _exit_on_sigterm(signum: int, frame: object) -> None:
    # An exception, unlike the default action, unwinds through the finally that stops the
    # servers (and through subprocess.run, which then kills wrk).
    raise SystemExit(128 + signum)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    if shutil.which("wrk") is None:
        print(
            "wrk is not installed: `sudo apt-get install wrk` (Debian/Ubuntu), "
            "`brew install wrk` (macOS), or build https://github.com/wg/wrk",
            file=sys.stderr,
        )
        return 2
    env_info = environment()
    print(
        f"python {env_info['python']}, gunicorn {env_info['gunicorn']} (1 sync worker), "
        f"uvicorn {env_info['uvicorn']} (loop={env_info['uvicorn_loop']}, "
        f"http={env_info['uvicorn_http']}), {env_info['wrk']}, {env_info['cpus']} CPUs"
    )
    print(
        f"wrk -t{args.threads} -c{args.connections} -d{args.duration}s after {args.warmup} s "
        f"warm-up, {args.rounds} rounds of bare/tracked pairs\n",
        flush=True,
    )

    secret = secrets.token_urlsafe(32)
    workdir = Path(tempfile.mkdtemp(prefix="arktrack-bench-"))
    live: list[Server] = []
    runs: list[Run] = []
    try:
        plan = Plan(
            secret=secret,
            paths=token_paths(secret, MEASURED_ID),
            warmup_paths=token_paths(secret, WARMUP_ID),
            duration=args.duration,
            warmup=args.warmup,
            connections=args.connections,
            threads=args.threads,
            workdir=workdir,
        )
        for round_no in range(1, args.rounds + 1):
            # Swapping the order every round spreads slow drift (heat, background load)
            # over both variants instead of charging it to whichever always runs second.
            order = ("bare", "tracked") if round_no % 2 else ("tracked", "bare")
            for server in args.servers:
                for endpoint in args.endpoints:
                    for variant in order:
                        run = run_once(plan, server, endpoint, variant, round_no, live)
                        runs.append(run)
                        stored = "" if run.events is None else f", {run.events} events"
                        errors = sum(run.wrk_errors.values())
                        print(
                            f"round {round_no} {server:<8} /{endpoint} {variant:<7} "
                            f"{run.rps:>9.1f} req/s, {run.requests} requests{stored}"
                            + (f", wrk errors {run.wrk_errors}" if errors else ""),
                            flush=True,
                        )
    finally:
        for proc in list(live):
            proc.kill()
        shutil.rmtree(workdir, ignore_errors=True)

    rows = summarise(runs, args.connections)
    print()
    print(format_table(rows))
    ok = all(r["lost"] == 0 and r["surplus_within_connections"] for r in rows)
    identical = all(r["responses_identical"] for r in rows)
    met = all(r["meets_target"] for r in rows)
    print(
        f"\ntarget (tracked >= {TARGET_RATIO:.2f} x bare, no event lost): "
        + ("met" if met else "NOT met")
    )
    if not identical:
        print("WARNING: bare and tracked responses differ; see 'probe' in the JSON")
    if any(r["wrk_errors"] for r in rows):
        print("WARNING: wrk reported socket errors or non-2xx/3xx responses; see the JSON")
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    out = RESULTS_DIR / f"http_bench-{stamp}.json"
    report = {
        "config": dict(vars(args)),
        "environment": env_info,
        "target_ratio": TARGET_RATIO,
        "summary": rows,
        "runs": [asdict(r) for r in runs],
    }
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"results: {out}")
    return 0 if ok and identical else 1


if __name__ == "__main__":
    sys.exit(main())
