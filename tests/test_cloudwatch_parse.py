"""GetMetricData's answer read by watchdog/sources/cloudwatch_parse.py against botocore's own QueryParser (the
parser our botocore uses for CloudWatch: its service model speaks the query protocol, XML answers).

Hypothesis writes answers the way AWS and moto do (compact, or indented, fields in any order, with or without the
XML declaration and namespace), with values that are not what they should be (huge numbers, NaN and infinity as
text, underscores, spaces, garbage, empty elements, missing fields), and then spoils some of them (an entity, a
comment, CDATA, an attribute, an unknown element nested thousands deep, a repeated field, a tag left open or
closed wrong, bytes that are not UTF-8, characters XML forbids, a carriage return, text after the document).
For every answer `parse` gives exactly what botocore gives (floats compared by their text, so NaN and -0.0 count),
or raises what botocore raises; and an answer written canonically that botocore reads is read by the scanner
itself, never handed back to botocore.

The times are parsed by the daemon's own parser (sources/cloudwatch.py fast_timestamp), as the client does.
"""

from __future__ import annotations

import math
import re
from datetime import datetime, timedelta
from typing import Any

import aioboto3
import boto3
import botocore.session
import pytest
from aiobotocore.session import AioSession
from botocore.parsers import QueryParser
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from watchdog.sources.cloudwatch import fast_timestamp
from watchdog.sources.cloudwatch_parse import POINTS, NotCanonical, ParserFactory, parse, scan

SHAPE = botocore.session.get_session().get_service_model("cloudwatch").operation_model("GetMetricData").output_shape


def botocore_parse(body: bytes) -> dict[str, Any]:
    parsed: dict[str, Any] = QueryParser(timestamp_parser=fast_timestamp)._do_parse({"body": body}, SHAPE)
    return parsed


def same(value: Any) -> Any:
    """A parsed answer in a form where == means the same: floats by their text (NaN, -0.0), times with their
    zone's offset, XML elements by tag and text, and the type of every scalar."""
    if isinstance(value, dict):
        return {k: same(v) for k, v in value.items()}
    if isinstance(value, list):
        return [same(v) for v in value]
    if isinstance(value, float):
        return ("float", repr(value))
    if isinstance(value, datetime):
        return ("time", value.isoformat(), value.utcoffset())
    if hasattr(value, "tag"):  # botocore gives a repeated field as a list of its XML elements
        return ("element", value.tag, value.text)
    return (type(value).__name__, value)


def outcome(call: Any, body: bytes) -> Any:
    try:
        return "ok", same(call(body))
    except Exception as exc:  # what botocore raises, the fast parser must raise too
        return "raised", type(exc).__name__, str(exc)


# --- answers as AWS and moto write them ---------------------------------------------------------------------

TEXT = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="<&\r\ufffe\uffff",
                             min_codepoint=0x20) | st.sampled_from("\t\n"), max_size=12).filter(lambda t: "]]>" not in t)
GOOD_TIMES = st.one_of(
    st.datetimes(datetime(1990, 1, 1), datetime(2100, 1, 1)).map(lambda d: d.strftime("%Y-%m-%dT%H:%M:%SZ")),
    st.datetimes(datetime(1990, 1, 1), datetime(2100, 1, 1)).map(lambda d: d.isoformat(timespec="milliseconds") + "Z"),
    st.sampled_from(["2026-12-07T10:00:00+00:00", "2026-12-07T10:00:00", " 2026-12-07T10:00:00Z ", "1700000000"]),
)
BAD_TIMES = st.sampled_from(["", "yesterday", "2026-13-45T99:99:99Z", "1e400", "nan"])
GOOD_NUMBERS = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.integers(-10**30, 10**30).map(str),
    st.sampled_from(["NaN", "nan", "-Infinity", "Infinity", "1e400", "-1e400", "1_000", " 12 ", "4.9e-324",
                     "1.7976931348623157e308", "-0.0", "+5", "\u0661\u0662"]),
)
BAD_NUMBERS = st.sampled_from(["", "abc", "0x10", "1,5", "--1"])


@st.composite
def element(draw: st.DrawFn, name: str, inner: str) -> str:
    """<name>inner</name>, or <name/> when there is nothing inside (either way AWS may write it)."""
    if inner == "" and draw(st.booleans()):
        return f"<{name}/>"
    return f"<{name}>{inner}</{name}>"


@st.composite
def messages(draw: st.DrawFn, sep: str) -> str:
    out = []
    for _ in range(draw(st.integers(0, 2))):
        names = draw(st.permutations(["Code", "Value"]))[:draw(st.integers(0, 2))]
        out.append("<member>" + sep.join(draw(element(k, draw(TEXT))) for k in names) + "</member>")
    return draw(element("Messages", sep.join(out)))


@st.composite
def result(draw: st.DrawFn, sep: str, shared_times: list[str], bad: bool, as_moto: bool) -> str:
    times = GOOD_TIMES | BAD_TIMES if bad else GOOD_TIMES
    numbers = GOOD_NUMBERS | BAD_NUMBERS if bad else GOOD_NUMBERS
    stamps = shared_times if draw(st.booleans()) else draw(st.lists(times, max_size=6))
    fields = {
        "Id": draw(element("Id", draw(TEXT))),
        "Label": draw(element("Label", draw(TEXT))),
        "StatusCode": draw(element("StatusCode", draw(st.sampled_from(["Complete", "PartialData", "InternalError",
                                                                        "Forbidden", ""]) | TEXT))),
        "Timestamps": draw(element("Timestamps", sep.join(f"<member>{t}</member>" for t in stamps))),
        "Values": draw(element("Values", sep.join(f"<member>{v}</member>" for v in draw(st.lists(numbers, max_size=6))))),
        "Messages": draw(messages(sep)),
    }
    if as_moto:  # moto's order, every field but Messages
        names = ["Id", "Label", "Timestamps", "Values", "StatusCode"]
    else:
        names = [n for n in draw(st.permutations(list(fields))) if n in ("Id", "Timestamps", "Values") or draw(st.booleans())]
    return "<member>" + sep.join(fields[n] for n in names) + "</member>"


@st.composite
def answer(draw: st.DrawFn, bad: bool | None = None) -> str:
    """An answer as AWS or moto writes it; with `bad`, some of its values do not convert."""
    bad = draw(st.booleans()) if bad is None else bad
    sep = draw(st.sampled_from(["", "", "\n", "\n  ", " \t"]))
    shared = draw(st.lists(GOOD_TIMES, max_size=6))
    as_moto = draw(st.booleans())
    results = sep.join(draw(result(sep, shared, bad, as_moto)) for _ in range(draw(st.integers(0, 5))))
    parts = [draw(element("MetricDataResults", results))]
    if draw(st.booleans()):
        parts.append(draw(element("NextToken", draw(TEXT))))
    if draw(st.booleans()):
        parts.append(draw(messages(sep)))
    output = draw(element("GetMetricDataResult", sep.join(draw(st.permutations(parts)))))
    metadata = draw(element("ResponseMetadata", draw(element("RequestId", draw(TEXT)))))
    body = sep.join(draw(st.permutations([output, metadata])))
    ns = draw(st.sampled_from([' xmlns="http://monitoring.amazonaws.com/doc/2010-08-01/"', ""]))
    decl = draw(st.sampled_from(["", '<?xml version="1.0" encoding="UTF-8"?>', '<?xml version="1.0"?>\n']))
    return f"{decl}<GetMetricDataResponse{ns}>{sep}{body}{sep}</GetMetricDataResponse>{sep}"


# --- and spoiled -------------------------------------------------------------------------------------------

LEAF = re.compile(r"<([A-Za-z]+)>[^<]*</\1>|<[A-Za-z]+/>")
STRUCTURE = re.compile(r"<(GetMetricDataResult|ResponseMetadata|Messages|MetricDataResults)>.*?</\1>", re.S)
CLOSE = re.compile(r"</(member|Messages|MetricDataResults|GetMetricDataResult|ResponseMetadata)>")
TEXT_NODE = re.compile(r">([^<]*)</")
HOSTILE_TEXT = ["]]>", "\ufffe", "\uffff", "\x01", "\x1f", "\r", "\r\n", "&amp;", "&#65;", "&lt;", "&bogus;", "\x85"]
AT_A_TAG = {
    "comment": "<!-- x -->", "cdata": "<![CDATA[<Id>x</Id>]]>", "pi": "<?pi x?>", "unknown": "<Extra>1</Extra>",
    "open": "<Id>", "close": "</member>", "member": "<member/>", "text": "stray", "entity": "&amp;",
}


def spoil(doc: str, how: str, at: int, deep: int, hostile: str) -> bytes:
    """One thing an XML parser reads otherwise than the scanner (`at` picks where, among its places)."""
    def nth(found: list[re.Match[str]]) -> re.Match[str] | None:
        return found[at % len(found)] if found else None

    if how in AT_A_TAG or how == "deep":
        cuts = [i for i, c in enumerate(doc) if c == "<"]
        i = cuts[at % len(cuts)]
        insert = AT_A_TAG.get(how) or "<a>" * deep + "x" + "</a>" * deep
        return (doc[:i] + insert + doc[i:]).encode()
    if how == "deep-in-field":  # an unknown element nested `deep` inside a field's text
        m = nth(list(TEXT_NODE.finditer(doc)))
        return doc.encode() if m is None else (doc[:m.end(1)] + "<a>" * deep + "</a>" * deep + doc[m.end(1):]).encode()
    if how == "in-text":
        m = nth(list(TEXT_NODE.finditer(doc)))
        k = m.start(1) + at % (len(m[1]) + 1) if m else 0
        return (doc[:k] + hostile + doc[k:]).encode("utf-8", "surrogatepass")
    if how in ("repeat-field", "repeat-structure"):
        m = nth(list((LEAF if how == "repeat-field" else STRUCTURE).finditer(doc)))
        return doc.encode() if m is None else (doc[:m.end()] + m[0] + doc[m.end():]).encode()
    if how == "misclose":  # a closing tag renamed: balanced, but not well-formed
        m = nth(list(CLOSE.finditer(doc)))
        other = "Messages" if m is not None and m[1] != "Messages" else "member"
        return doc.encode() if m is None else (doc[:m.start()] + f"</{other}>" + doc[m.end():]).encode()
    if how == "attribute":
        m = nth(list(re.finditer(r"<[A-Za-z]+(?=/?>)", doc)))
        return doc.encode() if m is None else (doc[:m.end()] + ' a="1"' + doc[m.end():]).encode()
    return {
        "not-utf8": lambda: doc[:at % (len(doc) + 1)].encode() + b"\xff\xfe" + doc[at % (len(doc) + 1):].encode(),
        "bom": lambda: b"\xef\xbb\xbf" + doc.encode(),
        "truncated": lambda: doc[:at % (len(doc) + 1)].encode(),
        "trailing": lambda: (doc + "<x/>").encode(),
        "trailing-text": lambda: (doc + "x").encode(),
        "leading": lambda: ("\n" + doc).encode(),
        "wrong-root": lambda: doc.replace("GetMetricDataResponse", "SomethingElse").encode(),
        "xml-1.1": lambda: ('<?xml version="1.1"?>' + doc.split("?>", 1)[-1]).encode(),
    }[how]()


SPOILS = [*AT_A_TAG, "deep", "deep-in-field", "in-text", "repeat-field", "repeat-structure", "misclose", "attribute",
          "not-utf8", "bom", "truncated", "trailing", "trailing-text", "leading", "wrong-root", "xml-1.1"]


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(answer())
# Two finite values whose sum overflows: still "every value finite" (a sum was once taken for that).
@example('<GetMetricDataResponse xmlns="http://monitoring.amazonaws.com/doc/2010-08-01/"><GetMetricDataResult>'
         '<MetricDataResults><member><Id>0</Id><Label>0</Label><Timestamps></Timestamps><Values>'
         '<member>1.7976931348623157e308</member><member>1.7976931348623157e308</member></Values>'
         '<StatusCode>Complete</StatusCode></member></MetricDataResults></GetMetricDataResult><ResponseMetadata>'
         '<RequestId></RequestId></ResponseMetadata></GetMetricDataResponse>')
def test_a_canonical_answer_reads_as_botocore_reads_it_and_by_the_scanner_itself(doc: str) -> None:
    body = doc.encode()
    theirs = outcome(botocore_parse, body)
    assert outcome(lambda b: parse(b, fast_timestamp), body) == theirs
    if theirs[0] == "ok":  # the scanner read it itself: botocore was not asked
        assert same(scan(body, fast_timestamp)) == theirs[1]
        # and read into datapoints (what the CloudWatch source's client asks): botocore's results, paired by hand
        read = scan(body, fast_timestamp, points=True)
        assert "MetricDataResults" not in read
        assert same([[i, c, [list(p) for p in pairs], f] for i, c, pairs, f in read[POINTS]]) == same(
            [[r.get("Id"), r.get("StatusCode"), [list(p) for p in zip(r.get("Timestamps", []), r.get("Values", []))],
              all(math.isfinite(v) for v in r.get("Values", []))]
             for r in botocore_parse(body).get("MetricDataResults", [])])


@pytest.mark.parametrize("how", SPOILS)
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(doc=answer(bad=False), at=st.integers(0, 10_000), deep=st.sampled_from([2, 50, 5000]),
       hostile=st.sampled_from(HOSTILE_TEXT))
def test_a_spoiled_answer_reads_as_botocore_reads_it_or_fails_as_it_fails(how: str, doc: str, at: int, deep: int,
                                                                          hostile: str) -> None:
    body = spoil(doc, how, at, deep, hostile)
    assert outcome(lambda b: parse(b, fast_timestamp), body) == outcome(botocore_parse, body)


@pytest.mark.parametrize("body", [
    b"", b"<", b"not xml", b"<GetMetricDataResponse/>", b"<GetMetricDataResponse></GetMetricDataResponse>",
    b"<GetMetricDataResponse><GetMetricDataResult/></GetMetricDataResponse>",
    b"<html><body>502 Bad Gateway</body></html>",
    b"<GetMetricDataResponse><GetMetricDataResult><MetricDataResults><member><Values><member>1e999999</member>"
    b"</Values></member></MetricDataResults></GetMetricDataResult></GetMetricDataResponse>",
])
def test_odd_answers_read_or_fail_as_botocore(body: bytes) -> None:
    assert outcome(lambda b: parse(b, fast_timestamp), body) == outcome(botocore_parse, body)


def test_the_results_share_their_times() -> None:
    """500 results with the same six times: six datetime objects, not 3 000, each result its own list."""
    stamps = "".join(f"<member>2026-12-07T10:0{k}:00Z</member>" for k in range(6))
    results = "".join(f"<member><Id>q{i}</Id><Timestamps>{stamps}</Timestamps><Values>"
                      + "<member>1.5</member>" * 6 + "</Values><StatusCode>Complete</StatusCode></member>"
                      for i in range(500))
    body = (f"<GetMetricDataResponse><GetMetricDataResult><MetricDataResults>{results}</MetricDataResults>"
            "</GetMetricDataResult></GetMetricDataResponse>").encode()
    got = scan(body, fast_timestamp)["MetricDataResults"]
    assert len({id(ts) for r in got for ts in r["Timestamps"]}) == 6
    assert len({id(r["Timestamps"]) for r in got}) == 500
    assert same(got) == same(botocore_parse(body)["MetricDataResults"])


def test_what_is_not_canonical_is_said_so() -> None:
    with pytest.raises(NotCanonical):
        scan(b"<GetMetricDataResponse><!-- hi --><GetMetricDataResult/></GetMetricDataResponse>", fast_timestamp)


# --- plugged into a client, against moto ---------------------------------------------------------------------

async def test_a_client_with_the_factory_reads_moto_answers_as_botocore_and_parses_each_time_once(moto_url: str) -> None:
    """moto in server mode writes the answer; two clients read it, one with ParserFactory on its session. Their
    answers are the same. The factory's client parses each distinct time once per answer (the scanner's memo),
    botocore's once per member: that is how this test knows which parser read it."""
    url = moto_url
    cw = boto3.client("cloudwatch", region_name="us-east-1", endpoint_url=url, aws_access_key_id="k",
                      aws_secret_access_key="s")
    now = datetime.now().astimezone().replace(second=0, microsecond=0)
    for name in ("A", "B"):
        cw.put_metric_data(Namespace="ParseTest", MetricData=[
            {"MetricName": name, "Value": 1.0 + k, "Timestamp": now - timedelta(minutes=k)} for k in range(3)])
    queries = [{"Id": f"q{i}", "MetricStat": {"Metric": {"Namespace": "ParseTest", "MetricName": n}, "Period": 60,
                                               "Stat": "Average"}} for i, n in enumerate(("A", "B"))]
    got = {}
    for fast in (False, True):
        calls: list[str] = []

        def times(text: str) -> datetime:
            calls.append(text)
            return fast_timestamp(text)

        core = AioSession()
        if fast:
            core.register_component("response_parser_factory", ParserFactory())
        core.get_component("response_parser_factory").set_parser_defaults(timestamp_parser=times)
        session = aioboto3.Session(botocore_session=core)
        async with session.client("cloudwatch", region_name="us-east-1", endpoint_url=url, aws_access_key_id="k",
                                  aws_secret_access_key="s") as client:
            answer = await client.get_metric_data(MetricDataQueries=queries, StartTime=now - timedelta(minutes=5),
                                                  EndTime=now + timedelta(minutes=1))
            with pytest.raises(Exception) as refused:  # an error answer is botocore's to read, as before
                await client.get_metric_data(MetricDataQueries=[{"Id": "q0"}], StartTime=now, EndTime=now)
        answer.pop("ResponseMetadata")
        got[fast] = (same(answer), len(calls), type(refused.value).__name__)
    assert got[True][0] == got[False][0] and got[True][2] == got[False][2] == "ClientError"
    assert [len(r["Values"]) for r in got[True][0]["MetricDataResults"]] == [3, 3]
    assert (got[False][1], got[True][1]) == (6, 3)  # 2 results x 3 times, against the 3 distinct ones
