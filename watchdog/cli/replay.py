"""`rollback-watchdog replay`: its arguments, their one-line errors, and the prompt before a costly fetch."""

from __future__ import annotations

import argparse
import asyncio
import re
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from watchdog.config.models import Config
from watchdog.config.types import parse_duration

_RELATIVE = re.compile(r"^-(\d+)\s*([smhdw])$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    p = subparsers.add_parser("replay", help="run the decision engine over recorded history; nothing acts or is sent",
                              epilog="exit 0: replayed, every rule saw data; 1: the history could not be fetched or "
                                     "the report not written; 2: bad input (or a bad cache); 3: replayed, but a rule "
                                     "had no datapoint over the whole range (listed in the output)")
    p.add_argument("-c", "--config", required=True)
    p.add_argument("--from", dest="start", required=True, metavar="TIME", help="ISO 8601, or -7d, -6h, -30m, now")
    p.add_argument("--to", dest="end", default="now", metavar="TIME", help="as --from (default now)")
    p.add_argument("--report", metavar="FILE.html", help="write one self-contained HTML page with a chart per rule")
    p.add_argument("--json", action="store_true", help="the would-be incidents (and the score) as JSON on stdout")
    p.add_argument("--labels", metavar="FILE", help="labelled incidents (YAML or JSON) to score the replay against")
    p.add_argument("--recording", metavar="FILE", help="the daemon's recorded polls (`run --record FILE`)")
    p.add_argument("--cache", metavar="FILE", help="the CloudWatch history cache (default: next to state_path)")
    p.add_argument("--yes", action="store_true",
                   help="fetch whatever it costs and simulate however many polls it takes, without asking")
    p.add_argument("--max-cost", type=float, default=1.0, metavar="DOLLARS",
                   help="ask (or, without a terminal, refuse) above this many dollars of GetMetricData (default 1)")
    p.add_argument("--resolve-after", default="1h", metavar="DURATION",
                   help="resolve a mitigated incident this long after, as a human would (`never`: keep it open)")
    return p


def join_times(argv: list[str]) -> list[str]:
    """`--from -7d` as `--from=-7d`: argparse takes a value that starts with `-` for an option."""
    out: list[str] = []
    it = iter(argv)
    for arg in it:
        if arg in ("--from", "--to"):
            value = next(it, None)
            out.append(arg if value is None else f"{arg}={value}")
        else:
            out.append(arg)
    return out


class BadTime(ValueError):
    pass


def parse_time(text: str, now: datetime) -> datetime:
    t = text.strip()
    if t == "now":
        return now
    m = _RELATIVE.match(t)
    if m:
        try:
            return now - timedelta(**{_UNITS[m.group(2)]: int(m.group(1))})
        except OverflowError:
            raise BadTime(f"{text!r} reaches back past the year 1: give a range CloudWatch can keep") from None
    try:
        when = datetime.fromisoformat(t.replace("Z", "+00:00"))
    except ValueError:
        raise BadTime(f"{text!r} is not a time: give ISO 8601 (2026-11-30T12:00Z) or -7d, -6h, -30m, now") from None
    return when if when.tzinfo else when.replace(tzinfo=timezone.utc)


def run(args: argparse.Namespace, cfg: Config) -> int:
    from watchdog.replay.command import EXIT_USAGE, Options, run_replay

    now = datetime.now(timezone.utc)
    try:
        start, end = parse_time(args.start, now), parse_time(args.end, now)
        after = None if args.resolve_after == "never" else parse_duration(args.resolve_after)
    except (BadTime, ValueError) as exc:
        print(f"rollback-watchdog replay: {exc}", file=sys.stderr)
        return EXIT_USAGE
    if not args.max_cost >= 0:
        print("rollback-watchdog replay: --max-cost must be a number of dollars, 0 or more", file=sys.stderr)
        return EXIT_USAGE
    cache = Path(args.cache) if args.cache else cfg.watchdog.state_path.parent / "replay-cache.db"
    opt = Options(start=start, end=end, now=now, cache=cache, recording=_path(args.recording),
                  labels=_path(args.labels), report=_path(args.report), as_json=args.json, yes=args.yes,
                  max_cost=args.max_cost, resolve_after=after, progress=sys.stderr.isatty())
    return asyncio.run(run_replay(cfg, opt, confirm=_ask if sys.stdin.isatty() else None))


def _ask(question: str) -> bool:
    try:
        return input(f"{question} [y/N] ").strip().lower() in ("y", "yes")
    except EOFError:
        return False


def _path(text: str | None) -> Path | None:
    return Path(text) if text else None
