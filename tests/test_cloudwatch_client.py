"""The CloudWatch source's own client (issue 22, scope 5): its GetMetricData answers read by
watchdog/sources/cloudwatch_parse.py, and its requests' query fields encoded once per batch
(watchdog/sources/cloudwatch_request.py), each held to what botocore alone reads and sends.

moto in server mode behind the recording proxy (tests/aws_proxy.py) writes the answers: moto never pages, so the
proxy splits an answer into two NextToken pages, and it scripts the error answer."""

from __future__ import annotations

import uuid
from contextlib import AsyncExitStack
from datetime import datetime, timedelta, timezone
from typing import Any

from types import SimpleNamespace

import boto3
import pytest
from botocore.awsrequest import AWSRequest
from botocore.config import Config as BotoConfig
from hypothesis import given, settings
from hypothesis import strategies as st

from watchdog.config.models import AwsSection
from watchdog.sources import cloudwatch_parse
from watchdog.sources.base import Query, SourceError
from watchdog.sources.cloudwatch import CloudWatch, fast_timestamp, stat_query
from watchdog.sources.cloudwatch_request import Batch, EncodedQueries
from watchdog.support.aws import aws_client
from watchdog.support.metrics import Metrics

from aws_proxy import RecordingProxy, aws_error, running_proxy  # tests/ is on sys.path
from polls import started
from test_cloudwatch import cw_cfg, minute, proxy, put, rule  # noqa: F401 (proxy: the fixture, used by name)

UTC = timezone.utc
MIN = timedelta(minutes=1)


def _source(url: str, queries: list[Query], client: Any = None) -> CloudWatch:
    return CloudWatch(cw_cfg(attempts=1, timeout="30s"), queries, AwsSection(region="us-east-1", endpoint_url=url), Metrics(),
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

    def counted(body: bytes, timestamps: Any, points: bool = False) -> dict[str, Any]:
        got = scan(body, timestamps, points)  # raises NotCanonical when it hands the answer to botocore: not counted
        scanned.append(got.get("NextToken", ""))
        return got

    monkeypatch.setattr(cloudwatch_parse, "scan", counted)
    async with AsyncExitStack() as stack:
        plain = await aws_client(stack, "cloudwatch", "us-east-1", AwsSection(region="us-east-1", endpoint_url=proxy.url),
                                 timedelta(seconds=30), validate=False, timestamps=fast_timestamp)
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


# --- the request: each batch's queries encoded once ----------------------------------------------------------

TEXT = st.text(st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=10)
METRICS = st.builds(
    SimpleNamespace, namespace=TEXT, name=TEXT, dimensions=st.dictionaries(TEXT, TEXT, max_size=3),
    stat=st.sampled_from(["Average", "Sum", "p99", "p99.9", "TM(10%:90%)", "IQM"]),
    period=st.sampled_from([timedelta(seconds=s) for s in (1, 10, 60, 300, 3600)]),
    unit=st.sampled_from([None, "Milliseconds", "Count/Second"]))
QUERIES = st.lists(st.one_of(
    st.tuples(METRICS, st.booleans()).map(lambda m: ("stat", m)),
    st.tuples(TEXT, st.sampled_from([60, 300])).map(lambda e: ("expr", e))), min_size=0, max_size=40)
TIMES = st.datetimes(datetime(2000, 1, 1), datetime(2100, 1, 1), timezones=st.just(UTC))
TOKENS = st.one_of(st.none(), st.text(max_size=20))


def _queries(drawn: list[tuple[str, Any]]) -> list[dict[str, Any]]:
    out = []
    for i, (kind, spec) in enumerate(drawn):
        if kind == "stat":
            out.append(stat_query(f"q{i}", *spec))
        else:
            out.append({"Id": f"q{i}", "Expression": spec[0], "Period": spec[1], "ReturnData": True})
    return out


@settings(max_examples=150, deadline=None)
@given(drawn=QUERIES, calls=st.lists(st.tuples(TIMES, TIMES, TOKENS), min_size=1, max_size=3))
def test_a_batch_encoded_once_is_the_body_botocore_sends(drawn: list[tuple[str, Any]],
                                                         calls: list[tuple[datetime, datetime, str | None]]) -> None:
    """Over generated queries (any text in names, dimensions and expressions; units, percentiles, expressions) and
    calls (times, paging tokens of any text), the body of each call through EncodedQueries is botocore's own body,
    as it is prepared to be signed and sent; the batch's fields are encoded at its first call and kept."""
    client = boto3.client("cloudwatch", region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="y",
                          config=BotoConfig(parameter_validation=False))
    model = client.meta.service_model.operation_model("GetMetricData")
    plain, ours = client._serializer, EncodedQueries(client._serializer)
    batch = Batch(_queries(drawn))
    kept = None
    for start, end, token in calls:
        params: dict[str, Any] = {"MetricDataQueries": batch, "StartTime": start, "EndTime": end,
                                  "ScanBy": "TimestampAscending", **({"NextToken": token} if token is not None else {})}
        theirs = plain.serialize_to_request({**params, "MetricDataQueries": list(batch)}, model)
        mine = ours.serialize_to_request(params, model)
        assert mine["headers"] == theirs["headers"] and mine["method"] == theirs["method"]
        body = [AWSRequest(method="POST", url="https://x", data=r["body"]).prepare().body for r in (theirs, mine)]
        assert body[1] == body[0]
        assert batch.form is not None and (kept is None or batch.form is kept)
        kept = batch.form


async def test_the_source_sends_botocores_bodies_and_moto_answers_them_alike(own_moto_url: str,
                                                                           aws_env: dict[str, str]) -> None:
    """The daemon's source (its batches encoded once, its calls after the first sent by DirectCalls) and the same
    source with a client of botocore's alone poll the same 501 queries, whole and paged (a NextToken call): the
    bytes each sends, as signed, are the same, with the same headers (but for the date, the signature and the
    invocation id, which are each call's own), and so are moto's answers. The batches' encoded fields were made
    once and reused (no other path fills them); only the first call went through the client."""
    async with running_proxy(own_moto_url) as proxy:  # moto's GetMetricData scans all it holds: a server of its own
        await _same_bodies(proxy, own_moto_url)


_PER_CALL = {"authorization", "x-amz-date", "amz-sdk-invocation-id"}


def _scheme(authorization: str) -> tuple[str, list[str], str]:
    """A SigV4 Authorization header without what is each call's own (its day and its signature)."""
    algorithm, _, fields = authorization.partition(" ")
    parts = dict(f.strip().split("=", 1) for f in fields.split(","))
    key, _day, *scope = parts["Credential"].split("/")
    return algorithm, [key, *scope], parts["SignedHeaders"]


async def _same_bodies(proxy: RecordingProxy, moto_url: str) -> None:
    ns = f"Body{uuid.uuid4().hex[:8]}"
    now = datetime.now(UTC)
    put(moto_url, ns, [("Latency é&=+", minute(now) - 2 * MIN + timedelta(seconds=3), 5.0)], service=f"{ns} ü/?#%")
    queries = [Query(f"t/r{i}", rule(f"r{i}", ns, metric="Latency é&=+", service=f"{ns} ü/?#%" if i == 0 else f"{ns}-{i}"))
               for i in range(501)]
    sent: dict[str, list[tuple[bytes, dict[str, str]]]] = {"ours": [], "theirs": []}
    through_client: dict[str, int] = {"ours": 0, "theirs": 0}
    async with AsyncExitStack() as stack:
        plain = await aws_client(stack, "cloudwatch", "us-east-1", AwsSection(region="us-east-1", endpoint_url=proxy.url),
                                 timedelta(seconds=30), validate=False, timestamps=fast_timestamp)
        ours, theirs = _source(proxy.url, queries), _source(proxy.url, queries, client=plain)
        async with started(ours), started(theirs):
            for name, src in (("ours", ours), ("theirs", theirs)):
                def count(into: str = name, **_: Any) -> None:
                    through_client[into] += 1
                src._client.meta.events.register("before-send.cloudwatch.GetMetricData", count)
            answers = []
            for paginate in (False, True, False):
                proxy.paginate = paginate
                got = []
                for name, src in (("ours", ours), ("theirs", theirs)):
                    proxy.calls.clear()  # the proxy's page token names the call's number: the same for both
                    proxy.sent.clear()
                    got.append(await src.poll(now))
                    sent[name] += proxy.sent
                answers.append(tuple(got))
    assert through_client == {"ours": 1, "theirs": 8}
    assert [len(b) for b, _ in sent["ours"]] == [len(b) for b, _ in sent["theirs"]] and len(sent["ours"]) == 2 + 4 + 2
    assert [b for b, _ in sent["ours"]] == [b for b, _ in sent["theirs"]]
    for (_, mine), (_, theirs_) in zip(sent["ours"], sent["theirs"]):
        assert {k: v for k, v in mine.items() if k.lower() not in _PER_CALL} == \
            {k: v for k, v in theirs_.items() if k.lower() not in _PER_CALL}
        assert set(mine) == set(theirs_)
        assert _scheme(mine["Authorization"]) == _scheme(theirs_["Authorization"])  # key, region, service, headers
    ids = [h["amz-sdk-invocation-id"] for _, h in sent["ours"]]
    assert len(set(ids)) == len(ids)  # each call its own, as botocore makes them
    assert all(a == b for a, b in answers) and [v for _, v in answers[0][0]["t/r0"]] == [5.0]
    batches = [b for _, bs in ours._reads.values() for b in bs]
    assert [len(b) for b in batches] == [500, 1] and all(isinstance(b, Batch) and b.form for b in batches)
