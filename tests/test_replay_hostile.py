"""`replay` says what it could not see, and survives what it reads (issue 19).

Each input runs `python -m watchdog replay` as a user runs it (tests/replay_runs.py), and gets its
documented line and exit code, no traceback, and a peak resident memory under 200 MB (the child's own
high-water mark, VmHWM). AWS is moto in server mode; the answers moto cannot give (a 200 that is not a GetMetricData
document, NaN values: moto refuses NaN in PutMetricData) come from the recording proxy in front of it
(tests/aws_proxy.py), a real aiohttp server on loopback speaking CloudWatch's query protocol. The full disk
is a 64 KiB tmpfs, mounted by the test (root only; skipped, with the reason, where mounting is refused).

The expectations are derived by hand: 14 days at 100 ms is 14 x 86 400 x 10 + 1 = 12 096 001 polls; the
history's shape (which minutes breach) is written here, not computed by the product.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import sqlite3
import subprocess
import xml.etree.ElementTree as ET
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import boto3
import pytest

from aws_proxy import NS, Reply, running_proxy
from configs import CLOSED, cloudwatch, hybrid_routing, metric_rule, parsed, write
from replay_runs import Run, replay_measured

UTC = timezone.utc
MIN = timedelta(minutes=1)
PEAK_MB = 200
_names = itertools.count()


def said(run: Run, code: int) -> str:
    """The run's one stderr line, after checking its exit code and its memory."""
    line = run.one_line()
    assert run.code == code, (run.code, run.err)
    assert run.peak_mb < PEAK_MB, run.peak_mb
    return line


def clean(run: Run, code: int) -> None:
    assert run.killed is None, run.killed
    assert "Traceback" not in run.err, run.err[-3000:]
    assert run.code == code, (run.code, run.out, run.err)
    assert run.peak_mb < PEAK_MB, run.peak_mb


# --- CloudWatch history on moto -----------------------------------------------------------------------

class History:
    """Two 1-minute metrics on moto, r0 and r1, under a metric name of this test's own (moto does not
    filter the namespace when dimensions are given). r0 is 2000 (above 1500) in minutes 100..109 from the
    start of the data, 100 otherwise; r1 is always 100. The replay covers minutes 10..170: r0's breach is
    in it, 3 of 3, so the intact history gives exactly one incident, on r0."""

    def __init__(self, moto_url: str, tmp: Path):
        self.metric = f"Hostile{next(_names)}"
        self.now = datetime.now(UTC).replace(second=0, microsecond=0)
        self.data_start = self.now - timedelta(hours=3, minutes=10)
        self.start, self.end = self.data_start + 10 * MIN, self.now - timedelta(minutes=20)
        self.tmp, self.cache = tmp, tmp / "cache.db"
        cw = boto3.client("cloudwatch", region_name="us-east-1", endpoint_url=moto_url)
        for rule in ("r0", "r1"):
            data = [{"MetricName": self.metric, "Dimensions": [{"Name": "Rule", "Value": rule}],
                     "Timestamp": self.data_start + k * MIN + timedelta(seconds=5),
                     "Value": 2000.0 if rule == "r0" and 100 <= k < 110 else 100.0} for k in range(190)]
            for j in range(0, len(data), 1000):
                cw.put_metric_data(Namespace="Hostile", MetricData=data[j:j + 1000])

    def config(self, endpoint: str, dimensions: dict[str, dict[str, str]] | None = None, name: str = "c.yaml") -> str:
        dims = dimensions or {}
        rules = [metric_rule(r, namespace="Hostile", metric=self.metric, dimensions=dims.get(r, {"Rule": r}),
                             stat="Maximum", datapoints_to_alarm=3, evaluation_periods=3) for r in ("r0", "r1")]
        return write(self.tmp, hybrid_routing(aws_endpoint=endpoint, interval="60s", rules=rules, verify_window="3m",
                                              retry={"attempts": 1}, state_path=self.tmp / "w.db"), name)

    def args(self, config: str, *more: str) -> list[str]:
        return ["-c", config, "--from", self.start.isoformat(), "--to", self.end.isoformat(), "--cache",
                str(self.cache), "--yes", *more]

    async def run(self, config: str, *more: str) -> Run:
        return await asyncio.to_thread(replay_measured, *self.args(config, *more))


UNSEEN_HINT = ("its source answered no datapoint for it (a misspelled namespace, metric, dimension or field? a cache "
               "emptied by hand? delete the cache to fetch afresh)")


async def test_a_misspelled_dimension_is_said_and_exits_3(moto_url: str, aws_env: dict[str, str],
                                                          tmp_path: Path) -> None:
    h = History(moto_url, tmp_path)
    intact = await h.run(h.config(moto_url))
    clean(intact, 0)
    assert "would-be incidents: 1" in intact.out and "no datapoint" not in intact.out
    typo = await h.run(h.config(moto_url, {"r0": {"Rlue": "r0"}}, "typo.yaml"))
    clean(typo, 3)
    assert "would-be incidents: 0" in typo.out
    tail = typo.out.splitlines()[-2:]
    assert tail == ["rules with no datapoint over the range: 1 (judged on nothing)",
                    f"  hybrid-routing/r0  source cloudwatch: {UNSEEN_HINT}"], typo.out
    doc = json.loads((await h.run(h.config(moto_url, {"r0": {"Rlue": "r0"}}, "typo.yaml"), "--json")).out)
    assert doc["unseen"] == [{"rule": "hybrid-routing/r0", "source": "cloudwatch", "why": UNSEEN_HINT}]


async def test_a_cache_emptied_by_hand_is_said_and_exits_3(moto_url: str, aws_env: dict[str, str],
                                                           tmp_path: Path) -> None:
    h = History(moto_url, tmp_path)
    config = h.config(moto_url)
    clean(await h.run(config), 0)
    with sqlite3.connect(h.cache) as db:
        db.execute("DELETE FROM points")
    emptied = await h.run(config)
    clean(emptied, 3)
    assert "would-be incidents: 0" in emptied.out
    assert "rules with no datapoint over the range: 2 (judged on nothing)" in emptied.out
    assert f"  hybrid-routing/r1  source cloudwatch: {UNSEEN_HINT}" in emptied.out


@pytest.mark.parametrize("edit, says", [
    ("UPDATE points SET value = 'abc'", "a row of points holds 'abc' as its value"),
    ("UPDATE points SET value = x'00ff'", "a row of points holds b'\\x00\\xff' as its value"),
    ("UPDATE fetched SET start = 'yesterday'", "a row of fetched holds 'yesterday' as its start"),
    ("UPDATE fetched SET \"end\" = x'01'", "a row of fetched holds b'\\x01' as its end"),
])
async def test_cache_rows_that_hold_no_number_are_one_line_and_exit_2(moto_url: str, aws_env: dict[str, str],
                                                                      tmp_path: Path, edit: str, says: str) -> None:
    h = History(moto_url, tmp_path)
    config = h.config(moto_url)
    clean(await h.run(config), 0)
    with sqlite3.connect(h.cache) as db:
        db.execute(edit)
    line = said(await h.run(config), 2)
    assert line == (f"rollback-watchdog replay: cache {h.cache}: {says}, where a number belongs (edited by hand? "
                    "delete it to start afresh)")


async def test_a_200_that_is_not_a_getmetricdata_document_is_a_failed_fetch(moto_url: str, aws_env: dict[str, str],
                                                                            tmp_path: Path) -> None:
    """The replay's fetch: one line, exit 1 (the history could not be fetched). The live daemon's poll goes
    through the same call: a SourceError, so a failed poll like any other."""
    from watchdog.support.metrics import Metrics
    from watchdog.core.signals import Query
    from watchdog.sources.base import SourceError
    from watchdog.sources.cloudwatch import CloudWatch

    h = History(moto_url, tmp_path)
    other = (f'<ListMetricsResponse xmlns="{NS}"><ListMetricsResult><Metrics/></ListMetricsResult>'
             "<ResponseMetadata><RequestId>r</RequestId></ResponseMetadata></ListMetricsResponse>")
    async with running_proxy(moto_url) as proxy:
        proxy.script = [Reply(200, other)]
        line = said(await h.run(h.config(proxy.url)), 1)
        assert line == ("rollback-watchdog replay: cannot fetch the history: GetMetricData: the answer is not a "
                        "GetMetricData document (KeyError: 'GetMetricDataResult')")
        cfg = parsed(hybrid_routing(aws_endpoint=proxy.url, retry={"attempts": 1}))
        src = CloudWatch(cfg.sources[0], [Query("hybrid-routing/latency", cfg.targets[0].rules[0])], cfg.aws, Metrics())
        await src.start()
        try:
            with pytest.raises(SourceError, match="GetMetricData: the answer is not a GetMetricData document"):
                await src.poll(datetime.now(UTC))
        finally:
            await src.close()


async def test_nan_from_cloudwatch_is_a_missing_datapoint_counted_and_said(moto_url: str, aws_env: dict[str, str],
                                                                           tmp_path: Path) -> None:
    """The proxy answers every value of r1 as NaN (moto refuses NaN in PutMetricData, so the proxy rewrites
    moto's answer). r1 then has no datapoint: listed, exit 3; each NaN is counted with its reason; r0's
    incident is still found. The fetch asks for minutes 5..170 (the first poll's window reaches back N + 2
    = 5 buckets), and moto has a datum in each: 165 NaN."""
    h = History(moto_url, tmp_path)
    async with running_proxy(moto_url) as proxy:
        def all_nan(body: bytes) -> bytes:
            form = proxy.calls[-1]
            qid = next(form[k.replace(".MetricStat.Metric.Dimensions.member.1.Value", ".Id")][0] for k in form
                       if k.endswith(".Dimensions.member.1.Value") and form[k] == ["r1"])
            root = ET.fromstring(body)
            for member in root.iter(f"{{{NS}}}member"):
                if member.findtext(f"{{{NS}}}Id") == qid:
                    for value in member.find(f"{{{NS}}}Values") or []:
                        value.text = "NaN"
            return ET.tostring(root)

        proxy.rewrite = all_nan
        run = await h.run(h.config(proxy.url))
        clean(run, 3)
        assert len(proxy.calls) == 1
    assert "would-be incidents: 1" in run.out
    assert f"  hybrid-routing/r1  source cloudwatch: {UNSEEN_HINT}" in run.out
    assert run.out.splitlines()[-2:] == ["buckets answered with no number, treated as missing: 165",
                                         "  hybrid-routing/r1  165 NaN"], run.out
    again = await h.run(h.config(CLOSED), "--json")  # from the cache: nothing fetched, the reason kept
    clean(again, 3)
    assert json.loads(again.out)["unreadable"] == {"hybrid-routing/r1": {"NaN": 165}}


# --- recordings, labels, files ----------------------------------------------------------------------

T0 = datetime(2026, 11, 30, 10, 0, tzinfo=UTC)


def compliance_config(tmp: Path, name: str = "rec.yaml") -> str:
    sources = [{"name": "compliance", "type": "http_json", "url": "http://127.0.0.1:9/x", "interval": "60s"}]
    rules = [{"name": "gdpr", "category": "security", "source": "compliance", "field": "gdpr.compliant",
              "threshold": "== false"}]
    return write(tmp, hybrid_routing(rules=rules, sources=sources, verify_window="3m", state_path=tmp / "w.db"), name)


def poll_line(k: int, **override: Any) -> bytes:
    """Poll k, a minute apart from T0: compliant, except polls 20..29."""
    at = (T0 + k * MIN).isoformat()
    line: dict[str, Any] = {"at": at, "source": "compliance", "took": 0.01,
                            "points": {"hybrid-routing/gdpr": [[at, not 20 <= k < 30]]}}
    line.update(override)
    return (json.dumps(line, separators=(",", ":")) + "\n").encode()


def recording(tmp: Path, lines: list[bytes], name: str = "rec.jsonl") -> Path:
    path = tmp / name
    path.write_bytes(b"".join(lines))
    return path


def _no_ids(incidents: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{k: v for k, v in i.items() if k != "id"} for i in incidents]  # an id ends in a random part


RANGE = ["--from", T0.isoformat(), "--to", (T0 + 60 * MIN).isoformat()]


def test_a_last_line_cut_short_is_skipped_with_a_note(tmp_path: Path) -> None:
    config = compliance_config(tmp_path)
    whole = [poll_line(k) for k in range(60)]
    intact = replay_measured("-c", config, *RANGE, "--json", "--recording", str(recording(tmp_path, whole)))
    clean(intact, 0)
    cut = recording(tmp_path, whole + [poll_line(60)[:37]], "cut.jsonl")
    run = replay_measured("-c", config, *RANGE, "--json", "--recording", str(cut))
    clean(run, 0)
    doc, before = json.loads(run.out), json.loads(intact.out)
    assert len(before["incidents"]) == 1 and _no_ids(doc["incidents"]) == _no_ids(before["incidents"])
    assert doc["notes"] == [f"the recording's last line ({cut}:61) is cut short, as a crash or a full disk leaves it: "
                            "skipped"]
    # Only the last line: the same cut line with polls after it is a broken recording.
    middle = recording(tmp_path, whole[:30] + [poll_line(60)[:37] + b"\n"] + whole[30:], "middle.jsonl")
    line = said(replay_measured("-c", config, *RANGE, "--recording", str(middle)), 2)
    assert line.startswith(f"rollback-watchdog replay: {middle}:31: not a recorded poll (JSONDecodeError")


def test_a_300_mib_line_is_refused_having_read_one_mib(tmp_path: Path) -> None:
    big = tmp_path / "big.jsonl"
    with big.open("wb") as fh:  # sparse: 300 MiB of NUL bytes and no newline, without the disk to hold them
        fh.truncate(300 << 20)
    line = said(replay_measured("-c", compliance_config(tmp_path), *RANGE, "--recording", str(big)), 2)
    assert line == f"rollback-watchdog replay: {big}:1: a line longer than 1048576 bytes"
    huge = tmp_path / "huge.jsonl"
    with huge.open("wb") as fh:
        fh.truncate((1 << 30) + 1)
    line = said(replay_measured("-c", compliance_config(tmp_path), *RANGE, "--recording", str(huge)), 2)
    assert line == (f"rollback-watchdog replay: --recording {huge} is 1073741825 bytes, above the limit of "
                    "1073741824: give a shorter recording (cut it to the range, one line per poll)")


@pytest.mark.parametrize("option", ["--recording", "--labels"])
def test_dev_zero_is_refused_unread(tmp_path: Path, option: str) -> None:
    line = said(replay_measured("-c", compliance_config(tmp_path), *RANGE, option, "/dev/zero", timeout=60), 2)
    assert line == (f"rollback-watchdog replay: {option} /dev/zero is not a regular file (a FIFO, a device, a socket "
                    "or a directory): give a file")


@pytest.mark.parametrize("option", ["--report", "--recording", "--labels", "--cache"])
def test_a_fifo_is_refused_before_anything_is_fetched(tmp_path: Path, option: str) -> None:
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    run = replay_measured("-c", write(tmp_path, hybrid_routing(state_path=tmp_path / "w.db")), "--from", "-2h",
                          option, str(fifo), timeout=30)
    line = said(run, 2)
    kinds = "a FIFO, a device or a socket): give a file name" if option == "--report" else \
        "a FIFO, a device, a socket or a directory): give a file"
    assert line == f"rollback-watchdog replay: {option} {fifo} is not a regular file ({kinds}"
    assert run.out == ""  # no cost line: nothing was planned, let alone fetched


def test_from_the_year_1_is_past_retention_in_one_line(tmp_path: Path) -> None:
    line = said(replay_measured("-c", write(tmp_path, hybrid_routing(state_path=tmp_path / "w.db")),
                                "--from", "0001-01-01T00:00:00Z"), 2)
    assert line.startswith("rollback-watchdog replay: hybrid-routing/latency: CloudWatch keeps data of a 60s period "
                           "for 15 days: --from must be after ")


def test_a_label_that_ends_in_the_year_9999_is_scored(tmp_path: Path) -> None:
    rec = recording(tmp_path, [poll_line(k) for k in range(60)])
    labels = tmp_path / "labels.yaml"
    labels.write_text(f"- {{target: hybrid-routing, start: {(T0 + 15 * MIN).isoformat()}, "
                      "end: 9999-12-31T23:59:59Z, rollback: true}\n")
    run = replay_measured("-c", compliance_config(tmp_path), *RANGE, "--recording", str(rec), "--labels", str(labels))
    clean(run, 0)
    assert "would-be incidents: 1" in run.out
    assert "score: 0 false, 0 missed, 0 wrong level; detection delay median" in run.out


def test_an_escaped_lone_surrogate_in_a_recorded_error_is_printed_escaped(tmp_path: Path) -> None:
    """Polls 20..29 failed with an error holding an escaped lone surrogate (valid JSON, not valid UTF-8)."""
    lines = [poll_line(k) if not 20 <= k < 30 else poll_line(k, error="\ud800 broke", points=None) for k in range(60)]
    lines = [ln.replace(b'"points":null,', b"") for ln in lines]
    assert b'"\\ud800 broke"' in lines[20]
    run = replay_measured("-c", compliance_config(tmp_path), *RANGE, "--recording", str(recording(tmp_path, lines)))
    clean(run, 0)
    assert "failed polls: 10" in run.out
    assert "  compliance  10 of 60 polls: 10 x \\ud800 broke" in run.out


# --- the number of simulated polls ----------------------------------------------------------------

def fast_config(tmp: Path, endpoint: str) -> str:
    """The latency rule's source polls on its 60 s period, 2 s after each minute (issue 22: a CloudWatch source
    reads on its rules' periods); `fast`, a CloudWatch source with no rule yet, polls on its 100 ms interval."""
    # Neither test below fetches the 14 days (the first is refused before, the second finds them cached).
    sources = [cloudwatch(retry={"attempts": 1}, settle="2s", timeout="120s"),
               cloudwatch("fast", interval="100ms", retry={"attempts": 1})]
    return write(tmp, hybrid_routing(aws_endpoint=endpoint, sources=sources, state_path=tmp / "w.db"))


# By hand, over 14 days from a start that is not on the minute grid (it is now, less 14 days, to the microsecond,
# and the grid's ticks are at second 2): the start, then each of the 20 160 minutes' ticks, 20 161; and 14 days
# of 100 ms, both ends included, 12 096 001.
POLLS = "polls: 12 116 162 to simulate (cloudwatch 20 161, fast 12 096 001)"


def test_twelve_million_polls_are_estimated_first_and_refused_without_yes(tmp_path: Path) -> None:
    run = replay_measured("-c", fast_config(tmp_path, CLOSED), "--from", "-14d", "--cache", str(tmp_path / "c.db"),
                          timeout=90)
    line = said(run, 2)
    assert run.out.splitlines()[-1] == POLLS
    assert line == ("rollback-watchdog replay: 12 116 162 polls to simulate, above the limit of 1 000 000: re-run "
                    "with --yes to simulate them all, or give a shorter range")


def seeded_cache(tmp: Path, config: str) -> Path:
    """A cache that already holds the latency rule's history, with no datapoint in it, from 15 days back to
    tomorrow, so the replay fetches nothing (the endpoint is closed). Moto's GetMetricData over 14 days of
    1-minute buckets took over 100 s on a loaded machine and once timed out in CI. That fetch is not what the
    test below is about; the fetch is tested above and in test_replay.py."""
    from watchdog.config import load_config
    from watchdog.core.signals import Query
    from watchdog.replay.cache import HistoryCache
    from watchdog.replay.history import query_key

    target = load_config(config).targets[0]
    cache, now = HistoryCache(tmp / "c.db"), datetime.now(timezone.utc)
    try:
        for rule in target.rules:
            cache.put(query_key(Query(f"{target.name}/{rule.name}", rule)), [], now - timedelta(days=15),
                      now + timedelta(days=1))
    finally:
        cache.close()
    return tmp / "c.db"


def test_twelve_million_polls_with_yes_run_in_bounded_memory_and_show_progress(aws_env: dict[str, str],
                                                                               tmp_path: Path) -> None:
    """On a terminal the progress line shows within seconds (the schedule is made as it is consumed); the run
    is stopped there: the 12 M polls themselves would take a quarter of an hour."""
    config = fast_config(tmp_path, CLOSED)
    run = replay_measured("-c", config, "--from", "-14d", "--yes", "--cache", str(seeded_cache(tmp_path, config)),
                          tty=True, until=" polls (", timeout=180)
    assert run.killed is None, (run.killed, run.err[-2000:])
    assert "Traceback" not in run.err
    assert "of 12 116 162 polls (" in run.err, run.err[-2000:]
    assert run.out.splitlines()[-1] == POLLS
    assert run.peak_mb < PEAK_MB, run.peak_mb


# --- the report: written whole or not at all -------------------------------------------------------

@pytest.fixture
def tiny_disk(tmp_path: Path):
    where = tmp_path / "disk"
    where.mkdir()
    try:
        subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(where)], check=True,
                       capture_output=True, text=True)
    except (OSError, subprocess.CalledProcessError) as exc:
        reason = getattr(exc, "stderr", "") or exc
        if os.environ.get("CI") and os.geteuid() == 0:
            pytest.fail(f"CI runs as root and must be able to mount a tmpfs: {reason}")
        pytest.skip(f"a 64 KiB tmpfs cannot be mounted here (it needs root): {reason}")
    try:
        yield where
    finally:
        subprocess.run(["umount", str(where)], check=False)


def fill(where: Path) -> Path:
    filler = where / "filler"
    with filler.open("wb", buffering=0) as fh:  # unbuffered: nothing left to fail at the close
        try:
            while True:
                fh.write(b"x" * 512)
        except OSError:
            pass
    return filler


def test_a_disk_that_fills_under_an_existing_report_leaves_it_whole(tmp_path: Path, tiny_disk: Path) -> None:
    report = tiny_disk / "replay.html"
    previous = b"<!doctype html><p>the previous, good report</p>" * 40
    report.write_bytes(previous)
    filler = fill(tiny_disk)
    config = compliance_config(tmp_path)
    rec = recording(tmp_path, [poll_line(k) for k in range(60)])
    run = replay_measured("-c", config, *RANGE, "--recording", str(rec), "--report", str(report))
    line = said(run, 1)
    assert "would-be incidents: 1" in run.out  # the outcome is printed all the same
    assert line == (f"rollback-watchdog replay: the report {report} could not be written: No space left on device "
                    "(the previous one is left as it was)")
    assert report.read_bytes() == previous
    assert sorted(p.name for p in tiny_disk.iterdir()) == ["filler", "replay.html"]  # no temporary file left
    filler.unlink()  # the disk has room again: the next replay writes the report
    clean(replay_measured("-c", config, *RANGE, "--recording", str(rec), "--report", str(report)), 0)
    text = report.read_text()
    assert text.startswith("<!doctype html>") and "What the watchdog would have done" in text
    assert sorted(p.name for p in tiny_disk.iterdir()) == ["replay.html"]

