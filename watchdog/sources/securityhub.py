"""AWS Security Hub: each rule's count of active findings, read fresh at every poll.

A rule counts the findings that are ACTIVE, whose workflow status is NEW or
NOTIFIED (not yet suppressed or resolved), whose severity label is one of the
rule's `findings.severity`, and, when `findings.product` is set, whose product
is that one. A poll costs one GetFindings call per rule and per 100 findings.
tenacity owns the retries; botocore's own are off so the two do not multiply.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any, Literal

from pydantic import Field

from watchdog.config.base import Model
from watchdog.config.models import AwsSection
from watchdog.config.sources import Source as SourceConfig
from watchdog.config.types import Interval
from watchdog.support.retrying import Sleep
from watchdog.core.rules import Datapoint
from watchdog.sources.aws import AwsSource
from watchdog.sources.base import Query, Readings, SourceError
from watchdog.sources.kind import SourceDeps, SourceKind


class SecurityHubSource(SourceConfig):
    """Active AWS Security Hub findings, counted per rule by severity."""

    type: Literal["securityhub"]
    region: str | None = None
    interval: Interval = timedelta(minutes=5)


FindingSeverity = Literal["CRITICAL", "HIGH", "MEDIUM", "LOW", "INFORMATIONAL"]


def _serious() -> list[FindingSeverity]:
    return ["CRITICAL", "HIGH"]


class FindingsSpec(Model):
    """Active Security Hub findings counted by severity label."""

    severity: list[FindingSeverity] = Field(default_factory=_serious, min_length=1)
    product: str | None = None  # e.g. "GuardDuty"; None: every product


class SecurityHubReads(Model):
    findings: FindingsSpec  # the count of active findings

MAX_PAGES = 100  # 10,000 findings per rule and poll; more is an error, not a silent undercount
OPEN_WORKFLOW = ("NEW", "NOTIFIED")


def _equals(*values: str) -> list[dict[str, str]]:
    return [{"Value": v, "Comparison": "EQUALS"} for v in values]  # several values of one field: any of them


def findings_filters(spec: FindingsSpec) -> dict[str, Any]:
    filters = {
        "RecordState": _equals("ACTIVE"),
        "WorkflowStatus": _equals(*OPEN_WORKFLOW),
        "SeverityLabel": _equals(*spec.severity),
    }
    if spec.product:
        filters["ProductName"] = _equals(spec.product)
    return filters


def matches(finding: Mapping[str, Any], spec: FindingsSpec) -> bool:
    """The same test on our side: an endpoint that ignores Filters (moto, some emulators) must not
    inflate the count. Only a field that is present and disagrees excludes a finding."""
    wanted = [
        (finding.get("RecordState"), ("ACTIVE",)),
        ((finding.get("Workflow") or {}).get("Status"), OPEN_WORKFLOW),
        ((finding.get("Severity") or {}).get("Label"), tuple(spec.severity)),
        (finding.get("ProductName"), (spec.product,) if spec.product else None),
    ]
    return all(value is None or allowed is None or value in allowed for value, allowed in wanted)


class SecurityHub(AwsSource):
    sampled = True

    service = "securityhub"
    _cfg: SecurityHubSource

    def __init__(self, cfg: SecurityHubSource, queries: Sequence[Query], aws: AwsSection,
                 sleep: Sleep | None = None, client: Any = None):
        super().__init__(cfg, queries, aws, sleep, client)
        self._readings = Readings(self._queries)
        self._specs = {q.key: q.rule.reads(SecurityHubReads).findings for q in self._queries}

    def _region(self) -> str:
        return self._cfg.region or self._aws.region

    async def poll(self, now: datetime) -> Mapping[str, Sequence[Datapoint]]:
        counts = {q.key: await self.count(q) for q in self._queries}  # all or nothing: no half-updated poll
        for key, n in counts.items():
            self._readings.add(key, now, float(n))
        return self._readings.all()

    async def count(self, q: Query) -> int:
        spec = self._specs.get(q.key) or q.rule.reads(SecurityHubReads).findings
        kwargs: dict[str, Any] = {"Filters": findings_filters(spec), "MaxResults": 100}
        total = 0
        for _page in range(MAX_PAGES):
            page = await self._call("GetFindings", "get_findings", kwargs)
            total += sum(1 for f in page.get("Findings", []) if matches(f, spec))
            token = page.get("NextToken")
            if not token:
                return total
            kwargs["NextToken"] = token
        raise SourceError(f"GetFindings: {q.key}: still paging after {MAX_PAGES} pages")


def _build(cfg: SecurityHubSource, queries: Sequence[Query], deps: SourceDeps) -> SecurityHub:
    return SecurityHub(cfg, queries, deps.aws)


KIND = SourceKind(type="securityhub", config=SecurityHubSource, reads=SecurityHubReads, requires=("findings",),
                  build=_build, sampled=True)
