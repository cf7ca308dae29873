"""/metrics' per-rule series (support/metrics.py RuleSeries): read from the board's judgements as the scrape walks
them (core/signals.py SignalBoard.judgements), and a reload that swaps the board while a scrape (in a thread,
http/web.py) walks them neither breaks the scrape nor mixes two configs in one family."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from watchdog.core.signals import SignalBoard
from watchdog.support.metrics import Metrics

from configs import CLOSED, http, hybrid_routing, level, make_target, parsed  # tests/ is on sys.path


def _rule_lines(body: bytes) -> list[str]:
    return [line for line in body.decode().splitlines() if line.startswith(("watchdog_rule_state", "watchdog_rule_value"))
            or line.startswith(("# HELP watchdog_rule_", "# TYPE watchdog_rule_"))]


def test_the_exposition_of_the_rule_series_is_the_text_format_the_spec_names() -> None:
    m = Metrics()
    m.rule_series.read_from(lambda: [("web", "latency", "performance", 1, 1500.5), ("api", 'odd"name', "security", 2, None)])
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


def test_a_reload_while_a_scrape_walks_the_rules_finishes_the_family_on_one_config() -> None:
    """The runtime's reader names the board of the moment (runtime/wiring.py); a reload swaps it. A family walked
    across the swap shows the rules of the board it began on, each once; the next scrape shows the new config."""
    m = Metrics()
    old = [("t", f"r{i}", "performance", 0, 1.0) for i in range(50)]
    new = [r for r in old if int(r[1][1:]) % 2 == 0] + [("t", f"new{i}", "cost", 2, None) for i in range(10)]
    board = [old]
    m.rule_series.read_from(lambda: iter(board[0]))
    state = next(f for f in m.rule_series.collect() if f.name == "watchdog_rule_state")
    walking = iter(state.samples)
    first = next(walking)
    board[0] = new  # the reload lands between two samples
    seen = [first.labels["rule"], *(x.labels["rule"] for x in walking)]
    assert seen == [r[1] for r in old]
    after = [x.labels["rule"] for f in m.rule_series.collect() if f.name == "watchdog_rule_state" for x in f.samples]
    assert after == [r[1] for r in new]


def test_the_board_says_each_rules_last_judgement_as_the_series_show_it() -> None:
    """A board judged once: the breaching rule is 1 with its newest value, the one with no data 2 and no value,
    a boolean reading 0 or 1 (by hand from SPEC 3.4: 0 ok, 1 alarm, 2 insufficient_data)."""
    flags = [level(1, "flags", http(f"{CLOSED}/l1"))]
    rules = [
        {"name": "lat", "category": "performance", "source": "c", "field": "p99", "threshold": "> 100"},
        {"name": "gdpr", "category": "security", "source": "c", "field": "ok", "threshold": "== false"},
        {"name": "quiet", "category": "cost", "source": "c", "field": "usd", "threshold": "> 5"},
    ]
    cfg = parsed(hybrid_routing(state_path="/nonexistent/w.db", aws_endpoint=None, targets=[make_target("web", rules, flags)],
                                sources=[{"name": "c", "type": "http_json", "url": f"{CLOSED}/c", "interval": "30s"}]))
    from watchdog.runtime.wiring import board_for

    board: SignalBoard = board_for(cfg)
    assert sorted(board.judgements()) == [("web", r, c, 2, None) for r, c in
                                          (("gdpr", "security"), ("lat", "performance"), ("quiet", "cost"))]
    now = datetime(2026, 12, 8, 4, 0, tzinfo=timezone.utc)
    board.source_ok("c", {"web/lat": [(now - timedelta(seconds=5), 250.0)], "web/gdpr": [(now - timedelta(seconds=5), True)],
                          "web/quiet": []}, now)
    board.evaluate("web", now)
    assert sorted(board.judgements()) == [("web", "gdpr", "security", 0, 1.0), ("web", "lat", "performance", 1, 250.0),
                                          ("web", "quiet", "cost", 2, None)]
