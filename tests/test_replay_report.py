"""The replay's HTML report, opened in headless Chromium (Debian's `chromium`; CI installs it) over its
DevTools protocol: one self-contained page that requests nothing but itself, a screenshot taken, and the
charts (watchdog/views/chart.py, the status page's too) checked in the page's DOM as the browser built it."""

from __future__ import annotations

import json
from datetime import timedelta
from html.parser import HTMLParser
from pathlib import Path

from binaries import binary_or_skip
from browser import headless
from test_corpus import CORPUS, START, at, config_of, sources_of
from watchdog.replay.engine import replay
from watchdog.replay.labels import Label, score
from watchdog.replay.outcome import outcome_of
from watchdog.replay.report import write_report


class Elements(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.found: list[tuple[str, dict[str, str | None]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.found.append((tag, dict(attrs)))

    def of(self, tag: str, cls: str | None = None) -> list[dict[str, str | None]]:
        return [a for t, a in self.found if t == tag and (cls is None or cls in (a.get("class") or "").split())]


async def report_of(tmp_path: Path, name: str) -> Path:
    trace = next(t for t in CORPUS["traces"] if t["name"] == name)
    cfg = config_of(trace)
    r = await replay(cfg, at(10), at(180), sources_of(cfg, trace), resolve_after=timedelta(minutes=60))
    o = outcome_of(r, [])
    labels = [Label(target=lb["target"], start=at(lb["from"]), end=at(lb["to"]), rollback=lb["rollback"],
                    level=lb.get("level")) for lb in trace["labels"]]
    path = tmp_path / "report.html"
    write_report(path, cfg, r, o, labels, score(o.incidents, labels))
    return path


async def test_the_report_opens_offline_in_chromium_with_a_chart_per_rule(tmp_path: Path) -> None:
    binary = binary_or_skip("chromium", package="chromium")
    path = await report_of(tmp_path, "cured-at-level-2")
    text = path.read_text()
    assert "<script" not in text and "<link" not in text and " src=" not in text
    shot = tmp_path / "report.png"
    async with headless(binary, tmp_path / "profile") as browser:
        await browser.open(path.as_uri())
        dom = await browser.evaluate("document.documentElement.outerHTML")
        drawn = await browser.evaluate("JSON.stringify([...document.querySelectorAll('svg.chart')].map("
                                       "s => [s.dataset.rule, Math.round(s.getBoundingClientRect().width)]))")
        ticks = await browser.evaluate("JSON.stringify([...document.querySelectorAll('svg.chart text.time')]"
                                       ".map(t => t.textContent))")
        await browser.screenshot(shot)
    assert browser.requests == [path.as_uri()], browser.requests  # the page itself, nothing else
    assert json.loads(drawn)[0][0] == "latency" and json.loads(drawn)[0][1] > 500  # laid out, not collapsed
    # 00:10 to 03:00 is 170 minutes: ticks every 30 minutes (15 would make 11, over the chart's 7), no date
    assert json.loads(ticks) == ["00:30", "01:00", "01:30", "02:00", "02:30", "03:00"]
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 20_000
    page = Elements()
    page.feed(dom)
    charts = page.of("svg", "chart")
    assert [c["data-rule"] for c in charts] == ["latency"]
    assert len(page.of("polyline", "values")) == 1 and len(page.of("line", "threshold")) == 1
    assert len(page.of("rect", "alarm-band")) >= 1
    assert [a for a in page.of("text", "level-text")] and len(page.of("line", "level-marker")) == 2  # L1, L2
    assert len(page.of("circle", "judged")) >= 3  # the buckets it went into alarm on
    assert len(page.of("rect", "label-band")) == 1
    assert len(page.of("tr", "incident")) == 1
    assert "0 false, 0 missed, 0 wrong level" in dom
    assert START.strftime("%Y-%m-%d") in dom
