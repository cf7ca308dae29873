"""A gate in front of an AWS endpoint (moto, or a fake of tests/aws_fakes.py) for the AWS action tests.

It forwards every request and records each operation by name, whatever the protocol: the query protocol's
`Action=` (ELBv2), the JSON protocol's `X-Amz-Target` (SSM, ECS), or, for the REST protocols (Lambda, AppConfig),
the method and path of the operations the actions call. Per operation it can:
- `deny`: answer AccessDenied in that protocol's own error form, as IAM does when a policy lacks the action;
- `after`: run a hook once the endpoint has answered and before the answer goes back (a concurrent change made
  between the action's read and its write, exactly there);
- `route`: send it to another endpoint (a fake of tests/aws_fakes.py), so that one URL serves a whole config;
- `rewrite`: change the answer as AWS would give it where the emulator is lax (a test says why, each time).
Besides, `serial` passes the requests on one at a time (moto's server applies concurrent requests in threads
without DynamoDB's per-item isolation: several daemons on one table need DynamoDB's answers, not a torn item),
and `cut` holds every request of the operations it names unanswered (a network partition, as the client sees
it: its request times out).

Nothing of the client library is mocked: the daemon's own aioboto3 client talks to this server over loopback.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from urllib.parse import parse_qs

import aiohttp
from aiohttp import web
from loopback import serving

# REST operations by method and path (what the actions call, and what the tests set up with)
REST = [
    ("GET", re.compile(r"^/2015-03-31/functions/[^/]+/aliases/[^/]+$"), "GetAlias"),
    ("PUT", re.compile(r"^/2015-03-31/functions/[^/]+/aliases/[^/]+$"), "UpdateAlias"),
    ("GET", re.compile(r"^/2015-03-31/functions/[^/]+/versions$"), "ListVersionsByFunction"),
    ("GET", re.compile(r"^/applications$"), "ListApplications"),
    ("GET", re.compile(r"^/applications/[^/]+/environments$"), "ListEnvironments"),
    ("GET", re.compile(r"^/applications/[^/]+/configurationprofiles$"), "ListConfigurationProfiles"),
    ("GET", re.compile(r"^/applications/[^/]+/configurationprofiles/[^/]+/hostedconfigurationversions$"),
     "ListHostedConfigurationVersions"),
    ("GET", re.compile(r"^/applications/[^/]+/configurationprofiles/[^/]+/hostedconfigurationversions/[^/]+$"),
     "GetHostedConfigurationVersion"),
    ("POST", re.compile(r"^/applications/[^/]+/configurationprofiles/[^/]+/hostedconfigurationversions$"),
     "CreateHostedConfigurationVersion"),
    ("GET", re.compile(r"^/applications/[^/]+/environments/[^/]+/deployments$"), "ListDeployments"),
    ("POST", re.compile(r"^/applications/[^/]+/environments/[^/]+/deployments$"), "StartDeployment"),
    ("GET", re.compile(r"^/applications/[^/]+/environments/[^/]+/deployments/[^/]+$"), "GetDeployment"),
    ("DELETE", re.compile(r"^/applications/[^/]+/environments/[^/]+/deployments/[^/]+$"), "StopDeployment"),
]


def operation(request: web.Request, body: bytes) -> str:
    target = request.headers.get("X-Amz-Target")
    if target:
        return target.rsplit(".", 1)[-1]
    if request.content_type == "application/x-www-form-urlencoded" and request.path == "/":
        action = parse_qs(body.decode("utf-8", "replace")).get("Action")
        if action:
            return action[0]
    for method, path, op in REST:
        if request.method == method and path.match(request.path):
            return op
    return f"{request.method} {request.path}"


def denied(request: web.Request, op: str) -> web.Response:
    """AccessDenied as each protocol says it (botocore reads all three into a ClientError)."""
    message = f"User: arn:aws:iam::123456789012:user/watchdog is not authorized to perform: {op}"
    if request.headers.get("X-Amz-Target"):
        return web.json_response({"__type": "AccessDeniedException", "message": message}, status=400,
                                 content_type="application/x-amz-json-1.1")
    if request.content_type == "application/x-www-form-urlencoded":
        xml = (f"<ErrorResponse><Error><Type>Sender</Type><Code>AccessDenied</Code><Message>{message}</Message>"
               "</Error><RequestId>gate</RequestId></ErrorResponse>")
        return web.Response(text=xml, status=403, content_type="text/xml")
    return web.json_response({"Message": message}, status=403, headers={"x-amzn-ErrorType": "AccessDeniedException"})


@dataclass
class Gate:
    upstream: str
    url: str = ""
    calls: list[str] = field(default_factory=list)
    deny: set[str] = field(default_factory=set)
    after: dict[str, Callable[[], Awaitable[None]]] = field(default_factory=dict)
    # operation -> another endpoint that answers it (a fake), so one endpoint URL serves a whole config
    routes: dict[str, str] = field(default_factory=dict)
    # operation -> its answer's body changed as AWS would answer where the emulator is lax (a field it leaves out)
    rewrite: dict[str, Callable[[bytes], bytes]] = field(default_factory=dict)
    bodies: list[tuple[str, bytes]] = field(default_factory=list)  # every request's operation and body
    serial: bool = False
    cut: set[str] = field(default_factory=set)
    _one: asyncio.Lock = field(default_factory=asyncio.Lock)

    def sent(self, op: str) -> list[bytes]:
        return [body for o, body in self.bodies if o == op]

    def route(self, url: str, *ops: str) -> None:
        self.routes.update(dict.fromkeys(ops, url))

    def count(self, op: str) -> int:
        return self.calls.count(op)


@asynccontextmanager
async def gate(upstream: str, *, serial: bool = False, keep_bodies: bool = True) -> AsyncIterator[Gate]:
    g = Gate(upstream, serial=serial)
    async with aiohttp.ClientSession(auto_decompress=False) as http:
        async def handle(request: web.Request) -> web.StreamResponse:
            body = await request.read()
            op = operation(request, body)
            g.calls.append(op)
            if keep_bodies:
                g.bodies.append((op, body))
            if op in g.cut:
                await asyncio.Event().wait()  # never answered: the client gives up (its timeout)
            if op in g.deny:
                return denied(request, op)
            headers = {k: v for k, v in request.headers.items() if k.lower() not in ("host", "content-length")}
            upstream = g.routes.get(op, g.upstream)
            async with g._one if g.serial else contextlib.nullcontext():
                async with http.request(request.method, upstream + request.path_qs, data=body, headers=headers) as r:
                    answer = await r.read()
                    status, kept = r.status, {k: v for k, v in r.headers.items()
                                              if k.lower() not in ("content-length", "transfer-encoding", "connection",
                                                                   "content-encoding", "date", "server")}
            if op in g.rewrite:
                answer = g.rewrite[op](answer)
            hook = g.after.pop(op, None)
            if hook is not None:
                await hook()
            return web.Response(body=answer, status=status, headers=kept)

        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_route("*", "/{tail:.*}", handle)
        async with serving(app) as g.url:
            yield g

