"""The poll recording never holds the event loop, opens without waiting and follows its file's name
(issue 19: 2 and the recording half of 8).

Before, `FileRecorder.polled` wrote and flushed on the event loop: with `--record` into a pipe whose reader
stalled, /healthz timed out from the first write and no level ran; a FIFO with no reader blocked the start
for ever (the open waited for a reader); a recording moved away (logrotate: mv, then SIGHUP) went on into the
moved file, and a changed `watchdog.record` on SIGHUP was ignored.

First the recorder itself, with real FIFOs, files and devices (each call that could hang runs on a thread
the test bounds, so the old code fails instead of hanging the suite), then the real daemon.
"""

from __future__ import annotations

import asyncio
import errno
import fcntl
import json
import os
import signal
import socket
import stat
import threading
import time
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import structlog

from configs import hybrid_routing, write
from tests.daemon import Daemon, status
from timing import until

NOW = datetime(2026, 11, 30, 10, 0, tzinfo=timezone.utc)
F_SETPIPE_SZ = getattr(fcntl, "F_SETPIPE_SZ", 1031)


def bounded(fn: Callable[[], Any], seconds: float = 15.0) -> Any:
    """fn() on a thread; AssertionError if it has not returned within `seconds` (it is left behind)."""
    out: dict[str, Any] = {}

    def run() -> None:
        try:
            out["value"] = fn()
        except BaseException as exc:  # handed to the test
            out["error"] = exc

    t = threading.Thread(target=run, daemon=True)
    t.start()
    t.join(seconds)
    if t.is_alive():
        raise AssertionError(f"still waiting after {seconds:g}s")
    if "error" in out:
        raise out["error"]
    return out.get("value")


@pytest.fixture
def fifo(tmp_path: Path) -> Iterator[Path]:
    path = tmp_path / "polls.fifo"
    os.mkfifo(path)
    yield path


def stalled_reader(path: Path, pipe_size: int = 4096) -> int:
    """A reader that opens the FIFO and then reads nothing; its pipe made as small as Linux allows."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    try:
        fcntl.fcntl(fd, F_SETPIPE_SZ, pipe_size)
    except OSError:
        pass  # the default 64 KiB: the test only writes more
    return fd


def drain(fd: int) -> bytes:
    out = b""
    while True:
        try:
            chunk = os.read(fd, 1 << 16)
        except BlockingIOError:
            return out
        if not chunk:
            return out
        out += chunk


def sampled(i: int, size: int = 6000) -> dict[str, list[tuple[datetime, Any]]]:
    """One new reading per poll with a long value: a line larger than the pipe's atomic write (4 KiB)."""
    return {"web/gdpr": [(NOW + timedelta(seconds=i), "x" * size)]}


def test_a_fifo_without_a_reader_is_refused_at_once_in_one_line(fifo: Path) -> None:
    from watchdog.runtime.recording import FileRecorder, RecordingUnwritable

    try:
        with pytest.raises(RecordingUnwritable) as info:
            bounded(lambda: FileRecorder(fifo), 10)
        assert str(info.value) == (f"the recording {fifo} is a FIFO with no reader: start its reader first "
                                   "(the daemon never waits for one)")
    finally:
        unblock = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)  # an old open still waiting gets its reader
        time.sleep(0.1)
        os.close(unblock)


def test_a_stalled_reader_never_holds_the_caller_lines_are_dropped_counted_and_said_once(fifo: Path) -> None:
    """The queue holds 64 KiB here; 60 lines of 6 KiB into a pipe of 4 KiB that nobody reads: the calls all
    return, about a quarter of the lines are queued, the rest dropped and counted, one critical line says
    so. Then the reader reads: what was queued arrives whole and in order, and the next line says the
    dropping ended, with the count."""
    from watchdog.runtime.recording import FileRecorder

    reader = stalled_reader(fifo)
    dropped: list[int] = []
    rec = None
    try:
        with structlog.testing.capture_logs() as logs:
            rec = FileRecorder(fifo, dropped=dropped.append, queue_bytes=64 * 1024)

            def poll_60() -> None:
                for i in range(60):
                    rec.polled("c", "http_json", True, NOW, 0.01, sampled(i), None)

            bounded(poll_60, 15)
            lost = sum(dropped)
            assert 30 <= lost <= 52, lost  # 64 KiB queued (10 lines), 1-2 in the pipe or being written
            full = [e for e in logs if e["event"] == "recording_queue_full"]
            assert len(full) == 1 and full[0]["log_level"] == "critical"

            got = b""
            deadline = time.monotonic() + 15
            while got.count(b"\n") < 60 - lost and time.monotonic() < deadline:
                got += drain(reader)
                time.sleep(0.02)
            rec.polled("c", "http_json", True, NOW, 0.01, sampled(60), None)
            recovered = [e for e in logs if e["event"] == "recording_recovered"]
            assert [(e["dropped"], e["after"]) for e in recovered] == [(lost, "queue_full")]
        lines = [json.loads(line) for line in got.splitlines()]
        assert len(lines) == 60 - lost  # each one whole: a line is never cut by a partial write
        times = [next(iter(ln["points"].values()))[0][0] for ln in lines]
        assert times == sorted(times) and times[0] == NOW.isoformat()
    finally:
        if rec is not None:
            bounded(lambda: rec.close(0.5), 10)
        os.close(reader)


def test_close_lands_what_is_queued_and_gives_up_on_a_stalled_pipe_at_its_deadline(tmp_path: Path,
                                                                                     fifo: Path) -> None:
    from watchdog.runtime.recording import FileRecorder

    path = tmp_path / "polls.jsonl"
    rec = FileRecorder(path)
    for i in range(2000):
        rec.polled("c", "http_json", True, NOW, 0.01, sampled(i, 100), None)
    bounded(lambda: rec.close(), 30)  # everything queued lands first
    assert len(path.read_text().splitlines()) == 2000

    reader = stalled_reader(fifo)
    try:
        with structlog.testing.capture_logs() as logs:
            stalled = FileRecorder(fifo)

            def poll_20() -> None:
                for i in range(20):
                    stalled.polled("c", "http_json", True, NOW, 0.01, sampled(i), None)

            bounded(poll_20, 15)
            t0 = time.monotonic()
            bounded(lambda: stalled.close(0.5), 15)
            assert time.monotonic() - t0 < 10  # the deadline, not the reader, ends it (generous: a loaded box)
        [late] = [e for e in logs if e["event"] == "recording_close_late"]
        assert 18 <= late["lines_lost"] <= 20, late  # at most one whole line and a part fit the 4 KiB pipe
    finally:
        os.close(reader)


def test_what_may_be_a_recording(tmp_path: Path) -> None:
    """A regular file, a character device (/dev/null discards) and a FIFO with its reader are taken; a
    socket, a directory and a block device are refused in one line, at once."""
    from watchdog.runtime.recording import FileRecorder, RecordingUnwritable

    bounded(lambda: FileRecorder(Path("/dev/null")).close(), 10)
    sock_path = tmp_path / "s.sock"
    with socket.socket(socket.AF_UNIX) as sock:
        sock.bind(str(sock_path))
        with pytest.raises(RecordingUnwritable) as info:
            bounded(lambda: FileRecorder(sock_path), 10)
        assert str(info.value) == (f"the recording {sock_path} is a socket: a regular file, a FIFO or a "
                                   "character device only")
    with pytest.raises(RecordingUnwritable) as info:
        bounded(lambda: FileRecorder(tmp_path), 10)
    assert str(info.value) == f"the recording {tmp_path} is a directory: a regular file, a FIFO or a character device only"
    block = tmp_path / "disk"
    try:
        os.mknod(block, stat.S_IFBLK | 0o600, os.makedev(7, 200))  # a loop device number nobody uses
    except OSError as exc:
        if exc.errno in (errno.EPERM, errno.EACCES):
            return  # no CAP_MKNOD here: the other kinds were checked
        raise
    with pytest.raises(RecordingUnwritable) as info:
        bounded(lambda: FileRecorder(block), 10)
    assert str(info.value) == f"the recording {block} is a block device: a regular file, a FIFO or a character device only"


def test_a_moved_file_is_said_once_and_a_switch_follows_the_name(tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """mv FILE FILE.1 with no SIGHUP: one error line (after a grace logrotate's own gap stays under; 0 here).
    Then the switch SIGHUP makes: new lines go to a new FILE, FILE.1 stops growing, and the first new line
    for a sampled source holds its readings again (a file read alone replays from its own first line)."""
    from watchdog.runtime import recording
    from watchdog.runtime.recording import FileRecorder, open_recording

    monkeypatch.setattr(recording, "_LOOK_EVERY", 0.0)
    monkeypatch.setattr(recording, "_MOVED_GRACE", 0.0)
    path, moved = tmp_path / "polls.jsonl", tmp_path / "polls.jsonl.1"
    rec = FileRecorder(path)
    try:
        with structlog.testing.capture_logs() as logs:
            rec.polled("c", "http_json", True, NOW, 0.01, {"k": [(NOW, 1.0)]}, None)
            until_lines(path, 1)
            path.rename(moved)
            for i in range(1, 4):
                rec.polled("c", "http_json", True, NOW, 0.01, {"k": [(NOW, 1.0), (NOW + timedelta(seconds=i), 2.0)]},
                           None)
                until_lines(moved, 1 + i)
            said = [e for e in logs if e["event"] == "recording_file_moved"]
            assert len(said) == 1 and said[0]["path"] == str(path)
        rec.switch(path, open_recording(path))
        rec.polled("c", "http_json", True, NOW, 0.01, {"k": [(NOW, 1.0), (NOW + timedelta(seconds=3), 2.0)]}, None)
        until_lines(path, 1)
        time.sleep(0.2)
        assert len(moved.read_text().splitlines()) == 4
        first = json.loads(path.read_text().splitlines()[0])
        assert len(first["points"]["k"]) == 2
    finally:
        bounded(lambda: rec.close(), 10)


def until_lines(path: Path, n: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not (path.exists() and len(path.read_text().splitlines()) >= n):
        if time.monotonic() > deadline:
            raise AssertionError(f"{path} has not {n} lines within {timeout:g}s")
        time.sleep(0.01)


async def test_record_on_the_command_line_wins_over_the_files_value_at_reload(tmp_path: Path, admin_api: Any) -> None:
    """`run --record C` with `watchdog.record: B` in the reloaded file: C goes on, B is never created."""
    from watchdog.cli import main as cli
    from watchdog.lifecycle.app import App

    chosen, in_file = tmp_path / "chosen.jsonl", tmp_path / "in-file.jsonl"

    def config(record: Path) -> dict[str, Any]:
        return hybrid_routing(state_path=tmp_path / "w.db", interval="1h", admin=admin_api.url,
                              watchdog={"record": str(record)})

    path = write(tmp_path, config(in_file))
    from watchdog.config import load_config

    app = await App.create(cli._recording(load_config(path), str(chosen)), schedule=False)
    await app.start()
    try:
        await cli._reload(app, path, str(chosen))
        await cli._reopen_recording(app)
        await app.runtime.poll("cloudwatch", app.runtime.clock.now())
        await until(lambda: chosen.exists() and chosen.read_text().count("\n") >= 1, 10, "a line in chosen.jsonl")
        assert not in_file.exists()
    finally:
        await app.stop()


# --- the real daemon -------------------------------------------------------------------------

pytest_slow = pytest.mark.slow


@pytest_slow
async def test_a_recording_pipe_whose_reader_stalls_never_holds_the_level_or_healthz(
        tmp_path: Path, fifo: Path, moto_url: str, aws_env: dict[str, str], admin_api: Any) -> None:
    """The pipe is full before the daemon starts (its reader reads nothing), so the very first recorded
    poll would block a write on the loop. The breach still runs level 1 within the story's time, /healthz
    answers all along, and the stop gives up on the pipe at its deadline."""
    from story import FLAGS, Publisher, render

    reader = stalled_reader(fifo)
    filler = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
    try:
        while True:
            os.write(filler, b"x" * 4096)
    except BlockingIOError:
        pass
    os.close(filler)
    ns = f"REC{time.monotonic_ns()}"
    pub = Publisher(moto_url, ns)
    d = await Daemon(render(tmp_path, moto_url, admin_api, ns), "--record", str(fifo)).start()
    try:
        port = await d.port()
        pub.start()
        t0 = time.monotonic()
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as s:
            async def healthy() -> None:
                try:
                    async with s.get(f"http://127.0.0.1:{port}/healthz") as r:
                        assert r.status == 200, await r.text()
                except TimeoutError:
                    raise AssertionError("/healthz did not answer within 5s") from None

            while not admin_api.count(FLAGS):
                await healthy()
                assert time.monotonic() - t0 < 45, "level 1 did not run within 45s of the breach"
                await asyncio.sleep(0.25)
            print(f"level 1's request {time.monotonic() - t0:.1f}s after the breach began, the pipe full")
            await d.wait_for("level_succeeded", timeout=20, level=1)
            for _ in range(4):  # and after it: polls keep coming round
                await healthy()
                await asyncio.sleep(0.5)
        assert (await status(port))["sources"][0]["up"] is True
        d.signal(signal.SIGTERM)
        assert await d.wait(40) == 0
        assert d.events("recording_close_late")  # the lines the stalled pipe never took are said
    finally:
        await pub.stop()
        await d.stop()
        os.close(reader)


@pytest_slow
async def test_a_fifo_without_a_reader_is_refused_at_start_in_one_line(tmp_path: Path, fifo: Path) -> None:
    path = write(tmp_path, hybrid_routing(state_path=tmp_path / "w.db"))
    d = await Daemon(path, "--record", str(fifo)).start()
    try:
        try:
            rc = await d.wait(20)
        except TimeoutError:
            raise AssertionError("the daemon is still waiting for the FIFO's reader") from None
        err = (await d._stderr()).decode()
        assert rc == 1
        assert err.splitlines() == [f"rollback-watchdog: cannot start: the recording {fifo} is a FIFO with no "
                                    "reader: start its reader first (the daemon never waits for one)"]
    finally:
        unblock = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)
        await d.stop()
        os.close(unblock)


@pytest_slow
async def test_a_rotation_then_sighup_starts_a_new_file_and_a_changed_record_switches_files(
        tmp_path: Path, admin_api: Any) -> None:
    """logrotate's way: mv FILE FILE.1, then SIGHUP (its postrotate). A new FILE starts and FILE.1 stops
    growing. Then `watchdog.record` changed in the file and SIGHUP: lines go to the new name and FILE stops."""
    first, rotated, second = tmp_path / "polls.jsonl", tmp_path / "polls.jsonl.1", tmp_path / "other.jsonl"

    def config(record: Path) -> str:
        # A CloudWatch source at a closed port: every second (its rule's period; a CloudWatch source polls on
        # its rules' periods, issue 22) a failed poll, each one a recorded line.
        return write(tmp_path, hybrid_routing(state_path=tmp_path / "w.db", period="1s", timeout="1s",
                                              retry={"attempts": 1}, admin=admin_api.url,
                                              watchdog={"record": str(record)}))

    def lines(path: Path) -> int:
        return len(path.read_text().splitlines()) if path.exists() else 0

    d = await Daemon(config(first)).start()
    try:
        await d.port()
        await until(lambda: lines(first) >= 3, 20, "lines in the recording")
        first.rename(rotated)
        d.signal(signal.SIGHUP)
        await until(lambda: lines(first) >= 3, 20, "lines in a new file under the recording's name")
        kept = lines(rotated)
        await until(lambda: lines(first) >= 6, 20, "more lines in the new file")
        assert lines(rotated) == kept
        assert d.events("recording_reopened")[0]["path"] == str(first)

        config(second)
        d.signal(signal.SIGHUP)
        await until(lambda: lines(second) >= 3, 20, "lines in the changed recording")
        kept = lines(first)
        await until(lambda: lines(second) >= 6, 20, "more lines in the changed recording")
        assert lines(first) == kept
        for path in (rotated, first, second):  # every line whole
            assert all(json.loads(ln)["source"] == "cloudwatch" for ln in path.read_text().splitlines())
        d.signal(signal.SIGTERM)
        assert await d.wait(30) == 0
    finally:
        await d.stop()
