"""The AWS clients the watchdog opens (watchdog/support/aws.py): each session keeps, of botocore's endpoints data
(every service of every partition), only its own service's entries and the credential chain's.

The expectations come from botocore itself: a client of a plain botocore session, made with the same arguments,
resolves the same endpoint, region, partition and signing name and region. moto in server mode answers the
requests."""

from __future__ import annotations

import gc
import tracemalloc
from contextlib import AsyncExitStack
from datetime import timedelta
from typing import Any

import pytest
from aiobotocore.session import AioSession
from botocore.config import Config as BotoConfig

from watchdog.config.models import AwsSection
from watchdog.support.aws import aws_client

# The services the watchdog opens clients for (sources and actions), each in partitions whose endpoints differ.
SERVICES = ["cloudwatch", "sqs", "securityhub", "ce", "sts"]
REGIONS = ["us-east-1", "eu-west-3", "cn-north-1", "us-gov-west-1", "us-iso-east-1"]


def _resolved(client: Any) -> tuple[Any, ...]:
    signer = client._request_signer  # what the client signs with: no public view of it
    return (client.meta.endpoint_url, client.meta.region_name, client.meta.partition, signer.region_name,
            signer.signing_name, signer.signature_version)


@pytest.mark.parametrize("service", SERVICES)
@pytest.mark.parametrize("endpoint_url", [None, "http://127.0.0.1:9"])
async def test_a_client_resolves_as_botocores_own(service: str, endpoint_url: str | None, aws_env: Any) -> None:
    async with AsyncExitStack() as stack:
        for region in REGIONS:
            aws = AwsSection(region=region, endpoint_url=endpoint_url)
            ours = await aws_client(stack, service, region, aws, timedelta(seconds=5))
            cfg = BotoConfig(retries={"total_max_attempts": 1, "mode": "standard"})
            theirs = await stack.enter_async_context(
                AioSession().create_client(service, region_name=region, endpoint_url=endpoint_url, config=cfg))
            assert _resolved(ours) == _resolved(theirs), (service, region)


async def _kept_by_a_client(make: Any) -> int:
    """Python allocations still held after a client is made (and while it lives)."""
    async with AsyncExitStack() as stack:
        await make(stack)  # the imports and caches a first client brings are not the client's own
        gc.collect()
        tracemalloc.start()
        try:
            client = await make(stack)
            gc.collect()
            kept, _ = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        assert client is not None
        return kept


async def test_a_client_keeps_only_its_services_endpoints(moto_url: str, aws_env: Any) -> None:
    """botocore's endpoints data is over 6 MB of objects, which a plain session keeps as long as its client;
    the watchdog's client keeps its own service's entries and the partitions', well under 2 MB in all. And it
    still answers."""
    aws = AwsSection(region="us-east-1", endpoint_url=moto_url)

    async def ours(stack: AsyncExitStack) -> Any:
        return await aws_client(stack, "cloudwatch", "us-east-1", aws, timedelta(seconds=5))

    async def plain(stack: AsyncExitStack) -> Any:
        return await stack.enter_async_context(
            AioSession().create_client("cloudwatch", region_name="us-east-1", endpoint_url=moto_url))

    kept_plain, kept_ours = await _kept_by_a_client(plain), await _kept_by_a_client(ours)
    assert kept_plain > 6 * 2**20, kept_plain  # the measure sees the whole file where it is kept
    assert kept_ours < 2 * 2**20, kept_ours
    async with AsyncExitStack() as stack:
        client = await ours(stack)
        got = await client.list_metrics(Namespace="NoSuchNamespace")
        assert got["Metrics"] == []
