"""Time of arktrack's HTML rewrite, per real-world email, beside pytracking and a bare parse.

    .venv/bin/python bench/rewrite_bench.py [--repeat 31] [--limit N] [--corpus DIR]

For each email of ``shared/corpus/emails/**/*.html`` it times, in turn and ``--repeat``
times each: ``Tracker.rewrite_html`` with SQLite storage as a mailer calls it, once as
one send (the registration committed before the call returns) and once inside
``tracker.batch()`` as a campaign loop (the registration queued for the writer thread);
pytracking's ``adapt_html`` (lxml); and selectolax's lexbor parse and re-serialise (the
floor of anything that parses). Each keeps the median of its repeats for that email. It
also times what the writer thread spends storing the batch's registrations, off the
mailer's path; checks that arktrack changed nothing but the tracked ``href`` values and
the pixel; and counts lost DOCTYPEs. See README.md.
"""

from __future__ import annotations

import argparse
import csv
import gc
import itertools
import json
import re
import secrets
import shutil
import signal
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from html import unescape
from pathlib import Path
from typing import Any

import machine

from arktrack import Tracker
from arktrack.storage import SentMessage

BENCH_DIR = Path(__file__).resolve().parent
RESULTS_DIR = BENCH_DIR / "results"
DEFAULT_CORPUS = Path(__file__).resolve().parents[2] / "shared" / "corpus"

BASE_URL = "https://track.example.com"
RECIPIENT = "reader@example.com"

# The targets from the issue: arktrack at least 4x faster than pytracking, and at most
# twice the time of parsing and re-serialising the email with selectolax.
TARGET_VS_PYTRACKING = 4.0
TARGET_VS_SELECTOLAX = 2.0

ARKTRACK = "arktrack"
PYTRACKING = "pytracking"
SELECTOLAX = "selectolax"
BATCHED = "arktrack-batch"
TOOLS = (ARKTRACK, BATCHED, PYTRACKING, SELECTOLAX)
LABELS = {
    ARKTRACK: "arktrack rewrite_html (SQLite)",
    BATCHED: "  in tracker.batch()",
    PYTRACKING: "pytracking adapt_html (lxml)",
    SELECTOLAX: "selectolax parse + serialise",
}

Rewrite = Callable[[str], str]


class BenchError(Exception):
    pass


# -- corpus ---------------------------------------------------------------------------------


@dataclass
class Email:
    name: str  # the path under the corpus, as in MANIFEST.tsv
    html: str
    size: int  # bytes on disk
    decoding: str
    features: list[str]
    manifest_hrefs: int | None
    doctype: str | None


_META_CHARSET = re.compile(rb"""<meta[^>]*?charset\s*=\s*["']?\s*([A-Za-z0-9_.:-]+)""", re.I)


def decode(data: bytes) -> tuple[str, str]:
    """The text of a corpus file and the codec that gave it.

    A mailer hands arktrack a ``str``, so each file is decoded first: as UTF-8, else by
    its ``<meta charset>``, else as UTF-8 with undecodable bytes kept as surrogates, which
    never fails (the tools may then fail on the surrogates; that is counted, not fatal).
    """
    try:
        return data.decode("utf-8"), "utf-8"
    except UnicodeDecodeError:
        pass
    declared = _META_CHARSET.search(data)
    if declared is not None:
        codec = declared[1].decode("ascii")
        try:
            return data.decode(codec), codec
        except (LookupError, UnicodeDecodeError):
            pass
    return data.decode("utf-8", errors="surrogateescape"), "utf-8+surrogateescape"


def read_manifest(corpus: Path) -> dict[str, dict[str, str]]:
    manifest = corpus / "MANIFEST.tsv"
    if not manifest.is_file():
        return {}
    with manifest.open(newline="", encoding="utf-8") as f:
        return {row["file"]: row for row in csv.DictReader(f, delimiter="\t")}


def load_corpus(corpus: Path, limit: int | None) -> list[Email]:
    paths = sorted((corpus / "emails").glob("**/*.html"))
    if not paths:
        raise BenchError(
            f"no emails in {corpus / 'emails'}: expected the corpus's **/*.html files there "
            "(point --corpus at the folder that holds MANIFEST.tsv and emails/)"
        )
    manifest = read_manifest(corpus)
    emails = []
    for path in paths[:limit]:
        name = path.relative_to(corpus).as_posix()
        data = path.read_bytes()
        html, codec = decode(data)
        row = manifest.get(name, {})
        hrefs = row.get("a_href_count", "")
        emails.append(
            Email(
                name=name,
                html=html,
                size=len(data),
                decoding=codec,
                features=[f for f in row.get("notable_features", "").split(",") if f],
                manifest_hrefs=int(hrefs) if hrefs.isdigit() else None,
                doctype=leading_doctype(html),
            )
        )
    return emails


# -- checks on the outputs ------------------------------------------------------------------

# What may come before a DOCTYPE: a BOM, whitespace, an XML prolog, comments.
_PREAMBLE = re.compile(r"(?:\s|\ufeff|<\?[^>]*>|<!--[\s\S]*?-->)*")
_DOCTYPE = re.compile(r"<!doctype(?=[\s>])[^>]*>", re.IGNORECASE)


def leading_doctype(text: str) -> str | None:
    """The document's DOCTYPE, whitespace collapsed, or None when it does not start with one."""
    preamble = _PREAMBLE.match(text)
    found = _DOCTYPE.match(text, preamble.end() if preamble else 0)
    return None if found is None else " ".join(found[0].split())


def doctype_status(source: Email, output: str) -> str | None:
    """None when the input has no DOCTYPE; else "kept", "changed" or "missing".

    Case is ignored (``<!doctype html>`` and ``<!DOCTYPE html>`` are the same), but any
    other difference counts: a public or system identifier decides the rendering mode.
    """
    if source.doctype is None:
        return None
    found = leading_doctype(output)
    if found is None:
        return "missing"
    return "kept" if found.casefold() == source.doctype.casefold() else "changed"


# A click URL as arktrack writes it (letters, digits and -_.~:/% only), and its pixel.
_ARKTRACK_EDIT = re.compile(
    rf"""(?P<click>{re.escape(BASE_URL)}/c/[A-Za-z0-9\-_.~:/%]+)
       | (?P<pixel><img\b[^>]*?{re.escape(BASE_URL)}/o/[^>]*>)""",
    re.VERBOSE,
)

_BASE = re.compile(r"<base(?=[\s/>])", re.IGNORECASE)


@dataclass
class Fidelity:
    """What arktrack's output is, compared with its input."""

    links_tracked: int = 0
    pixels: int = 0
    # Everything else arktrack changed; empty when the output is the input except for
    # the tracked href values and the one pixel.
    problems: list[str] = field(default_factory=list)


def arktrack_fidelity(source: str, output: str) -> Fidelity:
    """Match the output against the input, slice by slice between arktrack's edits.

    Each slice of the output between two edits must come next in the input; what the
    input has between them must be an http(s) href value (for a click URL) or nothing
    (for the pixel).
    """
    result = Fidelity()
    has_base = _BASE.search(source) is not None
    edits = list(_ARKTRACK_EDIT.finditer(output))
    pos = 0  # how far into the input the output has been matched
    out_pos = 0
    previous: str | None = None  # the kind of edit just before the current slice
    for edit in [*edits, None]:
        segment = output[out_pos : len(output) if edit is None else edit.start()]
        if previous is None:
            found = 0 if source.startswith(segment) else -1
        elif edit is None:
            found = len(source) - len(segment)
            if found < pos or not source.endswith(segment):
                found = -1
        else:
            found = source.find(segment, pos)
        if found < 0:
            snippet = segment[:80].replace("\n", "\\n")
            result.problems.append(f"output text at {out_pos} not in the input: {snippet!r}")
            return result
        gap = source[pos:found]
        if previous == "pixel" and gap:
            result.problems.append(f"pixel replaced input text at {pos}: {gap[:80]!r}")
        if previous == "click":
            # An http(s) href value; or, under <base href>, any non-empty one.
            destination = unescape(gap).strip()
            absolute = destination.lower().startswith(("http://", "https://"))
            if not (absolute or (destination and has_base)):
                result.problems.append(f"click URL replaced {gap[:80]!r} at {pos}")
        if edit is not None:
            previous = edit.lastgroup
            if previous == "click":
                result.links_tracked += 1
            else:
                result.pixels += 1
            out_pos = edit.end()
        pos = found + len(segment)
    if result.pixels != 1:
        result.problems.append(f"{result.pixels} pixels")
    return result


# -- the things timed -----------------------------------------------------------------------


def message_ids() -> Iterator[str]:
    """A new message id per call, so every call really inserts a row."""
    for n in itertools.count():
        yield f"bench-{n:07d}@arktrack.test"


def arktrack_rewrite(tracker: Tracker, ids: Iterator[str]) -> Rewrite:
    def rewrite(html: str) -> str:
        return tracker.rewrite_html(html, message_id=next(ids), recipient=RECIPIENT)

    return rewrite


@dataclass
class WriterTime:
    """What the writer thread spent storing registrations, off the mailer's path: its
    CPU time, and the wall time, which also counts its waits for the GIL."""

    rows: int = 0
    batches: int = 0
    cpu_ns: int = 0
    wall_ns: int = 0
    #: How long leaving the batch() block waited for the last registrations.
    end_wait_ms: float = 0.0


def timed_registrations(tracker: Tracker) -> WriterTime:
    """Time every ``register_messages`` call the tracker's writer makes."""
    spent = WriterTime()
    storage = tracker.storage
    register = storage.register_messages

    def timed(batch: Sequence[SentMessage]) -> None:
        start, cpu_start = time.perf_counter_ns(), time.thread_time_ns()
        register(batch)
        spent.cpu_ns += time.thread_time_ns() - cpu_start
        spent.wall_ns += time.perf_counter_ns() - start
        spent.rows += len(batch)
        spent.batches += 1

    storage.register_messages = timed  # type: ignore[method-assign]
    return spent


def pytracking_rewrite(ids: Iterator[str]) -> Rewrite:
    from pytracking import Configuration  # type: ignore[import-untyped]
    from pytracking.html import adapt_html  # type: ignore[import-untyped]

    # pytracking's default configuration: the metadata goes into the URL as base64 JSON,
    # neither signed nor encrypted (its only protected mode is Fernet, in
    # pytracking[crypto], which would cost it more). The metadata is what arktrack's
    # tokens carry, so the URLs are of similar length.
    configuration = Configuration(
        base_open_tracking_url=f"{BASE_URL}/o/", base_click_tracking_url=f"{BASE_URL}/c/"
    )

    def rewrite(html: str) -> str:
        metadata = {"message_id": next(ids), "recipient": RECIPIENT}
        output: str = adapt_html(html, metadata, configuration=configuration)
        return output

    return rewrite


def selectolax_roundtrip() -> Rewrite:
    from selectolax.lexbor import LexborHTMLParser

    def roundtrip(html: str) -> str:
        output: str | None = LexborHTMLParser(html).html
        return output or ""

    return roundtrip


# -- timing ---------------------------------------------------------------------------------


@dataclass
class ToolResult:
    error: str | None = None
    samples_us: list[float] = field(default_factory=list)
    median_us: float | None = None
    min_us: float | None = None
    doctype: str | None = None  # see doctype_status
    links_tracked: int | None = None


@dataclass
class EmailResult:
    name: str
    bytes: int
    decoding: str
    features: list[str]
    manifest_hrefs: int | None
    doctype: str | None
    tools: dict[str, ToolResult]
    arktrack_problems: list[str]


def bench_email(email: Email, subjects: dict[str, Rewrite], repeat: int) -> EmailResult:
    tools: dict[str, ToolResult] = {}
    problems: list[str] = []
    # One untimed call each: a warm-up, the output to check, and the failures to count.
    for name, run in subjects.items():
        result = tools[name] = ToolResult()
        try:
            output = run(email.html)
        except Exception as exc:  # a tool failing on an email is a result, not a crash
            result.error = f"{type(exc).__name__}: {exc}"[:300]
            continue
        result.doctype = doctype_status(email, output)
        if name in (ARKTRACK, BATCHED):
            fidelity = arktrack_fidelity(email.html, output)
            result.links_tracked = fidelity.links_tracked
            problems += [f"{name}: {problem}" for problem in fidelity.problems]
        elif name == PYTRACKING:
            result.links_tracked = output.count(f"{BASE_URL}/c/")

    timed = [name for name in subjects if tools[name].error is None]
    gc.collect()
    gc.disable()  # as timeit does: a collection would land on whichever call is running
    # Each round runs the tools in another order, cycling through every order: a tool's
    # time depends on what ran just before it (a parser that churns memory leaves the
    # caches cold), so each must follow each other tool equally often. Rotating one
    # order would not do that: each tool would nearly always follow the same one.
    orders = list(itertools.permutations(timed))
    try:
        for round_no in range(repeat):
            for name in orders[round_no % len(orders)]:
                run = subjects[name]
                start = time.perf_counter_ns()
                run(email.html)
                tools[name].samples_us.append((time.perf_counter_ns() - start) / 1000)
    finally:
        gc.enable()
    for result in tools.values():
        if result.samples_us:
            result.median_us = statistics.median(result.samples_us)
            result.min_us = min(result.samples_us)
            result.samples_us = [round(s, 1) for s in result.samples_us]
    return EmailResult(
        name=email.name,
        bytes=email.size,
        decoding=email.decoding,
        features=email.features,
        manifest_hrefs=email.manifest_hrefs,
        doctype=email.doctype,
        tools=tools,
        arktrack_problems=problems,
    )


# -- summary --------------------------------------------------------------------------------


def _percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


def tool_summary(results: list[EmailResult], name: str) -> dict[str, Any]:
    times = [t for r in results if (t := r.tools[name].median_us) is not None]
    statuses = [r.tools[name].doctype for r in results]
    return {
        "emails": len(times),
        "failures": sum(r.tools[name].error is not None for r in results),
        "median_us": statistics.median(times) if times else None,
        "p90_us": _percentile(times, 0.9) if times else None,
        "max_us": max(times) if times else None,
        "corpus_ms": sum(times) / 1000,
        "doctype_missing": statuses.count("missing"),
        "doctype_changed": statuses.count("changed"),
    }


Measure = Callable[[EmailResult], float | None]


def median_of(name: str) -> Measure:
    return lambda result: result.tools[name].median_us


def ratio_summary(results: list[EmailResult], top: Measure, bottom: Measure) -> dict[str, Any]:
    """``top / bottom`` over the emails both handled: of the medians, and per email."""
    pairs = [(t, b) for r in results if (t := top(r)) is not None and (b := bottom(r))]
    ratios = [t / b for t, b in pairs]
    return {
        "emails": len(pairs),
        "ratio_of_medians": (
            statistics.median(t for t, _ in pairs) / statistics.median(b for _, b in pairs)
            if pairs
            else None
        ),
        "median_of_ratios": statistics.median(ratios) if ratios else None,
        "min_ratio": min(ratios) if ratios else None,
        "max_ratio": max(ratios) if ratios else None,
    }


def summarise(results: list[EmailResult], writer: WriterTime) -> dict[str, Any]:
    def met(ratios: dict[str, Any], ok: Callable[[float], bool]) -> bool:
        # Both views must agree: the ratio of the medians and the typical per-email ratio.
        values = (ratios["ratio_of_medians"], ratios["median_of_ratios"])
        return all(v is not None and ok(v) for v in values)

    summary: dict[str, Any] = {
        "tools": {name: tool_summary(results, name) for name in TOOLS},
        "writer": {
            "registrations": writer.rows,
            "batches": writer.batches,
            "cpu_ms": writer.cpu_ns / 1e6,
            "wall_ms": writer.wall_ns / 1e6,
            "end_of_batch_wait_ms": writer.end_wait_ms,
        },
        "targets": {},
    }
    for name in (ARKTRACK, BATCHED):
        vs_selectolax = ratio_summary(results, median_of(name), median_of(SELECTOLAX))
        vs_pytracking = ratio_summary(results, median_of(PYTRACKING), median_of(name))
        summary[f"{name}_over_selectolax"] = vs_selectolax
        summary[f"pytracking_over_{name}"] = vs_pytracking
        label = "arktrack in tracker.batch()" if name == BATCHED else "arktrack, one send"
        summary["targets"] |= {
            f"{label} at least {TARGET_VS_PYTRACKING:g}x faster than pytracking": met(
                vs_pytracking, lambda r: r >= TARGET_VS_PYTRACKING
            ),
            f"{label} no slower than {TARGET_VS_SELECTOLAX:g}x selectolax": met(
                vs_selectolax, lambda r: r <= TARGET_VS_SELECTOLAX
            ),
        }
    summary["arktrack_unexpected_changes"] = sum(bool(r.arktrack_problems) for r in results)
    return summary


def _us(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def _ratio(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def format_report(summary: dict[str, Any], results: list[EmailResult]) -> str:
    with_doctype = sum(r.doctype is not None for r in results)
    lines = [
        f"{'per-email median of repeats':<31} {'median µs':>10} {'p90 µs':>9} {'max µs':>9} "
        f"{'corpus ms':>10} {'failed':>7}  DOCTYPE lost (of {with_doctype})",
    ]
    for name in TOOLS:
        row = summary["tools"][name]
        lost = (
            f"{row['doctype_missing'] + row['doctype_changed']} "
            f"({row['doctype_missing']} missing, {row['doctype_changed']} changed)"
        )
        lines.append(
            f"{LABELS[name]:<31} {_us(row['median_us']):>10} {_us(row['p90_us']):>9} "
            f"{_us(row['max_us']):>9} {row['corpus_ms']:>10.1f} {row['failures']:>7}  {lost}"
        )
    writer = summary["writer"]
    if rows := writer["registrations"]:
        cpu, wall = (1000 * writer[key] / rows for key in ("cpu_ms", "wall_ms"))
        lines.append(
            f"(arktrack's writer thread stored its {rows} registrations in {writer['batches']} "
            f"commits, off the mailer's path: {cpu:.1f} µs of CPU each, {wall:.1f} µs of wall "
            f"time with its waits for the GIL; the end of the block waited "
            f"{writer['end_of_batch_wait_ms']:.1f} ms for the last of them)"
        )
    lines += [
        "",
        f"{'ratio':<40} {'of medians':>10} {'median of per-email ratios':>27} {'range':>14}",
    ]
    for key, label in (
        (f"{ARKTRACK}_over_selectolax", "arktrack / selectolax"),
        (f"pytracking_over_{ARKTRACK}", "pytracking / arktrack"),
        (f"{BATCHED}_over_selectolax", "arktrack in batch() / selectolax"),
        (f"pytracking_over_{BATCHED}", "pytracking / arktrack in batch()"),
    ):
        row = summary[key]
        span = f"{_ratio(row['min_ratio'])}-{_ratio(row['max_ratio'])}"
        lines.append(
            f"{label:<40} {_ratio(row['ratio_of_medians']):>10} "
            f"{_ratio(row['median_of_ratios']):>27} {span:>14}"
        )
    lines.append("")
    for target, ok in summary["targets"].items():
        lines.append(f"target: {target} (median): {'met' if ok else 'NOT met'}")
    return "\n".join(line.rstrip() for line in lines)


def environment() -> dict[str, Any]:
    return machine.describe("arktrack", "pytracking", "lxml", "selectolax", "sqlalchemy")


# -- main -----------------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=31, help="timed calls per tool per email")
    parser.add_argument(
        "--corpus",
        type=Path,
        default=DEFAULT_CORPUS,
        help=f"folder with MANIFEST.tsv and emails/ (default: {DEFAULT_CORPUS})",
    )
    parser.add_argument("--limit", type=int, default=None, help="only the first N emails")
    parser.add_argument("--per-email", action="store_true", help="also print one line per email")
    args = parser.parse_args(argv)
    if args.repeat < 1 or (args.limit is not None and args.limit < 1):
        parser.error("--repeat and --limit must be at least 1")
    return args


def _exit_on_sigterm(signum: int, frame: object) -> None:
    # An exception unwinds through the finally that closes the tracker and removes the
    # temporary database.
    raise SystemExit(128 + signum)


def format_email_line(result: EmailResult) -> str:
    def cell(name: str) -> str:
        tool = result.tools[name]
        return "failed" if tool.error else _us(tool.median_us)

    return (
        f"{result.name:<64} {result.bytes:>7} {cell(ARKTRACK):>9} {cell(BATCHED):>8} "
        f"{cell(PYTRACKING):>9} {cell(SELECTOLAX):>9}"
    )


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    corpus: Path = args.corpus
    if not corpus.is_dir():
        print(
            f"no corpus at {corpus}: it is shared/corpus beside the repository "
            "(or give --corpus DIR, the folder that holds MANIFEST.tsv and emails/)",
            file=sys.stderr,
        )
        return 2
    try:
        emails = load_corpus(corpus, args.limit)
    except BenchError as exc:
        print(exc, file=sys.stderr)
        return 2
    ids = message_ids()
    try:
        pytracking = pytracking_rewrite(ids)
        selectolax = selectolax_roundtrip()
    except ImportError as exc:
        print(
            f"{exc}: install the bench group first: .venv/bin/pip install --group bench -e .",
            file=sys.stderr,
        )
        return 2

    env_info = environment()
    total = sum(e.size for e in emails)
    print(
        f"python {env_info['python']}, arktrack {env_info['arktrack']}, pytracking "
        f"{env_info['pytracking']} (lxml {env_info['lxml']}), selectolax "
        f"{env_info['selectolax']}, SQLite {env_info['sqlite']}, {env_info['cpus']} CPUs"
    )
    print(
        f"{len(emails)} emails ({total / 1e6:.2f} MB) from {corpus}, "
        f"{args.repeat} timed calls of each per email\n",
        flush=True,
    )

    workdir = Path(tempfile.mkdtemp(prefix="arktrack-rewrite-bench-"))
    secret = secrets.token_urlsafe(32)
    # Two databases, so the inline commits never wait on the writer's lock.
    tracker, batched = (
        Tracker(secret_key=secret, base_url=BASE_URL, storage=f"sqlite:///{workdir}/{name}.db")
        for name in ("inline", "batch")
    )
    writer = timed_registrations(batched)
    subjects: dict[str, Rewrite] = {
        ARKTRACK: arktrack_rewrite(tracker, ids),
        BATCHED: arktrack_rewrite(batched, ids),
        PYTRACKING: pytracking,
        SELECTOLAX: selectolax,
    }
    results: list[EmailResult] = []
    started = time.monotonic()
    try:
        if args.per_email:
            print(
                f"{'email':<64} {'bytes':>7} {'arktrack':>9} {'batch':>8} "
                f"{'pytrack':>9} {'lexbor':>9}   (median µs)"
            )
        with batched.batch():  # the whole run is one campaign for the batched tracker
            for n, email in enumerate(emails, 1):
                result = bench_email(email, subjects, args.repeat)
                results.append(result)
                if args.per_email:
                    print(format_email_line(result), flush=True)
                elif n % 10 == 0 or n == len(emails):
                    elapsed = time.monotonic() - started
                    print(f"  {n}/{len(emails)} emails, {elapsed:.0f} s", flush=True)
            end_of_batch = time.monotonic()
        writer.end_wait_ms = (time.monotonic() - end_of_batch) * 1000
    finally:
        tracker.close()
        batched.close()
        shutil.rmtree(workdir, ignore_errors=True)
    elapsed = time.monotonic() - started

    summary = summarise(results, writer)
    print()
    print(format_report(summary, results))
    exit_code = 0
    for label, name in (("arktrack", ARKTRACK), ("pytracking", PYTRACKING)):
        failed = [r for r in results if r.tools[name].error]
        if failed:
            print(f"\n{label} failed on {len(failed)} emails:")
            for r in failed:
                print(f"  {r.name}: {r.tools[name].error}")
    if any(r.tools[name].error for r in results for name in (ARKTRACK, BATCHED)):
        exit_code = 1
    changed = [r for r in results if r.arktrack_problems]
    print(
        f"\narktrack's output is its input except for the tracked hrefs and the pixel: "
        f"{len(results) - len(changed)}/{len(results)} emails"
    )
    for r in changed:
        exit_code = 1
        print(f"  {r.name}: " + "; ".join(r.arktrack_problems[:3]))
    print(f"({elapsed:.0f} s)")

    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    out = RESULTS_DIR / f"rewrite_bench-{stamp}.json"
    report = {
        "config": {
            "repeat": args.repeat,
            "limit": args.limit,
            "corpus": str(corpus),
            "base_url": BASE_URL,
            "storage": "sqlite (temporary files)",
            "pytracking_configuration": "default: base64 JSON metadata, no encryption",
        },
        "environment": env_info,
        "elapsed_s": round(elapsed, 1),
        "targets": {
            "pytracking_over_arktrack_at_least": TARGET_VS_PYTRACKING,
            "arktrack_over_selectolax_at_most": TARGET_VS_SELECTOLAX,
        },
        "summary": summary,
        "emails": [asdict(r) for r in results],
    }
    out.write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n")
    print(f"results: {out}")
    return exit_code


if __name__ == "__main__":
    sys.exit(main())
