"""The watchdog's own Prometheus metrics (SPEC 3.4), on a registry it is given.

Labels are bounded: target, rule, source, level, outcome and channel all come
from the configuration or fixed vocabularies; incident ids and error texts
never become labels.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.samples import Sample
from prometheus_client.exposition import generate_latest

from watchdog import __version__

_POLL_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)
_ROLLBACK_BUCKETS = (0.1, 0.5, 1, 5, 15, 30, 60, 120, 300, 600, 1200)


class Metrics:
    def __init__(self, registry: CollectorRegistry | None = None):
        r = self.registry = registry or CollectorRegistry(auto_describe=True)
        self.build_info = Info("watchdog_build", "Version of the running watchdog.", registry=r)
        self.build_info.info({"version": __version__})
        self.rule_series = RuleSeries()  # watchdog_rule_state and watchdog_rule_value
        r.register(self.rule_series)
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

        # Several watchdogs on one shared state (SPEC 4.5, watchdog/state/peering.py).
        self.lease_held = Gauge(
            "watchdog_lease_held", "1 while this watchdog holds the target's lease and may act for it (SPEC 4.5).",
            ["target"], registry=r,
        )
        self.lease_takeovers = Counter(
            "watchdog_lease_takeovers_total",
            "Leases this watchdog took over from a holder that stopped renewing them.", ["target"], registry=r,
        )
        self.fenced = Counter(
            "watchdog_fenced_total",
            "Actions not started because this watchdog no longer held the target's lease (fenced off).",
            ["target"], registry=r,
        )
        self.lease_rounds_failed = Counter(
            "watchdog_lease_rounds_failed_total", "Lease rounds that could not read or write the shared table.",
            registry=r,
        )

    def expose(self) -> bytes:
        return generate_latest(self.registry)


# A rule's last judgement as its series show it: target, rule, category, state, value (None: no value series).
Judged = tuple[str, str, str, int, float | None]


class RuleSeries:
    """The per-rule series, `watchdog_rule_state{target,rule,category}` and `watchdog_rule_value{target,rule}`,
    read from the rules' last judgements when scraped (`read_from`: the runtime's board), not written at every
    poll: a rule judged at every poll and scraped now and then was a record call per rule and poll, a twentieth
    of a 1 000-rule poll's CPU (bench/README.md), for nobody. Before that they were two prometheus-client
    children a rule, a lock per `set` and ~0.7 KB each (3.3 MB at 5 000 rules). Whatever rules the reader
    yields are those shown: after a reload, the rules the new config holds, under their categories now."""

    _STATE = ("watchdog_rule_state", "Rule state: 0 ok, 1 alarm, 2 insufficient_data.")
    _VALUE = ("watchdog_rule_value", "Newest datapoint value a rule judged (booleans as 0/1).")

    def __init__(self) -> None:
        self._read: Callable[[], Iterable[Judged]] = tuple  # no rules until the runtime names its board

    def read_from(self, judged: Callable[[], Iterable[Judged]]) -> None:
        """Where a scrape reads the rules from: called once per family at each scrape, from its thread."""
        self._read = judged

    def describe(self) -> Iterator[Metric]:
        yield GaugeMetricFamily(*self._STATE, labels=["target", "rule", "category"])
        yield GaugeMetricFamily(*self._VALUE, labels=["target", "rule"])

    def collect(self) -> Iterator[Metric]:
        # Each family walks the rules as the exposition writes it (a sample made at a time); a reload between
        # the two walks shows each family whole, of the config it walked.
        yield _Streamed(*self._STATE, self._states())
        yield _Streamed(*self._VALUE, self._values())

    def _states(self) -> Iterator[Sample]:
        name = self._STATE[0]
        for target, rule, category, state, _ in self._read():
            yield Sample(name, {"target": target, "rule": rule, "category": category}, state)

    def _values(self) -> Iterator[Sample]:
        name = self._VALUE[0]
        for target, rule, _, _, value in self._read():
            if value is not None:
                yield Sample(name, {"target": target, "rule": rule}, value)


class _Streamed(Metric):
    """A gauge family whose samples are made one at a time as the exposition writes them (it walks them once),
    not listed first: at 5 000 rules the two families' 10 000 samples, a tuple and a labels dict each, raised
    every scrape's peak by about 3 MB."""

    def __init__(self, name: str, documentation: str, samples: Iterable[Sample]):
        super().__init__(name, documentation, "gauge")
        self.samples = samples  # type: ignore[assignment]  # prometheus_client types it a list; it reads it once
