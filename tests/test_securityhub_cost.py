"""Security Hub and Cost Explorer sources against a real moto server, and the real daemon on both.

moto (5.2) ignores GetFindings' Filters, so the source's own check of every returned
finding is what the counts below exercise; the Filters sent are checked separately,
on the request botocore builds. moto's Security Hub keeps findings per region: every
test uses its own region. moto's Cost Explorer answers from a queue of scripted results
(POST /moto-api/static/ce/cost-and-usage-results), one per distinct request body, so
every test asks about its own service and consumes exactly what it scripts.
"""

from __future__ import annotations

import asyncio
import copy
import uuid
from collections.abc import Callable
from datetime import date, datetime, timedelta, timezone
from typing import Any

import aiohttp
import boto3
import pytest
from botocore.exceptions import ClientError

from watchdog.config.models import AwsSection, Rule
from watchdog.config.schema import rule_model
from watchdog.sources.base import Query, SourceError
from watchdog.sources.cost_explorer import CostExplorer, CostExplorerSource
from watchdog.sources.securityhub import MAX_PAGES, SecurityHub, SecurityHubSource

from configs import health_check, http, hybrid_routing, level, make_target, write
from loopback import free_port
from polls import started
from sleeps import Sleeps
from tests.daemon import Daemon, polled, status
from timing import until

UTC = timezone.utc
ACCOUNT = "123456789012"


def retry(attempts: int) -> dict[str, Any]:
    return {"attempts": attempts, "initial_backoff": "10ms", "max_backoff": "50ms"}


def capture(src: SecurityHub | CostExplorer) -> list[dict[str, Any]]:
    """The parameters of every API call the source's (real) client makes, as botocore validates them."""
    seen: list[dict[str, Any]] = []
    src._client.meta.events.register("provide-client-params", lambda params, **_: seen.append(copy.deepcopy(params)))
    return seen


# --- Security Hub -------------------------------------------------------------------------------


def sh_cfg(region: str | None = None, attempts: int = 3) -> SecurityHubSource:
    return SecurityHubSource.model_validate(
        {"name": "sh", "type": "securityhub", "region": region, "timeout": "2s", "retry": retry(attempts)})


def sh_rule(name: str, severity: list[str], product: str | None = None, n: int = 1) -> Rule:
    return rule_model().model_validate({
        "name": name, "category": "security", "source": "sh", "threshold": "> 0", "evaluation_periods": n,
        "findings": {"severity": severity, "product": product},
    })


def finding(fid: str, label: str, region: str, product: str = "GuardDuty", record: str = "ACTIVE",
            workflow: str = "NEW") -> dict[str, Any]:
    return {
        "SchemaVersion": "2018-10-08", "Id": fid, "GeneratorId": "test", "AwsAccountId": ACCOUNT,
        "ProductArn": f"arn:aws:securityhub:{region}:{ACCOUNT}:product/{ACCOUNT}/default", "ProductName": product,
        "Types": ["Software and Configuration Checks"], "CreatedAt": "2024-01-01T00:00:00Z",
        "UpdatedAt": "2024-01-01T00:00:00Z", "Severity": {"Label": label}, "Title": fid, "Description": fid,
        "Resources": [{"Type": "Other", "Id": "resource"}], "RecordState": record, "Workflow": {"Status": workflow},
    }


def import_findings(url: str, region: str, findings: list[dict[str, Any]]) -> None:
    sh = boto3.client("securityhub", region_name=region, endpoint_url=url)
    sh.enable_security_hub()
    for i in range(0, len(findings), 100):  # the API takes at most 100 per call
        assert sh.batch_import_findings(Findings=findings[i : i + 100])["FailedCount"] == 0


def sh_source(url: str, queries: list[Query], region: str = "eu-west-3", cfg_region: str | None = None,
              sleep: Sleeps | None = None, attempts: int = 3) -> SecurityHub:
    return SecurityHub(sh_cfg(cfg_region, attempts), queries, AwsSection(region=region, endpoint_url=url), sleep=sleep)


MIXED = [  # (label, product, record state, workflow status)
    ("CRITICAL", "GuardDuty", "ACTIVE", "NEW"),
    ("CRITICAL", "GuardDuty", "ACTIVE", "NOTIFIED"),
    ("CRITICAL", "Inspector", "ACTIVE", "NEW"),
    ("HIGH", "GuardDuty", "ACTIVE", "NEW"),
    ("MEDIUM", "Inspector", "ACTIVE", "NEW"),
    ("CRITICAL", "GuardDuty", "ARCHIVED", "NEW"),  # archived: gone
    ("CRITICAL", "GuardDuty", "ACTIVE", "RESOLVED"),  # resolved: handled
    ("HIGH", "GuardDuty", "ACTIVE", "SUPPRESSED"),  # suppressed: accepted risk
]


async def test_counts_active_open_findings_per_rule(moto_url: str, aws_env: dict[str, str]) -> None:
    region = "eu-west-3"
    import_findings(moto_url, region, [finding(f"mixed-{i}", lab, region, prod, rec, wf) for i, (lab, prod, rec, wf) in enumerate(MIXED)])
    queries = [
        Query("t/critical", sh_rule("critical", ["CRITICAL"])),
        Query("t/crit-high", sh_rule("crit-high", ["CRITICAL", "HIGH"])),
        Query("t/guardduty", sh_rule("guardduty", ["CRITICAL"], product="GuardDuty")),
        Query("t/low", sh_rule("low", ["LOW", "INFORMATIONAL"])),
    ]
    src = sh_source(moto_url, queries, region=region)
    async with started(src):
        sent = capture(src)
        now = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
        assert await src.poll(now) == {
            "t/critical": [(now, 3.0)], "t/crit-high": [(now, 4.0)], "t/guardduty": [(now, 2.0)], "t/low": [(now, 0.0)],
        }
        assert src.calls == 4  # one page per rule
    eq = lambda *vs: [{"Value": v, "Comparison": "EQUALS"} for v in vs]  # noqa: E731
    base = {"RecordState": eq("ACTIVE"), "WorkflowStatus": eq("NEW", "NOTIFIED")}
    assert sent == [
        {"Filters": {**base, "SeverityLabel": eq("CRITICAL")}, "MaxResults": 100},
        {"Filters": {**base, "SeverityLabel": eq("CRITICAL", "HIGH")}, "MaxResults": 100},
        {"Filters": {**base, "SeverityLabel": eq("CRITICAL"), "ProductName": eq("GuardDuty")}, "MaxResults": 100},
        {"Filters": {**base, "SeverityLabel": eq("LOW", "INFORMATIONAL")}, "MaxResults": 100},
    ]


async def test_each_poll_is_a_fresh_reading_kept_in_a_short_history(moto_url: str, aws_env: dict[str, str]) -> None:
    region = "eu-north-1"
    src = sh_source(moto_url, [Query("t/crit", sh_rule("crit", ["CRITICAL"], n=2))], region=region)
    t0 = datetime(2026, 1, 2, tzinfo=UTC)
    async with started(src):
        readings = []
        for i in range(8):
            import_findings(moto_url, region, [finding(f"hist-{i}", "CRITICAL", region)])
            readings.append((t0 + timedelta(seconds=i), float(i + 1)))
            points = (await src.poll(t0 + timedelta(seconds=i)))["t/crit"]
            assert points == readings[-6:]  # the evaluation range (N + 2) + 2 kept


async def test_region_is_the_sources_own_else_the_aws_sections(moto_url: str, aws_env: dict[str, str]) -> None:
    import_findings(moto_url, "sa-east-1", [finding("region-1", "CRITICAL", "sa-east-1")])
    q = [Query("t/crit", sh_rule("crit", ["CRITICAL"]))]
    now = datetime.now(UTC)
    for cfg_region, aws_region, expected in [(None, "sa-east-1", 1.0), ("sa-east-1", "us-west-1", 1.0),
                                             ("ap-southeast-2", "sa-east-1", 0.0)]:
        src = sh_source(moto_url, q, region=aws_region, cfg_region=cfg_region)
        async with started(src):
            assert (await src.poll(now))["t/crit"] == [(now, expected)], (cfg_region, aws_region)


async def test_next_token_pages_are_followed(moto_url: str, aws_env: dict[str, str]) -> None:
    region = "ap-south-1"
    wanted = [finding(f"page-{i}", "HIGH", region) for i in range(250)]
    others = [finding(f"page-low-{i}", "LOW", region) for i in range(30)]
    import_findings(moto_url, region, wanted[:120] + others + wanted[120:])
    src = sh_source(moto_url, [Query("t/high", sh_rule("high", ["HIGH"]))], region=region)
    async with started(src):
        sent = capture(src)
        now = datetime.now(UTC)
        assert await src.poll(now) == {"t/high": [(now, 250.0)]}
    assert src.calls == 3  # moto answers 280 findings in pages of 100
    assert "NextToken" not in sent[0] and sent[1]["NextToken"] and sent[2]["NextToken"] != sent[1]["NextToken"]
    assert all(s["Filters"] == sent[0]["Filters"] for s in sent)


class FakeClient:
    """Scripted answers (a dict) or errors (an exception), in order; the last one repeats."""

    def __init__(self, script: list[Any]):
        self.script = script
        self.requests: list[dict[str, Any]] = []

    async def _next(self, **kwargs: Any) -> dict[str, Any]:
        self.requests.append(kwargs)
        step = self.script.pop(0) if len(self.script) > 1 else self.script[0]
        if isinstance(step, BaseException):
            raise step
        return step(len(self.requests)) if callable(step) else step

    get_findings = _next
    get_cost_and_usage = _next


def aws_error(code: str, status: int) -> ClientError:
    return ClientError({"Error": {"Code": code, "Message": "scripted"}, "ResponseMetadata": {"HTTPStatusCode": status}}, "Op")


async def test_endless_paging_is_cut_off_and_fails_the_poll() -> None:
    client = FakeClient([lambda n: {"Findings": [finding(f"x{n}", "CRITICAL", "r")], "NextToken": f"t{n}"}])
    src = SecurityHub(sh_cfg(), [Query("t/crit", sh_rule("crit", ["CRITICAL"]))], AwsSection(), client=client)
    with pytest.raises(SourceError, match="still paging after 100 pages"):
        await src.poll(datetime.now(UTC))
    assert src.calls == MAX_PAGES == len(client.requests)


async def test_a_failed_rule_fails_the_whole_poll_and_keeps_no_reading() -> None:
    ok = {"Findings": [finding("a", "CRITICAL", "r")]}
    client = FakeClient([ok, aws_error("AccessDeniedException", 403), ok])
    queries = [Query("t/a", sh_rule("a", ["CRITICAL"])), Query("t/b", sh_rule("b", ["HIGH"]))]
    src = SecurityHub(sh_cfg(), queries, AwsSection(), client=client)
    with pytest.raises(SourceError, match="GetFindings: AccessDeniedException: scripted"):
        await src.poll(datetime(2026, 1, 1, tzinfo=UTC))
    now = datetime(2026, 1, 1, 0, 1, tzinfo=UTC)
    assert await src.poll(now) == {"t/a": [(now, 1.0)], "t/b": [(now, 0.0)]}  # no reading from the failed poll


# --- Cost Explorer ------------------------------------------------------------------------------


def ce_cfg(days: int = 3, attempts: int = 3) -> CostExplorerSource:
    return CostExplorerSource.model_validate(
        {"name": "ce", "type": "cost_explorer", "interval": "6h", "days": days, "timeout": "2s", "retry": retry(attempts)})


def cost_rule(name: str, metric: str = "UnblendedCost", service: str | None = None) -> Rule:
    return rule_model().model_validate({
        "name": name, "category": "cost", "source": "ce", "change": {"over": "24h", "percent": "> 50"},
        "cost": {"metric": metric, "service": service},
    })


def ce_result(metric: str, daily: list[tuple[date, float]]) -> dict[str, Any]:
    today = datetime.now(UTC).date()
    return {"ResultsByTime": [
        {"TimePeriod": {"Start": d.isoformat(), "End": (d + timedelta(days=1)).isoformat()},
         "Total": {metric: {"Amount": f"{amount}", "Unit": "USD"}}, "Groups": [], "Estimated": d >= today}
        for d, amount in daily
    ], "DimensionValueAttributes": []}


async def script_costs(url: str, results: list[dict[str, Any]]) -> None:
    async with aiohttp.ClientSession() as s:
        async with s.post(f"{url}/moto-api/static/ce/cost-and-usage-results", json={"results": results}) as r:
            assert r.status == 201


def ce_source(url: str, queries: list[Query], days: int = 3, sleep: Sleeps | None = None,
              aws_region: str = "eu-west-1") -> CostExplorer:
    return CostExplorer(ce_cfg(days), queries, AwsSection(region=aws_region, endpoint_url=url), sleep=sleep)


def midnight(d: date) -> datetime:
    return datetime(d.year, d.month, d.day, tzinfo=UTC)


async def test_daily_costs_from_one_call_per_rule(moto_url: str, aws_env: dict[str, str]) -> None:
    service = f"Amazon Bedrock {uuid.uuid4().hex[:8]}"
    now = datetime.now(UTC)
    today = now.date()
    days = [today - timedelta(days=k) for k in (3, 2, 1, 0)]
    await script_costs(moto_url, [ce_result("UnblendedCost", list(zip(days, [100.0, 101.5, 250.25, 7.0])))])
    src = ce_source(moto_url, [Query("t/bedrock", cost_rule("bedrock", service=service))])
    async with started(src):
        assert src._client.meta.region_name == "us-east-1"  # Cost Explorer's only endpoint, whatever aws.region is
        sent = capture(src)
        expected = [(midnight(days[0]), 100.0), (midnight(days[1]), 101.5), (midnight(days[2]), 250.25),
                    (midnight(today), 7.0)]
        assert await src.poll(now) == {"t/bedrock": expected}
        assert src.calls == 1
        assert await src.poll(now) == {"t/bedrock": expected}  # moto repeats its answer to the same request
        assert src.calls == 2  # every poll asks again: no caching on our side
    request = {
        "TimePeriod": {"Start": (today - timedelta(days=3)).isoformat(), "End": (today + timedelta(days=1)).isoformat()},
        "Granularity": "DAILY",
        "Metrics": ["UnblendedCost"],
        "Filter": {"Dimensions": {"Key": "SERVICE", "Values": [service]}},
    }
    assert sent == [request, request]


async def test_whole_account_rule_has_no_filter_and_each_rule_is_one_call(moto_url: str, aws_env: dict[str, str]) -> None:
    service = f"Amazon EC2 {uuid.uuid4().hex[:8]}"
    now = datetime(2026, 3, 10, 12, 30, tzinfo=UTC)  # a fixed day: the request is dated from `now`
    d1, d2 = date(2026, 3, 9), date(2026, 3, 10)
    await script_costs(moto_url, [ce_result("AmortizedCost", [(d1, 40.0), (d2, 1.0)]),
                                  ce_result("NetUnblendedCost", [(d1, 5.0), (d2, 0.5)])])
    queries = [Query("t/account", cost_rule("account", metric="AmortizedCost")),
               Query("t/ec2", cost_rule("ec2", metric="NetUnblendedCost", service=service))]
    src = ce_source(moto_url, queries, days=2)
    async with started(src):
        sent = capture(src)
        assert await src.poll(now) == {
            "t/account": [(midnight(d1), 40.0), (midnight(d2), 1.0)],
            "t/ec2": [(midnight(d1), 5.0), (midnight(d2), 0.5)],
        }
    assert src.calls == 2
    assert sent[0] == {"TimePeriod": {"Start": "2026-03-08", "End": "2026-03-11"}, "Granularity": "DAILY",
                       "Metrics": ["AmortizedCost"]}
    assert sent[1]["Metrics"] == ["NetUnblendedCost"] and sent[1]["Filter"]["Dimensions"]["Values"] == [service]


async def test_an_answer_without_the_metric_is_a_source_error(moto_url: str, aws_env: dict[str, str]) -> None:
    service = f"Amazon S3 {uuid.uuid4().hex[:8]}"
    await script_costs(moto_url, [ce_result("BlendedCost", [(datetime.now(UTC).date(), 3.0)])])
    src = ce_source(moto_url, [Query("t/s3", cost_rule("s3", service=service))])
    async with started(src):
        with pytest.raises(SourceError, match="t/s3: no UnblendedCost amount"):
            await src.poll(datetime.now(UTC))


async def test_next_page_token_is_followed_within_a_bound() -> None:
    day = lambda d, v: {"TimePeriod": {"Start": d, "End": d}, "Total": {"UnblendedCost": {"Amount": v}}}  # noqa: E731
    client = FakeClient([{"ResultsByTime": [day("2026-01-02", "2")], "NextPageToken": "p2"},
                         {"ResultsByTime": [day("2026-01-01", "1")]}])
    src = CostExplorer(ce_cfg(), [Query("t/c", cost_rule("c"))], AwsSection(), client=client)
    points = (await src.poll(datetime(2026, 1, 3, tzinfo=UTC)))["t/c"]
    assert points == [(datetime(2026, 1, 1, tzinfo=UTC), 1.0), (datetime(2026, 1, 2, tzinfo=UTC), 2.0)]
    assert src.calls == 2 and client.requests[1]["NextPageToken"] == "p2"

    from watchdog.sources.cost_explorer import MAX_PAGES as CE_PAGES

    endless = FakeClient([lambda n: {"ResultsByTime": [], "NextPageToken": f"p{n}"}])
    src = CostExplorer(ce_cfg(), [Query("t/c", cost_rule("c"))], AwsSection(), client=endless)
    with pytest.raises(SourceError, match="still paging"):
        await src.poll(datetime(2026, 1, 3, tzinfo=UTC))
    assert src.calls == CE_PAGES == len(endless.requests)


OK_COST = {"ResultsByTime": [{"TimePeriod": {"Start": "2026-01-01"}, "Total": {"UnblendedCost": {"Amount": "4.5"}}}]}
OK_FINDINGS = {"Findings": [finding("a", "CRITICAL", "r")]}


def _sh(client: FakeClient, sleep: Sleeps) -> SecurityHub:
    return SecurityHub(sh_cfg(attempts=4), [Query("t/r", sh_rule("r", ["CRITICAL"]))], AwsSection(), sleep=sleep, client=client)


def _ce(client: FakeClient, sleep: Sleeps) -> CostExplorer:
    return CostExplorer(ce_cfg(attempts=4), [Query("t/r", cost_rule("r"))], AwsSection(), sleep=sleep, client=client)


SOURCES: list[tuple[Callable[[FakeClient, Sleeps], Any], dict[str, Any], float]] = [
    (_sh, OK_FINDINGS, 1.0), (_ce, OK_COST, 4.5)]


def scripted(make: Callable[[FakeClient, Sleeps], Any], *answers: Any) -> tuple[Any, Sleeps]:
    """A source of SOURCES whose client gives `answers` in order; the backoffs it sleeps are recorded."""
    sleeps = Sleeps()
    return make(FakeClient(list(answers)), sleeps), sleeps


@pytest.mark.parametrize(("make", "call"), [
    (lambda url, sleep: sh_source(url, [Query("t/c", sh_rule("c", ["CRITICAL"]))], sleep=sleep), "GetFindings"),
    (lambda url, sleep: ce_source(url, [Query("t/c", cost_rule("c"))], sleep=sleep), "GetCostAndUsage"),
], ids=["securityhub", "cost_explorer"])
async def test_an_unreachable_endpoint_is_a_source_error_after_every_attempt(aws_env: dict[str, str], make: Any,
                                                                             call: str) -> None:
    sleeps = Sleeps()
    src = make(f"http://127.0.0.1:{free_port()}", sleeps)
    async with started(src):
        with pytest.raises(SourceError, match=f"{call}: EndpointConnectionError"):
            await src.poll(datetime.now(UTC))
    assert src.calls == 3 and len(sleeps.delays) == 2


@pytest.mark.parametrize(("make", "ok", "value"), SOURCES, ids=["securityhub", "cost_explorer"])
@pytest.mark.parametrize(("code", "status"), [("ThrottlingException", 400), ("TooManyRequestsException", 429),
                                              ("InternalServerException", 500), ("ServiceUnavailable", 503)])
async def test_transient_errors_are_retried(make: Any, ok: dict[str, Any], value: float, code: str, status: int) -> None:
    src, sleeps = scripted(make, aws_error(code, status), aws_error(code, status), ok)
    points = (await src.poll(datetime(2026, 1, 1, 12, tzinfo=UTC)))["t/r"]
    assert [v for _, v in points] == [value]
    assert src.calls == 3 and len(sleeps.delays) == 2


@pytest.mark.parametrize(("make", "ok", "value"), SOURCES, ids=["securityhub", "cost_explorer"])
async def test_retries_stop_after_the_attempts(make: Any, ok: dict[str, Any], value: float) -> None:
    src, sleeps = scripted(make, aws_error("ThrottlingException", 400))
    with pytest.raises(SourceError, match="ThrottlingException: scripted"):
        await src.poll(datetime(2026, 1, 1, tzinfo=UTC))
    assert src.calls == 4 and len(sleeps.delays) == 3


@pytest.mark.parametrize(("make", "ok", "value"), SOURCES, ids=["securityhub", "cost_explorer"])
@pytest.mark.parametrize(("code", "status"), [("AccessDeniedException", 403), ("ValidationException", 400),
                                              ("InvalidAccessException", 401), ("DataUnavailableException", 400)])
async def test_other_errors_fail_after_one_call(make: Any, ok: dict[str, Any], value: float, code: str, status: int) -> None:
    src, sleeps = scripted(make, aws_error(code, status), ok)
    with pytest.raises(SourceError, match=f"{code}: scripted"):
        await src.poll(datetime(2026, 1, 1, tzinfo=UTC))
    assert src.calls == 1 and sleeps.delays == []


# --- the real daemon ----------------------------------------------------------------------------

def daemon_config(tmp_path: Any, moto_url: str, source: dict[str, Any], targets: list[tuple[str, dict[str, Any]]],
                  admin: str) -> str:
    """One source; per target one rule and one level, which turns the target's flag off at the admin API."""
    def target(name: str, rule: dict[str, Any]) -> dict[str, Any]:
        stop = http(f"{admin}/admin/{name}", json={"enabled": False}, timeout="5s", retry={"attempts": 1})
        return make_target(name, [rule], [level(1, f"stop-{name}", stop, deadline="5s", checks=[health_check(admin)])],
                           verify_window="30s", max_rollbacks_per_hour=10)

    return write(tmp_path, hybrid_routing(state_path=tmp_path / "watchdog.db", aws_endpoint=moto_url, sources=[source],
                                          targets=[target(name, rule) for name, rule in targets]))


@pytest.mark.slow
async def test_daemon_rolls_back_when_a_critical_finding_appears(tmp_path, moto_url, aws_env, admin_api):
    region = "ca-central-1"
    # Present from the start, and none of them counts: not critical, archived, resolved.
    import_findings(moto_url, region, [finding("d-high", "HIGH", region), finding("d-old", "CRITICAL", region, record="ARCHIVED"),
                                       finding("d-done", "CRITICAL", region, workflow="RESOLVED")])
    source = {"name": "hub", "type": "securityhub", "region": region, "interval": "1s", "timeout": "2s",
              "retry": {"attempts": 2}}
    rule = {"name": "critical-findings", "category": "security", "source": "hub",
            "findings": {"severity": ["CRITICAL"]}, "threshold": "> 0", "level": 1}
    d = await Daemon(daemon_config(tmp_path, moto_url, source, [("app", rule)], admin_api.url)).start()
    try:
        port = await d.port()

        async def judged_ok() -> dict[str, Any] | None:  # the source answers, the rule is ok on a count of 0
            doc = await status(port)
            return doc if doc["rules"][0]["state"] == "ok" else None

        doc = await until(judged_ok, 20, "the rule judged ok")
        assert doc["rules"][0]["value"] == 0, doc["rules"]
        status_after = await polled(port, 3)  # still polling: three more answers, and nothing happens
        assert status_after["rules"][0]["state"] == "ok" and status_after["targets"][0]["level"] == 0
        assert admin_api.count("/admin/app") == 0 and not d.events("level_started")

        await asyncio.to_thread(import_findings, moto_url, region, [finding("d-new", "CRITICAL", region)])
        started = await d.wait_for("level_started", timeout=20, level=1)
        assert started["target"] == "app"
        await d.wait_for("action_succeeded", timeout=10)
        assert admin_api.count("/admin/app", "PUT") == 1
        assert [c[2] for c in admin_api.calls if c[1] == "/admin/app"] == [{"enabled": False}]
        rule_status = (await status(port))["rules"][0]
        assert rule_status["state"] == "alarm" and rule_status["value"] == 1
    finally:
        await d.stop()


@pytest.mark.slow
async def test_daemon_rolls_back_on_a_cost_spike_on_the_last_complete_day(tmp_path, moto_url, aws_env, admin_api):
    today = datetime.now(UTC).date()
    days = [today - timedelta(days=k) for k in (4, 3, 2, 1, 0)]
    spike, flat = f"Amazon Bedrock {uuid.uuid4().hex[:8]}", f"Amazon EC2 {uuid.uuid4().hex[:8]}"
    # moto hands out scripted answers in request order; the source asks rule by rule, in config order.
    await script_costs(moto_url, [
        # 100, 100, 100, then 200 yesterday (+100%); today is still filling (10 so far: -95%).
        ce_result("UnblendedCost", list(zip(days, [100.0, 100.0, 100.0, 200.0, 10.0]))),
        # Flat over the complete days; only today's partial figure jumps, and today is not judged.
        ce_result("UnblendedCost", list(zip(days, [100.0, 100.0, 100.0, 100.0, 300.0]))),
    ])
    source = {"name": "costs", "type": "cost_explorer", "interval": "1h", "days": 4, "timeout": "5s",
              "retry": {"attempts": 2}}

    def spend(service: str) -> dict[str, Any]:
        return {"name": "spend", "category": "cost", "source": "costs",
                "cost": {"metric": "UnblendedCost", "service": service}, "change": {"over": "24h", "percent": "> 50"},
                "level": 1}

    targets = [("bedrock", spend(spike)), ("ec2", spend(flat))]
    d = await Daemon(daemon_config(tmp_path, moto_url, source, targets, admin_api.url)).start()
    try:
        port = await d.port()
        # No poll is due for an hour: this comes from the poll the daemon makes at start.
        started = await d.wait_for("level_started", timeout=30, level=1)
        assert started["target"] == "bedrock"
        await d.wait_for("action_succeeded", timeout=10)
        await asyncio.sleep(1)
        assert admin_api.count("/admin/bedrock", "PUT") == 1
        assert admin_api.count("/admin/ec2") == 0
        rules = {r["target"]: r for r in (await status(port))["rules"]}
        assert rules["bedrock"]["state"] == "alarm" and rules["bedrock"]["value"] == pytest.approx(100.0)
        assert rules["ec2"]["state"] == "ok" and rules["ec2"]["value"] == pytest.approx(0.0)
    finally:
        await d.stop()
