"""The replay's local cache of CloudWatch history: a SQLite file, datapoints keyed by query and bucket,
and per query the spans already fetched. Only a replay reads or writes it."""

from __future__ import annotations

import math
import sqlite3
from collections.abc import Iterable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from watchdog.core.rules import Datapoint

SCHEMA_VERSION = 1
_SCHEMA = """
CREATE TABLE IF NOT EXISTS points (query TEXT NOT NULL, ts REAL NOT NULL, value REAL NOT NULL,
                                   PRIMARY KEY (query, ts)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS fetched (query TEXT NOT NULL, start REAL NOT NULL, "end" REAL NOT NULL);
CREATE INDEX IF NOT EXISTS fetched_query ON fetched (query);
CREATE TABLE IF NOT EXISTS unreadable (query TEXT NOT NULL, ts REAL NOT NULL, why TEXT NOT NULL,
                                       PRIMARY KEY (query, ts)) WITHOUT ROWID;
"""
# `unreadable`: buckets CloudWatch answered with something that is not a number (NaN): missing datapoints,
# kept with the reason so that a replay from the cache can still say how many there were. A table added
# within schema 1: an older build's cache gains it, and an older build reading this one never looks at it.

# The newest time a row may hold: datetime's end (9999-12-31), as seconds since the epoch.
MAX_TS = 253_402_300_799


class CacheError(Exception):
    """The cache file cannot be opened or read; one line."""


class HistoryCache:
    def __init__(self, path: Path | str):
        self.path = Path(path)
        try:
            if str(path) != ":memory:":
                self.path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(str(path))
            version = self._db.execute("PRAGMA user_version").fetchone()[0]
            if version not in (0, SCHEMA_VERSION):
                raise CacheError(f"cache {path}: schema version {version}, this build reads {SCHEMA_VERSION}")
            self._db.executescript(_SCHEMA)
            self._db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
            self._db.commit()
        except sqlite3.Error as exc:
            raise CacheError(f"cache {path} cannot be used: {exc} (delete it to start afresh)") from None
        except OSError as exc:
            raise CacheError(f"cache {path} cannot be used: {exc.strerror or exc}") from None
        self._spans: dict[str, list[tuple[float, float]]] = {}
        self._stamps: dict[Any, datetime] = {}  # a row's ts -> its time, made once (`points`)

    def close(self) -> None:
        self._db.close()

    def covered(self, query: str, start: datetime, end: datetime) -> bool:
        spans = self._spans.get(query)
        if spans is None:
            rows = self._read("SELECT start, \"end\" FROM fetched WHERE query = ? ORDER BY start", (query,))
            spans = self._spans[query] = _merge([(self._number("fetched", "start", a), self._number("fetched", "end", b))
                                                 for a, b in rows])
        a, b = start.timestamp(), end.timestamp()
        return any(s <= a and b <= e for s, e in spans)

    def put(self, query: str, points: Iterable[Datapoint], start: datetime, upto: datetime,
            unreadable: Iterable[tuple[datetime, str]] = ()) -> None:
        """The window's datapoints (and the buckets answered with no number, and why), and [start, upto)
        marked fetched (nothing when upto <= start)."""
        try:
            with self._db:
                self._db.executemany("INSERT OR REPLACE INTO points VALUES (?, ?, ?)",
                                     [(query, ts.timestamp(), float(v)) for ts, v in points])
                self._db.executemany("INSERT OR REPLACE INTO unreadable VALUES (?, ?, ?)",
                                     [(query, ts.timestamp(), why) for ts, why in unreadable])
                if upto > start:
                    self._db.execute("INSERT INTO fetched VALUES (?, ?, ?)", (query, start.timestamp(), upto.timestamp()))
        except sqlite3.Error as exc:
            raise CacheError(f"cache {self.path} cannot be written: {exc}") from None
        self._spans.pop(query, None)

    def points(self, query: str, start: datetime, end: datetime) -> list[Datapoint]:
        rows = self._read("SELECT ts, value FROM points WHERE query = ? AND ts >= ? AND ts < ? ORDER BY ts",
                          (query, start.timestamp(), end.timestamp()))
        # Every rule's buckets start at the same times: each time is made a datetime once, and a row that is a
        # finite float (what `put` writes) is taken as it is; anything else goes through the checks. A week
        # of 100 rules is a million rows: 1.2 -> 0.6 s of CPU (process time).
        stamps = self._stamps
        out: list[Datapoint] = []
        add = out.append
        for ts, value in rows:
            at = stamps.get(ts)
            if at is None:
                at = stamps[ts] = datetime.fromtimestamp(self._time("points", ts), timezone.utc)
            if value.__class__ is not float or value - value != 0:  # not a float, or inf or NaN
                value = self._number("points", "value", value)
            add((at, value))
        return out

    def unreadable(self, query: str, start: datetime, end: datetime) -> dict[str, int]:
        """Per reason, how many buckets of [start, end) were answered with no number."""
        rows = self._read("SELECT why, count(*) FROM unreadable WHERE query = ? AND ts >= ? AND ts < ? GROUP BY why",
                          (query, start.timestamp(), end.timestamp()))
        return {str(why): int(n) for why, n in rows}

    def _read(self, sql: str, args: tuple[object, ...]) -> list[tuple[Any, Any]]:
        try:
            return self._db.execute(sql, args).fetchall()
        except sqlite3.Error as exc:
            raise CacheError(f"cache {self.path} cannot be read: {exc} (delete it to start afresh)") from None

    def _number(self, table: str, column: str, value: Any) -> float:
        """SQLite keeps what a row was given, whatever the column's type: a cache edited by hand can hold
        text, a blob or NULL where a number belongs. One line, not a crash in every evaluation."""
        if isinstance(value, (int, float)) and math.isfinite(value):
            return float(value)
        shown = repr(value if not isinstance(value, (str, bytes)) else value[:40])
        raise CacheError(f"cache {self.path}: a row of {table} holds {shown} as its {column}, where a number "
                         "belongs (edited by hand? delete it to start afresh)")

    def _time(self, table: str, value: Any) -> float:
        ts = self._number(table, "ts", value)
        if not 0 <= ts <= MAX_TS:
            raise CacheError(f"cache {self.path}: a row of {table} holds {ts!r} as its ts, not a time "
                             "(edited by hand? delete it to start afresh)")
        return ts


def _merge(spans: list[tuple[float, float]]) -> list[tuple[float, float]]:
    out: list[tuple[float, float]] = []
    for a, b in sorted(spans):
        if out and a <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], b))
        else:
            out.append((a, b))
    return out
