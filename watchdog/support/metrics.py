"""The watchdog's own Prometheus metrics (SPEC 3.4), on a registry it is given.

Labels are bounded: target, rule, source, level, outcome and channel all come
from the configuration or fixed vocabularies; incident ids and error texts
never become labels.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info
from prometheus_client.exposition import generate_latest

from watchdog import __version__

if TYPE_CHECKING:
    from watchdog.config.models import Config

_POLL_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)
_ROLLBACK_BUCKETS = (0.1, 0.5, 1, 5, 15, 30, 60, 120, 300, 600, 1200)


class Metrics:
    def __init__(self, registry: CollectorRegistry | None = None):
        r = self.registry = registry or CollectorRegistry(auto_describe=True)
        self.build_info = Info("watchdog_build", "Version of the running watchdog.", registry=r)
        self.build_info.info({"version": __version__})
        self.rule_state = Gauge(
            "watchdog_rule_state", "Rule state: 0 ok, 1 alarm, 2 insufficient_data.",
            ["target", "rule", "category"], registry=r,
        )
        self.rule_value = Gauge(
            "watchdog_rule_value", "Newest datapoint value a rule judged (booleans as 0/1).",
            ["target", "rule"], registry=r,
        )
        self.source_up = Gauge("watchdog_source_up", "1 if the source's last poll succeeded.", ["source"], registry=r)
        self.source_poll_duration = Histogram(
            "watchdog_source_poll_duration_seconds", "Time one poll of a source took, retries included.",
            ["source"], buckets=_POLL_BUCKETS, registry=r,
        )
        self.source_errors = Counter(
            "watchdog_source_errors_total", "Polls of a source that failed after retries.", ["source"], registry=r
        )
        self.cloudwatch_requests = Counter(
            "watchdog_cloudwatch_requests_total", "GetMetricData calls made (each one is billed).", registry=r
        )
        self.cloudwatch_metrics_requested = Counter(
            "watchdog_cloudwatch_metrics_requested_total", "Metric queries sent in GetMetricData calls (billed per metric).",
            registry=r,
        )
        self.alarm_source_requests = Counter(
            "watchdog_cloudwatch_alarms_requests_total",
            "Requests a cloudwatch_alarms source sent, by API (DescribeAlarms, GetMetricData, GetQueueAttributes, "
            "ReceiveMessage, DeleteMessage), retries included.", ["source", "api"], registry=r,
        )
        # What the configured polling will cost per 30 days at list price (watchdog/sources/cost.py, docs/cost.md):
        # the contract name holds the total, with no label; each billed source has its own series beside it.
        self.projected_cost = Gauge(
            "watchdog_cloudwatch_projected_monthly_cost_dollars",
            "Projected dollars per 30 days of every source's billed AWS requests at list price (GetMetricData "
            "metrics, DescribeAlarms, SQS, Cost Explorer), as the current schedule makes them.", registry=r,
        )
        self.source_projected_cost = Gauge(
            "watchdog_source_projected_monthly_cost_dollars",
            "The same, per billed source (they add up to watchdog_cloudwatch_projected_monthly_cost_dollars).",
            ["source"], registry=r,
        )
        self.target_level = Gauge(
            "watchdog_target_level", "Rollback level a target is at (0 = normal).", ["target"], registry=r
        )
        self.rollbacks = Counter(
            "watchdog_rollbacks_total", "Level runs by outcome: succeeded, failed, dry_run, skipped.",
            ["target", "level", "outcome"], registry=r,
        )
        self.rollback_duration = Histogram(
            "watchdog_rollback_duration_seconds", "Time a level's actions took, retries included.",
            ["target", "level"], buckets=_ROLLBACK_BUCKETS, registry=r,
        )
        self.action_attempts = Counter(
            "watchdog_action_attempts_total", "Single attempts of rollback actions by outcome.",
            ["target", "level", "outcome"], registry=r,
        )
        self.incidents_open = Gauge("watchdog_incidents_open", "Open incidents per target (0 or 1).", ["target"], registry=r)
        self.notifications = Counter(
            "watchdog_notifications_total",
            "Notification deliveries by channel and outcome: sent, failed (one attempt), dead (given up).",
            ["channel", "outcome"], registry=r,
        )
        self.notifications_pending = Gauge(
            "watchdog_notifications_pending", "Messages waiting in the outbox per channel.", ["channel"], registry=r,
        )
        self.paused = Gauge("watchdog_paused", "1 while automatic actions are paused globally.", registry=r)
        self.last_evaluation = Gauge(
            "watchdog_last_evaluation_timestamp_seconds", "Unix time of the last rule evaluation.", registry=r
        )
        self.target_exhausted = Gauge(
            "watchdog_target_exhausted",
            "1 while a target's incident is exhausted: no level left or the circuit breaker open; a human must act.",
            ["target"], registry=r,
        )
        self.target_blind = Gauge(
            "watchdog_target_blind", "1 while a target's verification has no fresh data (a human is paged).",
            ["target"], registry=r,
        )
        self.state_writable = Gauge(
            "watchdog_state_writable",
            "0 while writes to the state file fail (no action runs until its intent lands; a human is paged).",
            registry=r,
        )
        # The HTTP face under a flood (watchdog/http/server.py): what it holds and what it had to close.
        self.http_connections_open = Gauge(
            "watchdog_http_connections_open", "Inbound HTTP connections open now.", registry=r,
        )
        self.http_connections_rejected = Counter(
            "watchdog_http_connections_rejected_total",
            "Inbound HTTP connections the server closed to protect itself, by reason.",
            ["reason"], registry=r,
        )
        # The poll recording (watchdog/runtime/recording.py): lines that could not be queued or written.
        self.recording_lines_dropped = Counter(
            "watchdog_recording_lines_dropped_total",
            "Poll lines the recording dropped (its queue was full or its file could not be written).",
            registry=r,
        )

    def expose(self) -> bytes:
        return generate_latest(self.registry)


def rule_labels(cfg: Config) -> set[tuple[str, str, str]]:
    """(target, rule, category) of every rule a Config holds."""
    return {(t.name, r.name, r.category) for t in cfg.targets for r in t.rules}


class RuleSeries:
    """The per-rule series (state, value), each child looked up once: `labels()` for every rule on every
    poll was 5 % of a poll's CPU at 1 000 rules. `keep` after a reload removes the series of rules that are
    gone (or changed category), which would otherwise report their last state forever."""

    def __init__(self, metrics: Metrics):
        self._m = metrics
        # Per rule: its category, its state child and the state it was last set to; its value child and the
        # value last set. A judgement that changes neither is not set again (prometheus-client takes a lock
        # per `set`): `record` 0.9 -> 0.2 µs when nothing changed, 0.6 when only the value did (timeit, CPU).
        self._state: dict[tuple[str, str], tuple[str, Any, int]] = {}
        self._value: dict[tuple[str, str], tuple[Any, float]] = {}

    def record(self, target: str, rule: str, category: str, state: int, value: float | None) -> None:
        key = (target, rule)
        held = self._state.get(key)
        if held is None or held[0] != category:
            if held is not None:  # a reload changed its category: one series per rule, never two
                self._m.rule_state.remove(target, rule, held[0])
            child = self._m.rule_state.labels(target, rule, category)
            child.set(state)
            self._state[key] = (category, child, state)
        elif held[2] != state:
            held[1].set(state)
            self._state[key] = (category, held[1], state)
        if value is None:  # no value now: a stale number would look like a reading
            if self._value.pop(key, None) is not None:
                self._m.rule_value.remove(target, rule)
            return
        shown = self._value.get(key)
        # A zero is set again: 0.0 == -0.0, but the exposition tells them apart; a NaN is never equal.
        if shown is None or shown[1] != value or value == 0:
            child = self._m.rule_value.labels(target, rule) if shown is None else shown[0]
            child.set(value)
            self._value[key] = (child, value)

    def keep(self, rules: set[tuple[str, str, str]]) -> None:
        """Only these (target, rule, category) remain exported; new ones start as insufficient_data (2)."""
        for (target, rule), (category, _, _) in list(self._state.items()):
            if (target, rule, category) not in rules:
                self._m.rule_state.remove(target, rule, category)
                del self._state[target, rule]
                if self._value.pop((target, rule), None) is not None:
                    self._m.rule_value.remove(target, rule)
        for target, rule, category in rules:
            if (target, rule) not in self._state:
                self.record(target, rule, category, 2, None)
