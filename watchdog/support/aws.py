"""The AWS clients the watchdog opens, for its sources and its actions alike: aioboto3 with botocore's own
retries off (tenacity owns them, so the two never multiply), each closed with the exit stack it was opened on,
and which errors are worth another try."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AsyncExitStack
from datetime import datetime, timedelta
from typing import Any

import aioboto3
from aiobotocore.parsers import AioResponseParserFactory
from aiobotocore.session import AioSession
from botocore.config import Config as BotoConfig
from botocore.exceptions import (
    ClientError,
    ConnectionClosedError,
    ConnectTimeoutError,
    EndpointConnectionError,
    ReadTimeoutError,
)
from botocore.parsers import ResponseParserError

from watchdog.config.models import AwsSection

_RETRY_CODES = {
    "Throttling", "ThrottlingException", "RequestLimitExceeded", "TooManyRequestsException",
    "RequestThrottled", "ServiceUnavailable", "InternalFailure", "InternalError", "InternalServiceError",
}
_TRANSIENT = (EndpointConnectionError, ConnectionClosedError, ConnectTimeoutError, ReadTimeoutError, ResponseParserError)


def is_retryable(exc: BaseException) -> bool:
    if isinstance(exc, ClientError):
        err = exc.response.get("Error", {})
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
        return err.get("Code") in _RETRY_CODES or status >= 500 or status == 429
    # An HTML 5xx page from a proxy or a local endpoint fails to parse; it is still a 5xx.
    return isinstance(exc, _TRANSIENT)


async def aws_client(stack: AsyncExitStack, service: str, region: str, aws: AwsSection, timeout: timedelta, *,
                     validate: bool = True, timestamps: Callable[[str], datetime] | None = None,
                     parsers: AioResponseParserFactory | None = None) -> Any:
    """An aioboto3 client with botocore's retries off (tenacity owns them), closed with `stack`.
    `validate=False` skips botocore's check of each request against the API model (for requests built once
    from a validated config); `timestamps` parses this client's answer times (per session, not global);
    `parsers` makes this client's response parsers (registered before the timestamp parser is set on it)."""
    core = AioSession()
    if parsers is not None:
        core.register_component("response_parser_factory", parsers)
    if timestamps is not None:
        core.get_component("response_parser_factory").set_parser_defaults(timestamp_parser=timestamps)
    session = aioboto3.Session(botocore_session=core, profile_name=aws.profile)
    secs = timeout.total_seconds()
    cfg = BotoConfig(retries={"total_max_attempts": 1, "mode": "standard"}, connect_timeout=secs, read_timeout=secs,
                     parameter_validation=validate)
    return await stack.enter_async_context(
        session.client(service, region_name=region, endpoint_url=aws.endpoint_url, config=cfg)
    )
