"""A recording of the daemon's polls (`run --record FILE`, or `watchdog.record`), for `replay` to read.

One JSON object per line, per poll: `{"at", "source", "took", "points": {key: [[time, value], ...]}}`,
or `{"at", "source", "took", "error"}` for a failed poll; `took` is how long the read took in seconds
(the rules are judged after it: a replay judges them as late). A sampled source's line holds only the readings new since
its previous line in the same file (the replay keeps the same short history the live source keeps); the line of a source whose kind keeps its
own history (CloudWatch) holds no points (`"points": null`: polled, the data comes from that history), so a
recording stays small. Lines are appended and written per poll: a crash loses at most the line being written.

No write happens on the event loop. The loop builds each line and hands it to a bounded queue; one thread
writes them in order. A file that takes writes slower than polls come (a pipe whose reader stopped reading,
a hung network file system) fills the queue, and then lines are dropped and counted, with one critical line
when dropping starts and one when it ends: the recording has a gap, polling and deciding never wait for it.
The file is opened without waiting (a FIFO with no reader is refused at once) and opened again by its name
on SIGHUP (`switch`), which is what logrotate's postrotate needs.
"""

from __future__ import annotations

import errno
import json
import os
import select
import stat
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol

import structlog

from watchdog.core.rules import Datapoint
from watchdog.sources import source_kind

log = structlog.get_logger("watchdog.runtime.recording")

QUEUE_BYTES = 8 * 1024 * 1024  # lines waiting for the writer; past it, new lines are dropped
CLOSE_WAIT = 5.0  # seconds the stop (or a switch to no recording) gives the queued lines to land
_STEP = 0.2  # seconds between looks at a pipe that takes nothing (is a switch or the close waiting?)
_LOOK_EVERY = 1.0  # seconds between checks that the file is still the one its name names
_MOVED_GRACE = 5.0  # a file moved for longer than this is reported (logrotate's own gap is shorter)


class Recorder(Protocol):
    def polled(self, source: str, kind: str, sampled: bool, at: datetime, took: float,
               data: Mapping[str, Sequence[Datapoint]] | None, error: str | None) -> None: ...

    def close(self, timeout: float = CLOSE_WAIT) -> None: ...


class RecordingUnwritable(Exception):
    """One line: the file `--record` names cannot be opened for appending."""


class NoRecorder:
    def polled(self, source: str, kind: str, sampled: bool, at: datetime, took: float,
               data: Mapping[str, Sequence[Datapoint]] | None, error: str | None) -> None:
        return None

    def close(self, timeout: float = CLOSE_WAIT) -> None:
        return None


def open_recording(path: Path) -> int:
    """A descriptor appending to `path`, created if missing; never waits. Taken: a regular file, a FIFO whose
    reader is running, a character device (/dev/null discards). Anything else is RecordingUnwritable in one
    line: a FIFO with no reader (open would wait for one for ever), a directory, a socket, a block device."""
    if _kind(path) in _REFUSED:  # said before an open that would fail obscurely, or succeed on a disk
        raise RecordingUnwritable(_refused(path, _kind(path)))
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NONBLOCK | os.O_CLOEXEC, 0o644)
    except OSError as exc:
        kind = _kind(path)
        if exc.errno == errno.ENXIO and kind == "a FIFO":
            raise RecordingUnwritable(f"the recording {path} is a FIFO with no reader: start its reader first "
                                      "(the daemon never waits for one)") from None
        if kind in _REFUSED:  # it became one meanwhile
            raise RecordingUnwritable(_refused(path, kind)) from None
        raise RecordingUnwritable(f"the recording {path} cannot be opened: {exc.strerror or exc}") from None
    mode = os.fstat(fd).st_mode
    if not (stat.S_ISREG(mode) or stat.S_ISFIFO(mode) or stat.S_ISCHR(mode)):
        os.close(fd)
        raise RecordingUnwritable(_refused(path, _kind(path)))
    return fd


_REFUSED = ("a socket", "a block device", "a directory")


def _refused(path: Path, kind: str) -> str:
    return f"the recording {path} is {kind}: a regular file, a FIFO or a character device only"


def _kind(path: Path) -> str:
    try:
        mode = os.stat(path).st_mode
    except OSError:  # missing (it is created), or not reachable (the open says why)
        return "not there"
    for test, said in ((stat.S_ISFIFO, "a FIFO"), (stat.S_ISSOCK, "a socket"), (stat.S_ISBLK, "a block device"),
                       (stat.S_ISDIR, "a directory"), (stat.S_ISCHR, "a character device")):
        if test(mode):
            return said
    return "not a regular file"


class FileRecorder:
    def __init__(self, path: Path, *, dropped: Callable[[int], Any] = lambda n: None,
                 queue_bytes: int = QUEUE_BYTES, fd: int | None = None):
        """Opens `path` (RecordingUnwritable), unless `fd` is its descriptor already. `dropped(n)` counts lines
        lost (the metric watchdog_recording_lines_dropped_total); it is called from both sides."""
        self.path = path
        fd = open_recording(path) if fd is None else fd
        self._dropped = dropped
        self._limit = queue_bytes
        self._last: dict[str, datetime] = {}  # per query key: the newest reading already handed over (loop)
        self._dropping = 0  # lines dropped since the queue filled (loop)
        self._lock = threading.Lock()  # what the loop and the writer share, below
        self._wake = threading.Condition(self._lock)
        self._lines: deque[bytes] = deque()
        self._queued = 0  # bytes in _lines
        self._next: tuple[Path, int] | None = None  # a file to go on in (SIGHUP)
        self._closing = False
        self._give_up_at: float | None = None  # monotonic: at the stop, past it a waiting write is abandoned
        self._abandoned = 0  # lines the stop gave up on
        self._thread = threading.Thread(target=self._run, args=(path, fd), name="recording-writer", daemon=True)
        self._thread.start()

    # --- the event loop's side: build the line, queue it, never wait ------------------------------

    def polled(self, source: str, kind: str, sampled: bool, at: datetime, took: float,
               data: Mapping[str, Sequence[Datapoint]] | None, error: str | None) -> None:
        line: dict[str, Any] = {"at": at.isoformat(), "source": source, "took": round(took, 6)}
        if error is not None:
            line["error"] = error
        elif data is None or source_kind(kind).history:  # the kind keeps its history: the replay fetches it
            line["points"] = None
        else:
            points: dict[str, list[list[Any]]] = {}
            for key, pts in data.items():
                seen = self._last.get(key) if sampled else None
                new = [p for p in pts if seen is None or p[0] > seen]
                if new:
                    points[key] = [[ts.isoformat(), v] for ts, v in new]
                    self._last[key] = max(p[0] for p in new)
            line["points"] = points
        self._queue((json.dumps(line, separators=(",", ":")) + "\n").encode("utf-8"))

    def _queue(self, raw: bytes) -> None:
        with self._lock:
            if self._closing:
                return
            full = bool(self._lines) and self._queued + len(raw) > self._limit
            if not full:
                self._lines.append(raw)
                self._queued += len(raw)
                self._wake.notify()
        if full:
            self._dropped(1)
            self._dropping += 1
            if self._dropping == 1:
                log.critical("recording_queue_full", path=str(self.path), queued_bytes=self._limit,
                             why="the recording's file takes writes slower than the polls come (a pipe whose "
                                 "reader stopped reading, a hung file system)",
                             next="polling and deciding go on; lines are dropped and counted in "
                                  "watchdog_recording_lines_dropped_total until the file takes writes again")
        elif self._dropping:
            log.warning("recording_recovered", path=str(self.path), dropped=self._dropping, after="queue_full")
            self._dropping = 0

    def switch(self, path: Path, fd: int) -> None:
        """Go on in `fd` (just opened on `path`, by SIGHUP); the writer closes the old file. Lines still queued
        go to the new one. A line waiting on a stalled pipe is given up."""
        with self._lock:
            if self._next is not None:  # a switch the writer has not taken yet: this one replaces it
                os.close(self._next[1])
            self._next = (path, fd)
            self._wake.notify()
        self.path = path
        self._last.clear()  # a new file's first line per key holds the source's short history again

    def close(self, timeout: float = CLOSE_WAIT) -> None:
        """Lets the queued lines land for up to `timeout` seconds, then closes the file. Never raises: what
        could not be written was said when it failed, and what is left behind is said here."""
        with self._lock:
            if self._closing:
                return
            self._closing = True
            self._give_up_at = time.monotonic() + timeout
            self._wake.notify()
        self._thread.join(timeout + 1.0)
        if self._thread.is_alive():
            with self._lock:
                waiting = len(self._lines)
            log.critical("recording_close_late", path=str(self.path), lines_lost=waiting + 1,
                         why=f"a write to the recording did not return within {timeout:g}s (a hung file system?)",
                         next="its writer thread is left behind; the process exit ends it")
        elif self._abandoned:
            log.error("recording_close_late", path=str(self.path), lines_lost=self._abandoned,
                      why=f"the recording's file took nothing for {timeout:g}s (a pipe whose reader stopped reading)",
                      next="those lines are not in the recording")

    # --- the writer thread -----------------------------------------------------------------

    def _run(self, path: Path, fd: int) -> None:
        watch = _Whereabouts(path, fd)
        failing = 0  # lines lost since writes began to fail
        while True:
            with self._lock:
                while not self._lines and self._next is None and not self._closing:
                    self._wake.wait()
                nxt, self._next = self._next, None
                raw = self._lines.popleft() if self._lines else None
                if raw is not None:
                    self._queued -= len(raw)
                closing = self._closing
            if nxt is not None:
                _close_quietly(fd, path)
                path, fd = nxt
                watch = _Whereabouts(path, fd)
            if raw is None:
                if closing:
                    break
                continue
            error = self._write(fd, raw)
            if error == "given up":
                self._dropped(1)
                if closing:
                    with self._lock:
                        self._abandoned = 1 + len(self._lines)
                        self._lines.clear()
                    self._dropped(self._abandoned - 1)
                    break
            elif error is not None:
                self._dropped(1)
                if not failing:
                    log.critical("recording_failed", path=str(path), error=error,
                                 next="polling and deciding go on; this recording has a gap")
                failing += 1
            else:
                if failing:
                    log.warning("recording_recovered", path=str(path), dropped=failing, after="write_failed")
                failing = 0
                watch.look()
        _close_quietly(fd, path)

    def _write(self, fd: int, raw: bytes) -> str | None:
        """None once `raw` is written; "given up" when a switch or the stop's deadline came while the file took
        nothing; otherwise the error."""
        view = memoryview(raw)
        while view:
            try:
                view = view[os.write(fd, view):]
            except BlockingIOError:  # a pipe full: wait for room, a step at a time
                with self._lock:
                    late = self._give_up_at is not None and time.monotonic() > self._give_up_at
                    if self._next is not None or late:
                        return "given up"
                select.select([], [fd], [], _STEP)
            except OSError as exc:  # a full disk, a reader gone (EPIPE), an I/O error
                return f"{type(exc).__name__}: {exc}"
        return None


class _Whereabouts:
    """Is the recording's file still the one its name names? A file deleted or moved (and not followed by a
    SIGHUP) goes on taking lines nobody will find under that name: said once, on the writer thread."""

    def __init__(self, path: Path, fd: int):
        self.path, self.fd = path, fd
        info = os.fstat(fd)
        self._regular = stat.S_ISREG(info.st_mode)
        self._id = (info.st_dev, info.st_ino)
        self._looked = time.monotonic()
        self._moved_since: float | None = None
        self._said = False

    def look(self) -> None:
        now = time.monotonic()
        if not self._regular or self._said or now - self._looked < _LOOK_EVERY:
            return
        self._looked = now
        try:
            info = os.stat(self.path)
            moved = (info.st_dev, info.st_ino) != self._id
        except OSError:
            moved = True
        if not moved:
            self._moved_since = None
            return
        if self._moved_since is None:
            self._moved_since = now
        elif now - self._moved_since >= _MOVED_GRACE:
            self._said = True
            log.error("recording_file_moved", path=str(self.path),
                      why="the file was moved or deleted: lines go on into the moved file, or a deleted one",
                      next=f"send SIGHUP (logrotate's postrotate) to start a new {self.path}")


def _close_quietly(fd: int, path: Path) -> None:
    try:
        os.close(fd)
    except OSError as exc:  # what could not be written was said when it failed
        log.error("recording_close_failed", path=str(path), error=f"{type(exc).__name__}: {exc}")
