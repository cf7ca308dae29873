"""docs/cost.md's tables are the projection's own (tools/cost_table.py), never typed by hand: made again here,
they must be what the file holds. A few cells are also derived by hand from the prices, so a table that went
wrong with its generator would not pass either."""

from __future__ import annotations

import pytest

from tools.cost_table import BEGIN, BENCH, DOC, END, rewritten


@pytest.mark.parametrize("doc", [DOC, BENCH], ids=["docs/cost.md", "bench/README.md"])
def test_the_docs_hold_the_tables_the_code_makes(doc) -> None:
    text = doc.read_text()
    assert BEGIN in text and END in text, f"{doc}: no cost tables"
    assert rewritten(text) == text, f"{doc}'s cost tables are out of date: run `python -m tools.cost_table`"


def test_the_table_agrees_with_a_hand_count() -> None:
    """At $0.01 per 1 000 metrics: every 30 s, 86 400 reads a month of each rule's metric, $0.864 a rule
    ($864 for 1 000: issue 22's figure); once a minute, half; read every 5m, a tenth of that. 1 000 standard
    alarms at $0.10: $100. Polled alarms at 1 000 rules: 38 880 ALARM asks + 4 320 reconciles of 10 requests,
    82 080 at $0.01 per 1 000: $0.82 (docs/configuration.md says the same). Detection, 3 of 3 one-minute
    buckets, settle 2m: 5m aligned, 30 s more polling every 30 s, 4m more read every 5m."""
    text = DOC.read_text()
    table = text[text.index(BEGIN):text.index(END)]
    listed = table.split("**With the free tier**")[0]
    for row in ("| every 30s, every query (before issue 22) | 5m30s | $8.64 | $86.40 | $864.00 | $4320.00 |",
                "| aligned: each query once a period | 5m | $4.32 | $43.20 | $432.00 | $2160.00 |",
                "| aligned, `read_every: 5m` | 9m | $0.86 | $8.64 | $86.40 | $432.00 |",
                "| N standard alarms themselves (CloudWatch, $0.10 each) | 5m | $1.00 | $10.00 | $100.00 | $500.00 |"):
        assert row in listed, row
    assert "| alarms polled (`interval: 60s`) | 6m | $0.43 | $0.43 | $0.82 |" in listed
    assert "82 080 DescribeAlarms" in table


def test_a_stale_table_is_found() -> None:
    stale = DOC.read_text().replace("$864.00", "$432.00", 1)
    assert rewritten(stale) != stale
