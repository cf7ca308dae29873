"""/metrics' per-rule series (support/metrics.py RuleSeries): written out as the scrape walks them, and a reload
that changes the rules while a scrape (in a thread, http/web.py) is walking them neither breaks the scrape nor
shows a rule it dropped."""

from __future__ import annotations

from watchdog.support.metrics import Metrics


def _rule_lines(body: bytes) -> list[str]:
    return [line for line in body.decode().splitlines() if line.startswith(("watchdog_rule_state", "watchdog_rule_value"))
            or line.startswith(("# HELP watchdog_rule_", "# TYPE watchdog_rule_"))]


def test_the_exposition_of_the_rule_series_is_the_text_format_the_spec_names() -> None:
    m = Metrics()
    s = m.rule_series
    s.keep({("web", "latency", "performance"), ("api", 'odd"name', "security")})
    s.record("web", "latency", "performance", 1, 1500.5)
    # Written by hand from the text format: HELP and TYPE once per family, labels sorted by name, values as
    # Go floats, a rule with no value now has a state series and no value series, `"` escaped as `\\"`.
    assert sorted(_rule_lines(m.expose())) == sorted([
        "# HELP watchdog_rule_state Rule state: 0 ok, 1 alarm, 2 insufficient_data.",
        "# TYPE watchdog_rule_state gauge",
        'watchdog_rule_state{category="performance",rule="latency",target="web"} 1.0',
        'watchdog_rule_state{category="security",rule="odd\\"name",target="api"} 2.0',
        "# HELP watchdog_rule_value Newest datapoint value a rule judged (booleans as 0/1).",
        "# TYPE watchdog_rule_value gauge",
        'watchdog_rule_value{rule="latency",target="web"} 1500.5',
    ])


def test_a_reload_while_a_scrape_walks_the_rules_leaves_out_what_it_dropped_and_the_scrape_finishes() -> None:
    m = Metrics()
    s = m.rule_series
    rules = {("t", f"r{i}", "performance") for i in range(50)}
    s.keep(rules)
    for _, r, _ in rules:
        s.record("t", r, "performance", 0, 1.0)
    state = next(f for f in m.rule_series.collect() if f.name == "watchdog_rule_state")
    walking = iter(state.samples)
    first = next(walking)
    # The reload lands between two samples: half the rules go, ten new ones come (the dict changes size).
    kept = {x for x in rules if int(x[1][1:]) % 2 == 0} | {("t", first.labels["rule"], "performance")}
    s.keep(kept | {("t", f"new{i}", "cost") for i in range(10)})
    rest = [x.labels["rule"] for x in walking]
    seen = {first.labels["rule"], *rest}
    assert seen == {r for _, r, _ in kept}, "a dropped rule was shown, or a kept one left out"
    # The next scrape shows the config as reloaded.
    after = {x.labels["rule"] for f in m.rule_series.collect() if f.name == "watchdog_rule_state" for x in f.samples}
    assert after == {r for _, r, _ in kept} | {f"new{i}" for i in range(10)}
