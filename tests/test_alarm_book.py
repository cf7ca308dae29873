"""What a cloudwatch_alarms source knows of its alarms (watchdog/sources/alarm_book.py): the order changes are
taken in, what a full read drops, how an alarm judges values newer than an action, and the events a queue may
hold, hostile ones included. Expectations come from the rules written in that module's docstring and
docs/configuration.md, worked by hand."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from alarm_endpoints import reason_data, state_change
from watchdog.sources.alarm_book import (AlarmBook, AlarmRecord, NotAnAlarmEvent, Want, evaluated, from_describe,
                                         from_event)

UTC = timezone.utc
T0 = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
S = timedelta(seconds=1)


def alarm(name: str, state: str = "OK", at: datetime = T0, op: str = "GreaterThanThreshold", n: int = 1,
          m: int | None = None, **extra: Any) -> dict[str, Any]:
    """A MetricAlarms entry as botocore parses DescribeAlarms."""
    entry = {"AlarmName": name, "StateValue": state, "StateUpdatedTimestamp": at, "StateReasonData": "{}",
             "MetricName": "Errors", "Namespace": "Shop", "Statistic": "Average", "Period": 60,
             "EvaluationPeriods": n, "Threshold": 5.0, "ComparisonOperator": op, **extra}
    if m is not None:
        entry["DatapointsToAlarm"] = m
    return entry


def rec(name: str, state: str, at: datetime) -> AlarmRecord:
    return AlarmRecord(name, state, at, "")


def test_a_change_counts_only_when_newer_and_a_full_read_also_when_as_new() -> None:
    book = AlarmBook([Want("a", None)])
    assert book.offer(rec("a", "OK", T0)) is True
    assert book.offer(rec("a", "ALARM", T0 + 10 * S)) is True
    assert book.offer(rec("a", "ALARM", T0 + 10 * S)) is False  # repeated
    assert book.offer(rec("a", "OK", T0 + 5 * S)) is False  # late: older than what is known
    assert book.records["a"].state == "ALARM"
    assert book.offer(rec("a", "OK", T0 + 10 * S)) is False  # as new, from an event: the first heard stands
    assert book.offer(rec("a", "OK", T0 + 10 * S), as_new_wins=True) is True  # CloudWatch's own answer wins
    assert book.reading(Want("a", None)) is False


def test_a_full_read_drops_what_it_did_not_find_unless_heard_of_meanwhile() -> None:
    book = AlarmBook([Want(None, "node-"), Want("api", None)])
    assert book.prefixes == ["node-"] and book.names == ["api"] and not book.gone(Want("api", None))
    book.take({n: from_describe(alarm(n)) for n in ("api", "node-1", "node-2")})
    before = set(book.records.items())
    book.offer(rec("node-2", "ALARM", T0 + S))  # heard during the read
    book.offer(rec("node-3", "ALARM", T0 + S))  # a new member, heard during the read
    dropped = book.whole({n: from_describe(alarm(n)) for n in ("node-1",)}, before)
    assert sorted(dropped) == ["api"] and sorted(book.records) == ["node-1", "node-2", "node-3"]
    assert book.gone(Want("api", None)) and not book.gone(Want(None, "node-"))
    assert book.reading(Want(None, "node-")) is True  # any member in ALARM


def test_nested_prefixes_are_asked_once() -> None:
    book = AlarmBook([Want(None, "api-5xx-"), Want(None, "api-"), Want(None, "db-")])
    assert book.prefixes == ["api-", "db-"]
    assert book.wanted("api-5xx-eu") and book.wanted("db-x") and not book.wanted("web")


@pytest.mark.parametrize("n, m, values, verdict", [
    (1, 1, [1, 9], True),  # the newest
    (1, 1, [9, 1], False),
    (3, 2, [9, 1], False),  # fewer than N: M of them (2 of 2 would)
    (3, 2, [9, 9], True),
    (3, 2, [9], True),  # fewer than M: every one of them
    (3, 2, [1], False),
    (3, 2, [9, 9, 1, 1, 9], False),  # the newest 3: 1, 1, 9
    (3, 2, [1, 9, 1, 9, 9], True),
    (3, 2, [], None),
])
def test_values_after_an_action_are_judged_by_the_alarms_own_m_of_n(n: int, m: int, values: list[float],
                                                                     verdict: bool | None) -> None:
    _, shape = from_describe(alarm("a", n=n, m=m))
    # Given out of order: judged by time.
    points = [(T0 + k * 60 * S, float(v)) for k, v in reversed(list(enumerate(values)))]
    assert shape.verdict(points) is verdict


def test_comparisons_and_what_cannot_be_judged() -> None:
    for op, breaching in [("GreaterThanThreshold", [False, False, True]), ("GreaterThanOrEqualToThreshold", [False, True, True]),
                          ("LessThanThreshold", [True, False, False]), ("LessThanOrEqualToThreshold", [True, True, False])]:
        _, shape = from_describe(alarm("a", op=op))
        assert [shape.breaching(v) for v in (4.0, 5.0, 6.0)] == breaching, op
    _, band = from_describe(alarm("a", op="LessThanLowerOrGreaterThanUpperThreshold", ThresholdMetricId="ad1"))
    assert band.breaching(100.0) is None and band.verdict([(T0, 100.0)]) is None and band.queries == ()
    _, math = from_describe(alarm("a", MetricName=None, Metrics=[
        {"Id": "e", "MetricStat": {"Metric": {"Namespace": "Shop", "MetricName": "E"}, "Period": 30, "Stat": "Sum"},
         "ReturnData": False},
        {"Id": "r", "Expression": "e * 2", "ReturnData": True}]))
    assert math.returned == "r" and math.period == 30 and len(math.queries) == 2  # the expression's, its metric's
    _, p99 = from_describe(alarm("a", Statistic=None, ExtendedStatistic="p99", Unit="Milliseconds"))
    assert p99.queries[0]["MetricStat"] == {"Metric": {"Namespace": "Shop", "MetricName": "Errors", "Dimensions": []},
                                            "Period": 60, "Stat": "p99", "Unit": "Milliseconds"}


def test_the_time_of_the_change_is_its_transition_where_cloudwatch_gives_it() -> None:
    record, _ = from_describe(alarm("a", StateTransitionedTimestamp=T0 - 60 * S, at=T0))
    assert record.at == T0 - 60 * S
    est = timezone(timedelta(hours=-5))
    assert from_describe(alarm("a", at=T0.astimezone(est)))[0].at == T0 and from_describe(alarm("a"))[0].at.tzinfo == UTC
    with pytest.raises(ValueError, match="StateValue 'PENDING'"):
        from_describe(alarm("a", state="PENDING"))


def test_an_event_as_eventbridge_sends_it() -> None:
    got = from_event(state_change("pay", "ALARM", T0 + 1500 * timedelta(milliseconds=1), [(T0, 7.0)]))
    assert (got.name, got.state, got.at) == ("pay", "ALARM", T0 + 1500 * timedelta(milliseconds=1))
    assert evaluated(got.reason_data) == [(T0, 7.0)]


@pytest.mark.parametrize("change, why", [
    (lambda e: e.update({"detail-type": "EC2 Instance State-change Notification"}), "not a CloudWatch Alarm State Change"),
    (lambda e: e.update({"source": "aws.ec2"}), "not a CloudWatch Alarm State Change"),
    (lambda e: e.update({"detail": []}), "detail.state: expected an object"),
    (lambda e: e["detail"].update({"alarmName": ""}), "detail.alarmName"),
    (lambda e: e["detail"].update({"alarmName": "x" * 256}), "detail.alarmName"),
    (lambda e: e["detail"]["state"].update({"value": "PENDING"}), "detail.state.value"),
    (lambda e: e["detail"]["state"].update({"timestamp": "yesterday"}), "detail.state.timestamp: not a time"),
    (lambda e: e["detail"]["state"].update({"timestamp": "2024-01-01T00:00:00"}), "expected a time with its zone"),
    (lambda e: e["detail"]["state"].update({"timestamp": 1714560000}), "expected a time with its zone"),
])
def test_a_message_that_is_not_such_an_event_is_refused_naming_the_field(change: Any, why: str) -> None:
    event = json.loads(state_change("pay", "ALARM", T0))
    change(event)
    with pytest.raises(NotAnAlarmEvent, match=why):
        from_event(json.dumps(event))


JSON = st.recursive(st.none() | st.booleans() | st.floats() | st.integers() | st.text(max_size=30),
                    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4),
                    max_leaves=20)


def _event_like(detail: Any) -> str:
    return json.dumps({"source": "aws.cloudwatch", "detail-type": "CloudWatch Alarm State Change", "detail": detail})


@settings(max_examples=300, deadline=None)
@given(st.one_of(JSON.map(json.dumps), JSON.map(_event_like),
                 st.fixed_dictionaries({"alarmName": JSON, "state": st.fixed_dictionaries(
                     {"value": st.sampled_from(["OK", "ALARM", "X"]) | JSON, "timestamp": st.text(max_size=40) | JSON,
                      "reasonData": st.text(max_size=40) | JSON})}).map(_event_like),
                 st.binary(max_size=40).map(lambda b: b.decode("latin-1")), st.none(), st.integers()))
def test_any_message_body_is_an_event_or_refused_in_one_line(body: Any) -> None:
    try:
        got = from_event(body)
    except NotAnAlarmEvent as exc:
        assert "\n" not in str(exc) and len(str(exc)) < 200
    else:
        assert got.state in ("OK", "ALARM", "INSUFFICIENT_DATA") and got.at.tzinfo == UTC and got.name


@settings(max_examples=300, deadline=None)
@given(st.one_of(JSON.map(json.dumps), st.text(max_size=60),
                 st.lists(st.fixed_dictionaries({"timestamp": st.text(max_size=40) | JSON, "value": JSON}),
                          max_size=4).map(lambda pts: json.dumps({"evaluatedDatapoints": pts}))))
def test_any_state_reason_data_gives_datapoints_or_none(text: str) -> None:
    for ts, value in evaluated(text):  # CloudWatch's note, not a contract: what cannot be read is no datapoint
        assert ts.tzinfo == UTC and isinstance(value, float) and value == value


def test_evaluated_datapoints_without_a_value_are_missing_not_zero() -> None:
    data = json.loads(reason_data([(T0, 7.0)]))
    data["evaluatedDatapoints"].append({"timestamp": "2024-05-01T12:01:00.000+0000"})  # missing in that period
    assert evaluated(json.dumps(data)) == [(T0, 7.0)]
