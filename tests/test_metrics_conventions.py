"""Metric conventions (SPEC 3.4): HELP on everything, units in names, no unbounded label values."""

from __future__ import annotations

from watchdog.support.metrics import Metrics

# Every label a metric may carry; each is bounded by the configuration (targets, rules, sources,
# channels, levels) or by the code (outcomes, categories). Incident ids and error texts are not.
BOUNDED = {"target", "rule", "category", "source", "level", "outcome", "channel", "version"}


def test_every_metric_has_help_a_known_type_and_only_bounded_labels() -> None:
    m = Metrics()
    families = list(m.registry.collect())
    names = {f.name for f in families}
    assert {"watchdog_rule_state", "watchdog_target_level", "watchdog_rollbacks", "watchdog_notifications",
            "watchdog_source_poll_duration_seconds", "watchdog_last_evaluation_timestamp_seconds"} <= names
    for fam in families:
        assert fam.name.startswith("watchdog_"), fam.name
        assert fam.documentation and len(fam.documentation) > 10, f"{fam.name} has no HELP"
        assert fam.type in {"counter", "gauge", "histogram", "info"}, (fam.name, fam.type)
        if fam.type == "histogram":
            assert fam.name.endswith("_seconds"), f"{fam.name}: a duration histogram names its unit"
        if "timestamp" in fam.name:
            assert fam.name.endswith("_seconds"), fam.name
    # Touch every labelled metric, then look at the label names of every sample.
    m.rule_series.read_from(lambda: [("t", "r", "performance", 1, 2.5)])
    m.rollbacks.labels("t", "1", "succeeded").inc()
    m.notifications.labels("slack", "sent").inc()
    m.source_poll_duration.labels("cw").observe(0.1)
    for fam in m.registry.collect():
        for sample in fam.samples:
            extra = set(sample.labels) - BOUNDED - {"le"}
            assert not extra, f"{sample.name} carries unbounded-looking labels {extra}"


def test_rule_series_show_the_rules_judged_now_and_nothing_kept_from_before() -> None:
    """A scrape shows the rules as the reader gives them now (the board, after a reload the new one): a rule whose
    category a reload changed has one series, under its new category, and a value only while it has one."""
    m = Metrics()
    judged = [("web", "r", "cost", 1, 5.0)]
    m.rule_series.read_from(lambda: judged)
    assert m.registry.get_sample_value("watchdog_rule_state", {"target": "web", "rule": "r", "category": "cost"}) == 1
    judged = [("web", "r", "security", 0, 4.0)]
    got = [(s.labels["category"], s.value) for f in m.registry.collect() for s in f.samples
           if s.name == "watchdog_rule_state"]
    assert got == [("security", 0.0)]
    assert m.registry.get_sample_value("watchdog_rule_value", {"target": "web", "rule": "r"}) == 4.0
    judged = [("web", "r", "security", 2, None)]
    assert m.registry.get_sample_value("watchdog_rule_value", {"target": "web", "rule": "r"}) is None
