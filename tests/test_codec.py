"""The typed codec: what the state file keeps comes back as exactly what was saved."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from watchdog.state.codec import decode_incident, decode_pause, encode_incident, encode_pause
from watchdog.core.escalation import Incident, LevelRun, Phase, Trigger
from watchdog.core.pause import Pause

# Aware datetimes with microseconds and non-UTC offsets: what the clock and a restored file can hold.
offsets = st.sampled_from([timezone.utc, timezone(timedelta(hours=2)), timezone(timedelta(hours=-5, minutes=-30))])
times = st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1), timezones=offsets)
names = st.text("abcdefghijklmnopqrstuvwxyz-_0123456789", min_size=1, max_size=12)
texts = st.text(max_size=40)  # any unicode: reasons quote values and errors
values = st.one_of(st.none(), st.booleans(), st.floats(allow_nan=False, allow_infinity=False))
triggers = st.builds(Trigger, value=values, threshold=st.sampled_from(["> 1500", "== false", "<= 0.5"]),
                     at=st.none() | times, reason=texts)
runs = st.builds(LevelRun, level=st.integers(1, 9), started=times, reason=texts, finished=st.none() | times,
                 outcome=st.sampled_from([None, "succeeded", "failed"]), detail=texts)
incidents = st.builds(
    Incident, id=names, target=names, opened_at=times, phase=st.sampled_from(list(Phase)), level=st.integers(0, 9),
    trigger=st.dictionaries(names, triggers, max_size=4), watch=st.sets(names, max_size=4),
    actions_ended_at=st.none() | times, verify_due=st.none() | times, blind=st.booleans(),
    runs=st.lists(runs, max_size=4), mitigated_at=st.none() | times, closed_at=st.none() | times,
)


@settings(max_examples=300, deadline=None)
@given(incidents)
def test_an_incident_round_trips_exactly_through_json(inc: Incident) -> None:
    stored = json.loads(json.dumps(encode_incident(inc)))  # what the state file holds is JSON text
    back = decode_incident(stored)
    assert back == inc
    for name, t in back.trigger.items():  # the field that came back as a string before
        assert type(t) is Trigger and (t.at is None or isinstance(t.at, datetime))
        assert type(t.value) is type(inc.trigger[name].value)  # true stays a bool, 1.0 a float
    assert encode_incident(back) == encode_incident(inc)


@settings(max_examples=100, deadline=None)
@given(st.builds(Pause, scope=names | st.just("*"), until=times, reason=texts))
def test_a_pause_round_trips_exactly(pause: Pause) -> None:
    assert decode_pause(json.loads(json.dumps(encode_pause(pause)))) == pause


def test_an_unchanged_incident_encodes_to_the_same_text() -> None:
    inc = Incident("i", "t", datetime(2024, 1, 1, tzinfo=timezone.utc), Phase.RUNNING, watch={"b", "a", "c"})
    assert encode_incident(inc)["watch"] == ["a", "b", "c"]


@pytest.mark.parametrize("damage", [
    lambda d: d.pop("opened_at"),
    lambda d: d.update(phase="sleeping"),
    lambda d: d["runs"].append({"level": "x"}),
    lambda d: d.update(trigger={"r": {"value": 1.0, "threshold": "> 0", "at": "not a time", "reason": ""}}),
])
def test_damaged_data_is_refused_not_half_restored(damage) -> None:
    inc = Incident("i", "t", datetime(2024, 1, 1, tzinfo=timezone.utc), Phase.RUNNING, level=1)
    data = encode_incident(inc)
    damage(data)
    with pytest.raises(ValidationError):
        decode_incident(data)
