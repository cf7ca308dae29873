"""The CloudWatch source's own client (issue 22, scope 5): its GetMetricData answers read by
watchdog/sources/cloudwatch_parse.py, and its requests' query fields encoded once per batch
(watchdog/sources/cloudwatch_request.py), each held to what botocore alone reads and sends.

moto in server mode behind the recording proxy (tests/aws_proxy.py) writes the answers: moto never pages, so the
proxy splits an answer into two NextToken pages, and it scripts the error answer."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest

from watchdog.config.models import AwsSection
from watchdog.sources import cloudwatch_parse
from watchdog.sources.base import Query, SourceError
from watchdog.sources.cloudwatch import CloudWatch, fast_timestamp
from watchdog.support.aws import aws_client
from watchdog.support.metrics import Metrics

from aws_proxy import RecordingProxy, aws_error, running_proxy  # tests/ is on sys.path
from polls import started
from test_cloudwatch import cw_cfg, minute, put, rule

UTC = timezone.utc
MIN = timedelta(minutes=1)


@pytest.fixture
async def proxy(moto_url: str, aws_env: dict[str, str]) -> AsyncIterator[RecordingProxy]:
    async with running_proxy(moto_url) as p:
        yield p


def _source(url: str, queries: list[Query], client: Any = None) -> CloudWatch:
    return CloudWatch(cw_cfg(attempts=1), queries, AwsSection(region="us-east-1", endpoint_url=url), Metrics(),
                      client=client)


async def _poll_or_error(src: CloudWatch, now: datetime) -> Any:
    try:
        return await src.poll(now)
    except SourceError as exc:
        return str(exc)


async def test_the_sources_client_reads_answers_with_the_scanner_as_botocore_would(
        proxy: RecordingProxy, moto_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Two sources over the same queries: the daemon's (its client made by the source) and one given a client
    with botocore's parser. Their polls give the same datapoints, whole and paged, and the same error. The scanner
    is counted where the client's parser calls it: it read every answer of the daemon's source itself (no fall
    back to botocore), and none of the other's."""
    ns = f"Client{uuid.uuid4().hex[:8]}"
    now = datetime.now(UTC)
    buckets = [minute(now) - k * MIN for k in (4, 3, 2, 1)]
    put(moto_url, ns, [("Latency", b + timedelta(seconds=7), 10.5 * (i + 1)) for i, b in enumerate(buckets)])
    queries = [Query("t/avg", rule("avg", ns)), Query("t/max", rule("max", ns, stat="Maximum"))]
    scanned: list[str] = []
    scan = cloudwatch_parse.scan

    def counted(body: bytes, timestamps: Any) -> dict[str, Any]:
        got = scan(body, timestamps)  # raises NotCanonical when it hands the answer to botocore: not counted
        scanned.append(got.get("NextToken", ""))
        return got

    monkeypatch.setattr(cloudwatch_parse, "scan", counted)
    async with AsyncExitStack() as stack:
        plain = await aws_client(stack, "cloudwatch", "us-east-1", AwsSection(region="us-east-1", endpoint_url=proxy.url),
                                 timedelta(seconds=5), validate=False, timestamps=fast_timestamp)
        ours, theirs = _source(proxy.url, queries), _source(proxy.url, queries, client=plain)
        async with started(ours), started(theirs):
            seen = []
            for paginate in (False, True):
                proxy.paginate = paginate
                before = len(scanned)
                got = await ours.poll(now)
                assert len(scanned) - before == (2 if paginate else 1)
                assert got == await theirs.poll(now)
                assert len(scanned) - before == (2 if paginate else 1)  # botocore's client: no scan
                seen.append(got)
            proxy.paginate = False
            proxy.script = [aws_error("AccessDenied", 403, "not for you &amp; yours")]
            refused = await _poll_or_error(ours, now), await _poll_or_error(theirs, now)
    expected = [(b, 10.5 * (i + 1)) for i, b in enumerate(buckets)]
    assert [(ts.astimezone(UTC), v) for ts, v in seen[0]["t/avg"]] == expected
    assert seen[0] == seen[1]  # the two pages merged
    assert scanned[1:] == ["page2-of-call3", ""]  # the first page said its token, the second none
    assert refused == ("GetMetricData: AccessDenied: not for you & yours",) * 2
