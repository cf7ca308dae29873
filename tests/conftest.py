"""Shared fixtures: a real moto server as AWS, a real aiohttp admin API on loopback."""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from loopback import serving

AWS_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_EC2_METADATA_DISABLED": "true",
}


def _moto_server() -> Iterator[str]:
    """A moto server in a thread, bound to 127.0.0.1 on a free port."""
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # one line per request otherwise

    for k, v in AWS_ENV.items():
        os.environ.setdefault(k, v)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@pytest.fixture(scope="session")
def moto_url() -> Iterator[str]:
    yield from _moto_server()


@pytest.fixture
def own_moto_url() -> Iterator[str]:
    """A moto server of the test's own: moto answers GetMetricData by scanning every datapoint it holds, so a
    test reading a long range from the shared server slows down with whatever earlier tests put there."""
    yield from _moto_server()


@pytest.fixture
def aws_env(monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    for k, v in AWS_ENV.items():
        monkeypatch.setenv(k, v)
    return dict(AWS_ENV)


@dataclass
class AdminApi:
    """A stand-in for the protected system's admin API; counts every call."""

    url: str = ""
    calls: list[tuple[str, str, Any]] = field(default_factory=list)
    # path -> list of statuses to answer in order (the last one repeats); default 200
    script: dict[str, list[int]] = field(default_factory=dict)
    delay: dict[str, float] = field(default_factory=dict)

    def count(self, path: str, method: str | None = None) -> int:
        return sum(1 for m, p, _ in self.calls if p == path and (method is None or m == method))


@pytest.fixture
async def admin_api() -> AsyncIterator[AdminApi]:
    api = AdminApi()

    async def handle(request: web.Request) -> web.Response:
        body: Any = None
        if request.can_read_body:
            try:
                body = await request.json()
            except ValueError:
                body = await request.text()
        api.calls.append((request.method, request.path, body))
        if request.path in api.delay:
            await asyncio.sleep(api.delay[request.path])
        statuses = api.script.get(request.path)
        status = 200
        if statuses:
            status = statuses.pop(0) if len(statuses) > 1 else statuses[0]
        return web.json_response({"ok": status < 400}, status=status)

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handle)
    async with serving(app, shutdown_timeout=60.0) as api.url:
        yield api


@pytest.fixture
def write_config(tmp_path: Any) -> Callable[[str], str]:
    def write(text: str, name: str = "config.yaml") -> str:
        p = tmp_path / name
        p.write_text(text)
        return str(p)

    return write


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    """A client session for tests that drive a source or channel directly."""
    async with aiohttp.ClientSession() as s:
        yield s


@pytest.fixture
def logging_kept() -> Iterator[None]:
    """The commands set the process's logging up (to the captured stderr): put it back for the next test."""
    import structlog

    config, handlers = structlog.get_config(), logging.getLogger().handlers[:]
    yield
    structlog.configure(**config)
    logging.getLogger().handlers[:] = handlers


@pytest.fixture
async def shared_table(moto_url: str, aws_env: dict[str, str]) -> AsyncIterator[Any]:
    """The watchdogs' shared DynamoDB table (watchdog/state/dynamodb/table.py), made in moto, a name of its own,
    through the daemon's own aioboto3 client."""
    import uuid
    from contextlib import AsyncExitStack
    from datetime import timedelta

    from watchdog.config.models import AwsSection
    from watchdog.state.dynamodb.table import Table
    from watchdog.support.aws import aws_client

    async with AsyncExitStack() as stack:
        client = await aws_client(stack, "dynamodb", "us-east-1", AwsSection(endpoint_url=moto_url),
                                  timedelta(seconds=10))
        table = Table(client, f"watchdog-{uuid.uuid4().hex[:8]}")
        assert await table.create() == "created"
        yield table


@pytest.fixture
def state_table(moto_url: str, aws_env: dict[str, str]) -> str:
    """A fresh shared state table in moto, with the keys `state init` gives it (made through boto3: usable from a
    sync test and from an async fixture alike); its name."""
    import uuid

    import boto3

    from watchdog.state.dynamodb.table import KEYS

    name = f"state-{uuid.uuid4().hex[:8]}"
    boto3.client("dynamodb", endpoint_url=moto_url, region_name="us-east-1").create_table(
        TableName=name, KeySchema=KEYS, BillingMode="PAY_PER_REQUEST",
        AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}, {"AttributeName": "sk", "AttributeType": "S"}])
    return name
