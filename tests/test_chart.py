"""The one chart module (watchdog/views/chart.py) the status page and the replay report draw with: time
ticks that suit the span, bands where they start, judged buckets, a long series kept visible, and every
text escaped. Positions are derived by hand from the default frame: the plot runs from x = 64 to 944."""

from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone

from hypothesis import given, settings
from hypothesis import strategies as st

from test_replay_report import Elements
from watchdog.views.chart import Band, Bucket, Chart, Marker, Threshold, svg, time_ticks

T0 = datetime(2026, 11, 28, 12, 0, 0, tzinfo=timezone.utc)


def parsed(text: str) -> Elements:
    t = Elements()
    t.feed(text)
    return t


def test_a_minute_is_ticked_in_seconds() -> None:
    ticks = time_ticks(T0 + timedelta(seconds=3), T0 + timedelta(seconds=63))
    # 60 s over at most 7 ticks: every 10 s, from the first round 10 s on.
    assert [text for _, text in ticks] == ["12:00:10", "12:00:20", "12:00:30", "12:00:40", "12:00:50",
                                           "12:01:00"]


def test_a_day_is_ticked_in_hours_and_a_week_in_dates() -> None:
    day = time_ticks(T0, T0 + timedelta(days=1))
    assert [text for _, text in day] == ["12:00", "18:00", "00:00", "06:00", "12:00"]  # every 6 h
    week = time_ticks(T0, T0 + timedelta(days=7))
    assert [text for _, text in week] == ["11-29", "11-30", "12-01", "12-02", "12-03", "12-04", "12-05"]
    two_days = time_ticks(T0, T0 + timedelta(days=2))
    assert [text for _, text in two_days] == ["11-28 12:00", "11-29 00:00", "11-29 12:00", "11-30 00:00",
                                              "11-30 12:00"]  # every 12 h (6 h would be 8 ticks), dated


def test_the_alarm_band_starts_where_the_rule_went_into_alarm() -> None:
    c = Chart(series=[(T0, 1.0), (T0 + timedelta(seconds=60), 3.0)], start=T0, end=T0 + timedelta(seconds=60),
              threshold=Threshold(2.0, "> 2"), bands=[Band(T0 + timedelta(seconds=30), T0 + timedelta(seconds=45))])
    band = parsed(svg(c)).of("rect", "alarm-band")
    assert len(band) == 1
    assert (band[0]["x"], band[0]["width"]) == ("504.0", "220.0")  # 64 + 880 * 30/60, 880 * 15/60


def test_the_threshold_line_and_judged_buckets_are_drawn_where_they_belong() -> None:
    # Values 0..4 and threshold 3: the y range is 0..4, the plot 142 high from y = 14.
    series = [(T0 + timedelta(minutes=k), float(k)) for k in range(5)]
    judged = [Bucket(T0 + timedelta(minutes=2), T0 + timedelta(minutes=3), False, 2.0),
              Bucket(T0 + timedelta(minutes=3), T0 + timedelta(minutes=4), True, None, filled=True),
              Bucket(T0 + timedelta(minutes=3), T0 + timedelta(minutes=4), True, 4.0)]
    t = parsed(svg(Chart(series, T0, T0 + timedelta(minutes=4), Threshold(3.0, "> 3"), judged=judged)))
    line = t.of("line", "threshold")[0]
    assert line["y1"] == line["y2"] == "49.5"  # 14 + 142 * (1 - 3/4)
    assert len(t.of("rect", "bucket")) == 3 and len(t.of("rect", "filled")) == 1
    assert len(t.of("circle", "breach")) == 1 and len(t.of("circle", "fine")) == 1  # no dot for a filled gap
    assert t.of("circle", "breach")[0]["cy"] == "14.0"  # 4.0 is the top of the range


def test_a_one_bucket_spike_in_a_week_of_minutes_still_shows() -> None:
    series = [(T0 + timedelta(minutes=k), 100.0) for k in range(7 * 24 * 60)]
    series[5000] = (series[5000][0], 9000.0)
    out = svg(Chart(series, T0, T0 + timedelta(days=7), Threshold(1500.0, "> 1500")))
    points = parsed(out).of("polyline", "values")[0]["points"] or ""
    ys = [float(p.split(",")[1]) for p in points.split()]
    assert len(ys) <= 2 * 440 + 2 and min(ys) == 14.0  # drawn per column, the spike at the top
    assert len(out) < 40_000


@settings(max_examples=60, deadline=None)
@given(st.text(min_size=1, max_size=40))
def test_every_text_is_escaped(text: str) -> None:
    c = Chart([(T0, 1.0)], T0, T0 + timedelta(minutes=1), Threshold(1.0, text), bands=[Band(T0, T0, text)],
              markers=[Marker(T0, text)], title=text, data={"rule": text})
    out = svg(c)
    tags = parsed(out).found
    assert {tag for tag, _ in tags} <= {"svg", "title", "rect", "line", "text", "polyline", "circle"}
    assert all(a.get("data-rule") in (None, text) for tag, a in tags if tag == "svg")


def test_a_hostile_rule_name_is_text() -> None:
    name = "<img src=x onerror=alert(1)>"
    out = svg(Chart([(T0, 1.0)], T0, T0 + timedelta(minutes=1), Threshold(1.0, "> 1"), title=name,
                    data={"rule": name}, markers=[Marker(T0, name)]))
    assert "<img" not in out and re.search(r"&lt;img src=x onerror=alert\(1\)&gt;", out)
    assert [t for t, _ in parsed(out).found].count("img") == 0
