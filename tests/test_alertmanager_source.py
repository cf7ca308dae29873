"""The alertmanager source: webhook payloads (Alertmanager's documented version 4
shape) go into the AlertStore; each poll turns "does a matching alert fire now?"
into one boolean reading per rule."""

from __future__ import annotations

import copy
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest

from timing import FakeClock
from watchdog.config.models import Rule
from watchdog.config.schema import rule_model
from watchdog.core.rules import RuleState, evaluate
from watchdog.core.signals import spec_for
from watchdog.sources.alertmanager import Alertmanager, AlertmanagerSource, AlertStore
from watchdog.sources.base import Query

UTC = timezone.utc
T0 = datetime(2024, 1, 1, 12, 0, tzinfo=UTC)
NO_END = "0001-01-01T00:00:00Z"


def alert(
    status: str = "firing",
    fingerprint: str | None = "c6d1fa6b7a3ae0f7",
    ends: str = NO_END,
    starts: str = "2024-01-01T11:58:30.123456789Z",
    **labels: str,
) -> dict[str, Any]:
    labels = labels or {"alertname": "HighErrorRate", "service": "checkout", "severity": "critical", "env": "prod"}
    out: dict[str, Any] = {
        "status": status,
        "labels": labels,
        "annotations": {"summary": "5xx ratio above 5%", "runbook_url": "https://runbooks.example.com/5xx"},
        "startsAt": starts,
        "endsAt": ends,
        "generatorURL": "http://prometheus:9090/graph?g0.expr=job%3Ahttp_5xx%3Aratio5m+%3E+0.05&g0.tab=1",
    }
    if fingerprint is not None:
        out["fingerprint"] = fingerprint
    return out


def payload(*alerts: dict[str, Any]) -> dict[str, Any]:
    """The webhook body as Alertmanager documents it (version 4)."""
    alerts = alerts or (alert(),)
    firing = any(a["status"] == "firing" for a in alerts)
    return {
        "receiver": "rollback-watchdog",
        "status": "firing" if firing else "resolved",
        "alerts": list(alerts),
        "groupLabels": {"alertname": alerts[0]["labels"].get("alertname", "")},
        "commonLabels": {"alertname": alerts[0]["labels"].get("alertname", "")},
        "commonAnnotations": {},
        "externalURL": "http://alertmanager:9093",
        "version": "4",
        "groupKey": '{}/{severity="critical"}:{alertname="HighErrorRate"}',
        "truncatedAlerts": 0,
    }


def rule(name: str = "checkout-5xx", evaluation_periods: int = 1, **matchers: str) -> Rule:
    return rule_model()(
        name=name, category="performance", source="am", evaluation_periods=evaluation_periods,
        alert=matchers or {"alertname": "HighErrorRate", "service": "checkout"},
    )


def source(store: AlertStore, *rules: Rule) -> Alertmanager:
    cfg = AlertmanagerSource(name="am", type="alertmanager")
    return Alertmanager(cfg, [Query(f"shop/{r.name}", r) for r in (rules or (rule(),))], store)


async def reading(src: Alertmanager, now: datetime, key: str = "shop/checkout-5xx") -> bool | float:
    points = await src.poll(now)
    ts, value = points[key][-1]
    assert ts == now
    return value


# --- the store and the source together ---------------------------------------


async def test_before_the_first_push_there_is_no_reading_and_no_error() -> None:
    """The store is not kept across restarts: until Alertmanager speaks, "not firing" would be a guess."""
    store = AlertStore(FakeClock())
    src = source(store)
    await src.start()
    assert src.sampled is True and src.name == "am" and src.interval == timedelta(seconds=15)
    assert (await src.poll(T0)) == {"shop/checkout-5xx": []}
    assert store.last_received is None
    store.receive(payload(alert("resolved", ends="2024-01-01T11:59:00Z")))  # anything received: now we know
    assert await reading(src, T0 + timedelta(seconds=15)) is False
    await src.close()


async def test_a_firing_alert_not_resent_within_the_ttl_is_no_evidence() -> None:
    clock = FakeClock()
    store = AlertStore(clock)
    src = source(store)
    store.receive(payload(alert()))
    assert await reading(src, T0 + timedelta(hours=4)) is True
    # Its `resolved` was lost: 4h30m later it is neither firing nor not firing.
    points = await src.poll(T0 + timedelta(hours=4, minutes=31))
    assert points["shop/checkout-5xx"][-1][0] == T0 + timedelta(hours=4)  # no new reading
    clock.advance(seconds=4 * 3600 + 32 * 60)
    store.receive(payload(alert()))  # re-sent: evidence again
    assert await reading(src, T0 + timedelta(hours=4, minutes=33)) is True


async def test_a_burst_of_pushes_keeps_one_reading_per_interval() -> None:
    store = AlertStore(FakeClock())
    src = source(store, rule(evaluation_periods=3))
    store.receive(payload(alert()))
    for k in range(3):  # three intervals, each with six pushes (six polls)
        for j in range(6):
            await src.poll(T0 + timedelta(seconds=15 * k + j))
    points = (await src.poll(T0 + timedelta(seconds=30, milliseconds=500)))["shop/checkout-5xx"]
    # One per 15 s bucket, the newest poll in each; without that, 18 polls would have kept only the last 5.
    assert [ts for ts, _ in points] == [T0 + timedelta(seconds=5), T0 + timedelta(seconds=20),
                                        T0 + timedelta(seconds=30, milliseconds=500)]


async def test_firing_then_resolved() -> None:
    clock = FakeClock()
    store = AlertStore(clock)
    src = source(store)
    assert store.receive(payload(alert())) == 1
    assert store.last_received == T0
    assert await reading(src, T0 + timedelta(seconds=15)) is True

    clock.advance(seconds=60)
    store.receive(payload(alert("resolved", ends="2024-01-01T12:00:58Z")))
    assert store.last_received == T0 + timedelta(seconds=60)
    assert await reading(src, T0 + timedelta(seconds=75)) is False
    assert len(store) == 0


async def test_resolved_without_fingerprint_matches_by_labels() -> None:
    store = AlertStore(FakeClock())
    src = source(store)
    store.receive(payload(alert(fingerprint=None)))
    assert await reading(src, T0) is True
    # Same labels in another order: the same alert.
    labels = {"env": "prod", "severity": "critical", "service": "checkout", "alertname": "HighErrorRate"}
    store.receive(payload(alert("resolved", fingerprint=None, ends="2024-01-01T12:00:00Z", **labels)))
    assert await reading(src, T0) is False


def test_fingerprint_names_the_alert_when_present() -> None:
    store = AlertStore(FakeClock())
    store.receive(payload(alert(fingerprint="f1", alertname="A", instance="10.0.0.1")))
    store.receive(payload(alert(fingerprint="f2", alertname="A", instance="10.0.0.1")))
    assert len(store.firing({"alertname": "A"}, T0)) == 2  # same labels, two fingerprints: two alerts
    store.receive(payload(alert("resolved", fingerprint="f1", ends="2024-01-01T12:00:00Z", alertname="A")))
    assert len(store.firing({"alertname": "A"}, T0)) == 1


async def test_ends_at_in_the_past_is_no_longer_firing() -> None:
    store = AlertStore(FakeClock())
    src = source(store)
    store.receive(payload(alert(ends="2024-01-01T12:04:00Z")))
    assert await reading(src, T0 + timedelta(minutes=3)) is True
    # Alertmanager stopped re-sending it: it lapses at endsAt without a "resolved".
    assert await reading(src, T0 + timedelta(minutes=4)) is False
    assert await reading(src, T0 + timedelta(minutes=5)) is False


async def test_re_sent_alert_moves_its_end() -> None:
    store = AlertStore(FakeClock())
    src = source(store)
    store.receive(payload(alert(ends="2024-01-01T12:04:00Z")))
    store.receive(payload(alert(ends="2024-01-01T12:10:00+00:00")))
    assert await reading(src, T0 + timedelta(minutes=5)) is True
    store.receive(payload(alert()))  # back to "no end"
    assert await reading(src, T0 + timedelta(hours=4)) is True  # within the re-send TTL


async def test_timestamps_with_nanoseconds_and_offsets() -> None:
    store = AlertStore(FakeClock())
    # 12:04:00.5 in UTC, written as +02:00 with nine fractional digits.
    store.receive(payload(alert(ends="2024-01-01T14:04:00.500000001+02:00")))
    assert store.firing({"service": "checkout"}, T0 + timedelta(minutes=4, seconds=0.4))
    assert not store.firing({"service": "checkout"}, T0 + timedelta(minutes=4, seconds=0.6))


# --- label matching ----------------------------------------------------------


def test_matchers_are_exact_and_a_subset_of_the_labels() -> None:
    store = AlertStore(FakeClock())
    store.receive(payload(alert()))
    labels = {"alertname": "HighErrorRate", "service": "checkout", "severity": "critical", "env": "prod"}
    assert store.firing({"alertname": "HighErrorRate"}, T0) == [labels]
    assert store.firing({"service": "checkout", "env": "prod"}, T0) == [labels]
    assert store.firing(labels, T0) == [labels]
    assert store.firing({"service": "check"}, T0) == []  # no prefix match
    assert store.firing({"service": "Checkout"}, T0) == []  # case matters
    assert store.firing({"service": "checkout", "env": "staging"}, T0) == []  # every matcher must hold
    assert store.firing({"team": "payments"}, T0) == []  # a label the alert lacks
    assert store.firing({}, T0) == [labels]  # no matcher: any firing alert


def test_firing_returns_copies() -> None:
    store = AlertStore(FakeClock())
    store.receive(payload(alert()))
    store.firing({}, T0)[0]["service"] = "changed"
    assert store.firing({"service": "checkout"}, T0)


async def test_several_alerts_several_rules() -> None:
    store = AlertStore(FakeClock())
    r_checkout = rule("checkout-5xx", alertname="HighErrorRate", service="checkout")
    r_search = rule("search-5xx", alertname="HighErrorRate", service="search")
    r_disk = rule("disk", alertname="DiskFull")
    src = source(store, r_checkout, r_search, r_disk)
    body = payload(
        alert(fingerprint="aaaa", alertname="HighErrorRate", service="checkout", instance="10.0.0.1:8080"),
        alert(fingerprint="bbbb", alertname="HighErrorRate", service="checkout", instance="10.0.0.2:8080"),
        alert(fingerprint="cccc", alertname="HighErrorRate", service="search", instance="10.0.1.1:8080"),
    )
    assert store.receive(body) == 3
    points = await src.poll(T0)
    assert {k: v[-1][1] for k, v in points.items()} == {"shop/checkout-5xx": True, "shop/search-5xx": True, "shop/disk": False}
    assert len(store.firing({"service": "checkout"}, T0)) == 2

    # One checkout instance recovers: the rule still fires on the other.
    store.receive(payload(alert("resolved", fingerprint="aaaa", ends="2024-01-01T12:01:00Z",
                                alertname="HighErrorRate", service="checkout", instance="10.0.0.1:8080"),
                          alert("resolved", fingerprint="cccc", ends="2024-01-01T12:01:00Z",
                                alertname="HighErrorRate", service="search", instance="10.0.1.1:8080")))
    points = await src.poll(T0 + timedelta(minutes=1))
    assert {k: v[-1][1] for k, v in points.items()} == {"shop/checkout-5xx": True, "shop/search-5xx": False, "shop/disk": False}

    store.receive(payload(alert("resolved", fingerprint="bbbb", ends="2024-01-01T12:02:00Z",
                                alertname="HighErrorRate", service="checkout", instance="10.0.0.2:8080")))
    assert await reading(src, T0 + timedelta(minutes=2)) is False


async def test_history_is_stamped_and_bounded() -> None:
    store = AlertStore(FakeClock())
    src = source(store, rule(evaluation_periods=3))
    store.receive(payload(alert("resolved", ends="2024-01-01T11:59:00Z")))  # Alertmanager has spoken
    times = [T0 + timedelta(seconds=15 * i) for i in range(10)]
    for i, t in enumerate(times):
        if i == 6:
            store.receive(payload(alert()))
        points = await src.poll(t)
    kept = points["shop/checkout-5xx"]
    assert kept == [(t, i >= 6) for i, t in enumerate(times)][-7:]  # the evaluation range (N + 2) + 2


async def test_alert_rule_alarms_while_firing_and_recovers() -> None:
    """The readings through the real rule evaluation: `== true` by default."""
    store = AlertStore(FakeClock())
    r = rule(evaluation_periods=2)
    src = source(store, r)
    spec = spec_for(r, sampled=True, interval_s=15)
    polls = [T0 + timedelta(seconds=15 * i) for i in range(5)]
    store.receive(payload(alert("resolved", ends="2024-01-01T11:59:00Z")))  # Alertmanager has spoken
    points = (await src.poll(polls[0]))["shop/checkout-5xx"]
    assert evaluate(spec, points, polls[0]).state is RuleState.OK
    store.receive(payload(alert()))
    for t in polls[1:3]:
        points = (await src.poll(t))["shop/checkout-5xx"]
    assert evaluate(spec, points, polls[2]).state is RuleState.ALARM
    store.receive(payload(alert("resolved", ends="2024-01-01T12:00:40Z")))
    points = (await src.poll(polls[3]))["shop/checkout-5xx"]
    assert evaluate(spec, points, polls[3]).state is RuleState.OK  # 1 of 2 breach: below M


# --- invalid payloads ----------------------------------------------------------


def _broken(change: Any) -> Any:
    body = payload(alert(), alert(fingerprint="dddd", service="search"))
    change(body)
    return body


def _set(path: list[Any], value: Any) -> Any:
    def change(body: Any) -> None:
        cur = body
        for p in path[:-1]:
            cur = cur[p]
        if value is KeyError:
            del cur[path[-1]]
        else:
            cur[path[-1]] = value
    return change


@pytest.mark.parametrize(
    "body, field",
    [
        ([payload()], "payload"),
        ("firing", "payload"),
        (None, "payload"),
        (_broken(_set(["version"], "3")), "version"),
        (_broken(_set(["version"], 4)), "version"),
        (_broken(_set(["version"], KeyError)), "version"),
        (_broken(_set(["status"], "pending")), "status"),
        (_broken(_set(["alerts"], {"0": alert()})), "alerts"),
        (_broken(_set(["alerts"], KeyError)), "alerts"),
        (_broken(_set(["alerts", 1], "HighErrorRate")), "alerts[1]"),
        (_broken(_set(["alerts", 1, "labels"], KeyError)), "alerts[1].labels"),
        (_broken(_set(["alerts", 1, "labels"], ["alertname=x"])), "alerts[1].labels"),
        (_broken(_set(["alerts", 1, "labels", "port"], 8080)), "alerts[1].labels"),
        (_broken(_set(["alerts", 1, "status"], "pending")), "alerts[1].status"),
        (_broken(_set(["alerts", 1, "status"], KeyError)), "alerts[1].status"),
        (_broken(_set(["alerts", 1, "startsAt"], "yesterday")), "alerts[1].startsAt"),
        (_broken(_set(["alerts", 1, "startsAt"], KeyError)), "alerts[1].startsAt"),
        (_broken(_set(["alerts", 1, "endsAt"], "2024-01-01 12:00:00")), "alerts[1].endsAt"),  # no zone
        (_broken(_set(["alerts", 1, "endsAt"], "20240101T120000Z")), "alerts[1].endsAt"),
        (_broken(_set(["alerts", 1, "endsAt"], "2024-02-30T12:00:00Z")), "alerts[1].endsAt"),
        (_broken(_set(["alerts", 1, "endsAt"], 1704110400)), "alerts[1].endsAt"),
        (_broken(_set(["alerts", 1, "fingerprint"], 12345)), "alerts[1].fingerprint"),
    ],
)
def test_invalid_payload_is_refused_naming_the_field(body: Any, field: str) -> None:
    store = AlertStore(FakeClock())
    with pytest.raises(ValueError) as info:
        store.receive(body)
    message = str(info.value)
    assert message.startswith(f"{field}:"), message
    assert "\n" not in message
    # Nothing of it is kept, not even the valid alert before the broken one.
    assert len(store) == 0 and store.last_received is None


def test_refused_payload_leaves_earlier_alerts_alone() -> None:
    store = AlertStore(FakeClock())
    store.receive(payload(alert()))
    bad = payload(alert("resolved", ends="2024-01-01T12:00:00Z"), alert(fingerprint="x", status="unknown"))
    with pytest.raises(ValueError, match=r"alerts\[1\]\.status"):
        store.receive(bad)
    assert store.firing({"service": "checkout"}, T0)


def test_empty_alert_list_is_accepted() -> None:
    store = AlertStore(FakeClock())
    body = copy.deepcopy(payload())
    body["alerts"] = []
    assert store.receive(body) == 0
    assert store.last_received == T0


# --- memory ------------------------------------------------------------------


def test_memory_is_capped_oldest_dropped_first() -> None:
    clock = FakeClock()
    store = AlertStore(clock, limit=3)
    for i in range(3):
        store.receive(payload(alert(fingerprint=f"f{i}", alertname="A", n=str(i))))
    store.receive(payload(alert(fingerprint="f0", alertname="A", n="0")))  # re-sent: now the newest
    store.receive(payload(alert(fingerprint="f3", alertname="A", n="3")))
    assert len(store) == 3
    assert sorted(a["n"] for a in store.firing({"alertname": "A"}, T0)) == ["0", "2", "3"]


def test_memory_cap_drops_lapsed_alerts_before_live_ones() -> None:
    clock = FakeClock()
    store = AlertStore(clock, limit=3)
    store.receive(payload(alert(fingerprint="live", alertname="A", n="live")))
    store.receive(payload(alert(fingerprint="lapsed", alertname="A", n="lapsed", ends="2024-01-01T12:01:00Z")))
    store.receive(payload(alert(fingerprint="f2", alertname="A", n="2")))
    clock.advance(seconds=120)
    store.receive(payload(alert(fingerprint="f3", alertname="A", n="3")))
    assert sorted(a["n"] for a in store.firing({"alertname": "A"}, clock.now())) == ["2", "3", "live"]


def test_default_cap_holds_ten_thousand() -> None:
    store = AlertStore(FakeClock())
    body = payload(*(alert(fingerprint=f"f{i}", alertname="Flood", n=str(i)) for i in range(10_050)))
    assert store.receive(body) == 10_050
    assert len(store) == 10_000
    names = {a["n"] for a in store.firing({"alertname": "Flood"}, T0)}
    assert "0" not in names and "49" not in names and "50" in names and "10049" in names


# --- wiring ------------------------------------------------------------------


def test_registry_builds_the_source_on_the_shared_store() -> None:
    from watchdog.sources import SourceDeps, build_source

    store = AlertStore(FakeClock())
    deps = SourceDeps(aws=None, session=None, metrics=None, alerts=store)  # type: ignore[arg-type]
    cfg = AlertmanagerSource(name="am", type="alertmanager")
    src = build_source(cfg, [Query("shop/r", rule())], deps)
    assert isinstance(src, Alertmanager)
    store.receive(payload(alert()))
    assert src._alerts.firing({"service": "checkout"}, T0)  # reads the store it was given
