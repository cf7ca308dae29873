"""What the cloudwatch_alarms tests talk to besides moto itself.

- `counting(upstream)`: a proxy in front of moto that forwards every request and records its API, whichever
  protocol the client speaks (CloudWatch's query protocol: `Action=` in the form; SQS's JSON protocol: the
  `X-Amz-Target` header), with the request's parameters.
- `paging_cloudwatch(alarms)`: a small CloudWatch of DescribeAlarms alone, speaking the query protocol botocore
  uses for CloudWatch (a form body in, XML out). It is here because moto ignores MaxRecords and NextToken on
  DescribeAlarms (one page of everything, /work/shared/aws-emulators.md): this one pages as AWS documents,
  at most MaxRecords alarms a page and a NextToken while more are left, honouring StateValue, AlarmNames
  and AlarmNamePrefix.
- `state_change(...)`: a "CloudWatch Alarm State Change" event, as EventBridge puts it on an SQS queue.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from urllib.parse import parse_qs
from xml.sax.saxutils import escape

import aiohttp
from aiohttp import web
from loopback import serving

NS = "http://monitoring.amazonaws.com/doc/2010-08-01/"


def stamp(at: datetime) -> str:
    """A time as CloudWatch writes it in events and StateReasonData: 2024-01-01T00:00:00.000+0000."""
    return at.strftime("%Y-%m-%dT%H:%M:%S.") + f"{at.microsecond // 1000:03d}+0000"


def reason_data(points: list[tuple[datetime, float]], threshold: float = 5.0) -> str:
    return json.dumps({"version": "1.0", "statistic": "Average", "period": 10, "threshold": threshold,
                       "evaluatedDatapoints": [{"timestamp": stamp(ts), "sampleCount": 1.0, "value": v}
                                               for ts, v in points]})


def state_change(alarm: str, state: str, at: datetime, points: list[tuple[datetime, float]] | None = None,
                 previous: str = "OK") -> str:
    """The body EventBridge delivers to an SQS target for one alarm's change of state."""
    return json.dumps({
        "version": "0", "id": f"{alarm}-{state}-{at.timestamp()}", "detail-type": "CloudWatch Alarm State Change",
        "source": "aws.cloudwatch", "account": "123456789012", "time": at.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "region": "us-east-1", "resources": [f"arn:aws:cloudwatch:us-east-1:123456789012:alarm:{alarm}"],
        "detail": {
            "alarmName": alarm,
            "state": {"value": state, "reason": "test", "reasonData": reason_data(points or []), "timestamp": stamp(at)},
            "previousState": {"value": previous, "reason": "test", "timestamp": stamp(at)},
            "configuration": {"metrics": []},
        },
    })


@dataclass
class Counting:
    upstream: str
    url: str = ""
    requests: list[tuple[str, dict[str, Any]]] = field(default_factory=list)  # (API, parameters)
    session: aiohttp.ClientSession | None = None

    def count(self, api: str) -> int:
        return sum(1 for a, _ in self.requests if a == api)

    def of(self, api: str) -> list[dict[str, Any]]:
        return [p for a, p in self.requests if a == api]

    async def handle(self, request: web.Request) -> web.Response:
        raw = await request.read()
        target = request.headers.get("X-Amz-Target", "")
        if target:  # the JSON protocol: AmazonSQS.ReceiveMessage
            api, params = target.rpartition(".")[2], json.loads(raw or b"{}")
        else:
            form = {k: v[0] for k, v in parse_qs(raw.decode(), keep_blank_values=True).items()}
            api, params = form.pop("Action", "?"), form
        self.requests.append((api, params))
        headers = {k: v for k, v in request.headers.items()
                   if k.lower() not in ("host", "content-length", "transfer-encoding")}
        assert self.session is not None
        async with self.session.request(request.method, self.upstream + request.path_qs, data=raw,
                                        headers=headers) as up:
            body = await up.read()
            return web.Response(status=up.status, body=body,
                                headers={"Content-Type": up.headers.get("Content-Type", "text/xml")})


@asynccontextmanager
async def counting(upstream: str) -> AsyncIterator[Counting]:
    proxy = Counting(upstream)
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", proxy.handle)
    async with aiohttp.ClientSession() as proxy.session, serving(app, shutdown_timeout=60.0) as proxy.url:
        yield proxy


@dataclass
class Alarm:
    name: str
    state: str = "OK"
    at: str = "2024-01-01T00:00:00.000Z"
    reason_data: str = "{}"


@dataclass
class PagingCloudWatch:
    alarms: list[Alarm]
    url: str = ""
    forms: list[dict[str, str]] = field(default_factory=list)

    async def handle(self, request: web.Request) -> web.Response:
        form = {k: v[0] for k, v in parse_qs((await request.read()).decode(), keep_blank_values=True).items()}
        self.forms.append(form)
        if form.get("Action") != "DescribeAlarms":
            return web.Response(status=400, text=f"<ErrorResponse xmlns=\"{NS}\"><Error><Code>InvalidAction</Code>"
                                "<Message>only DescribeAlarms here</Message></Error></ErrorResponse>")
        names = {v for k, v in form.items() if k.startswith("AlarmNames.member.")}
        chosen = [a for a in self.alarms
                  if (not names or a.name in names) and a.name.startswith(form.get("AlarmNamePrefix", ""))
                  and form.get("StateValue", a.state) == a.state]
        size = int(form.get("MaxRecords", "50"))  # AWS's default page is 50
        start = int(form.get("NextToken", "0"))
        page, rest = chosen[start:start + size], chosen[start + size:]
        members = "".join(
            f"<member><AlarmName>{escape(a.name)}</AlarmName><StateValue>{a.state}</StateValue>"
            f"<StateReasonData>{escape(a.reason_data)}</StateReasonData>"
            f"<StateUpdatedTimestamp>{a.at}</StateUpdatedTimestamp><MetricName>m</MetricName>"
            "<Namespace>N</Namespace><Statistic>Average</Statistic><Period>60</Period><EvaluationPeriods>1"
            "</EvaluationPeriods><Threshold>5.0</Threshold><ComparisonOperator>GreaterThanThreshold"
            "</ComparisonOperator></member>" for a in page)
        token = f"<NextToken>{start + size}</NextToken>" if rest else ""
        body = (f'<DescribeAlarmsResponse xmlns="{NS}"><DescribeAlarmsResult><MetricAlarms>{members}</MetricAlarms>'
                f"<CompositeAlarms></CompositeAlarms>{token}</DescribeAlarmsResult><ResponseMetadata><RequestId>r"
                "</RequestId></ResponseMetadata></DescribeAlarmsResponse>")
        return web.Response(text=body, content_type="text/xml")


@asynccontextmanager
async def paging_cloudwatch(alarms: list[Alarm]) -> AsyncIterator[PagingCloudWatch]:
    endpoint = PagingCloudWatch(alarms)
    app = web.Application()
    app.router.add_post("/", endpoint.handle)
    async with serving(app) as endpoint.url:
        yield endpoint
