"""The published CloudWatch tables (tests/alarm_tables.py): every cell through the pure evaluator,
and all of them at once through the real `run --once` against moto."""

from __future__ import annotations

import time
from datetime import datetime, timedelta, timezone

import boto3
import pytest

from alarm_tables import PROSE, PUBLISHED, RETAIN, TREATMENTS, cells
from binaries import cli
from configs import hybrid_routing, metric_rule, to_yaml
from watchdog.config.types import parse_threshold
from watchdog.core.rules import RuleSpec, RuleState, evaluate

UTC = timezone.utc
MIN = timedelta(minutes=1)
NOW = datetime(2024, 1, 1, 12, 0, 30, tzinfo=UTC)  # in the still-filling bucket that starts at 12:00
VALUE = {"X": 100.0, "0": 1.0}  # against "> 50"


def points(pattern: str, newest_end: datetime) -> list[tuple[datetime, float]]:
    """The pattern's datapoints, one 5 s into each bucket; the last bucket ends at `newest_end`."""
    marks = pattern.split()
    first = newest_end - MIN * len(marks)
    return [(first + MIN * i + timedelta(seconds=5), VALUE[c]) for i, c in enumerate(marks) if c != "-"]


def test_the_tables_hold_44_cells() -> None:
    assert len(cells(PUBLISHED)) == 44


@pytest.mark.parametrize("pattern, m, treatment, expected", cells(PUBLISHED) + cells(PROSE))
@pytest.mark.parametrize("previous", list(RuleState))
def test_every_cell_of_the_published_tables(pattern: str, m: int, treatment: str, expected: str,
                                            previous: RuleState) -> None:
    spec = RuleSpec(parse_threshold("> 50"), MIN, 3, m, treatment)
    ev = evaluate(spec, points(pattern, NOW.replace(second=0)), NOW, previous)
    assert ev.state is (previous if expected == RETAIN else RuleState(expected)), ev.reason
    assert len(ev.buckets) == 5  # the evaluation range for N = 3
    assert sum(b.judged for b in ev.buckets) <= 3


def test_all_cells_through_run_once_on_moto(write_config, moto_url: str, aws_env: dict[str, str]) -> None:
    """Each cell is a rule of its own metric; the datapoints are in real minute buckets of moto's
    CloudWatch, so the write and the read stay inside one minute. `ignore` starts from no state here,
    so RETAIN reads insufficient_data."""
    second = datetime.now(UTC).second
    if second >= 40:
        time.sleep(61 - second)
    ns = f"TABLES{time.monotonic_ns()}"
    rows = cells(PUBLISHED) + cells(PROSE)
    cw = boto3.client("cloudwatch", region_name="us-east-1", endpoint_url=moto_url)
    current = datetime.now(UTC).replace(second=0, microsecond=0)
    rules, expected = [], {}
    for i, (pattern, m, treatment, state) in enumerate(rows):
        name = f"cell{i:02d}"
        rules.append(metric_rule(name, namespace=ns, metric="V", dimensions={"Cell": name}, stat="Maximum",
                                 threshold="> 50", datapoints_to_alarm=m, evaluation_periods=3,
                                 missing_data=treatment))
        expected[name] = ("insufficient_data" if state == RETAIN else state, f"{pattern} M={m} {treatment}")
        data = [{"MetricName": "V", "Dimensions": [{"Name": "Cell", "Value": name}], "Value": v, "Timestamp": ts}
                for ts, v in points(pattern, current)]
        if data:
            cw.put_metric_data(Namespace=ns, MetricData=data)
    path = write_config(to_yaml(hybrid_routing(aws_endpoint=moto_url, interval="30s", rules=rules)))
    r = cli("run", "-c", path, "--once", env=aws_env, timeout=120)
    assert r.returncode in (0, 1), r.stdout + r.stderr
    got = {ln.split()[1]: ln.split()[3] for ln in r.stdout.splitlines()[1:] if ln.startswith("hybrid-routing")}
    wrong = {name: (want, got.get(name)) for name, want in expected.items() if got.get(name) != want[0]}
    assert not wrong, wrong
    assert len(got) == len(rows) == 44 + 4 * len(PROSE) and set(TREATMENTS) == {t for _, _, t, _ in rows}
