"""The AWS clients the watchdog opens, for its sources and its actions alike: aioboto3 with botocore's own
retries off (tenacity owns them, so the two never multiply), each closed with the exit stack it was opened on,
and which errors are worth another try."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AsyncExitStack
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from botocore.exceptions import (
    ClientError,
    ConnectionClosedError,
    ConnectTimeoutError,
    EndpointConnectionError,
    ReadTimeoutError,
)

from watchdog.config.models import AwsSection

if TYPE_CHECKING:
    from aiobotocore.parsers import AioResponseParserFactory

_RETRY_CODES = {
    "Throttling", "ThrottlingException", "RequestLimitExceeded", "TooManyRequestsException",
    "RequestThrottled", "ServiceUnavailable", "InternalFailure", "InternalError", "InternalServiceError",
}
_TRANSIENT = (EndpointConnectionError, ConnectionClosedError, ConnectTimeoutError, ReadTimeoutError)


def response_parser_error() -> type[Exception]:
    """botocore's ResponseParserError, imported when asked: botocore's parsers (about 75 ms to import) load with
    the first client, so a replay from its cache, or a config without AWS, never loads them."""
    from botocore.parsers import ResponseParserError

    return ResponseParserError


def client_error(exc: ClientError) -> str:
    """What AWS said of a refused call, in one line: its code, then its message."""
    err = exc.response.get("Error", {})
    said = " ".join(str(err.get("Message", "")).split())[:200]
    return f"{err.get('Code', 'error')}: {said}".rstrip(": ")


def is_retryable(exc: BaseException) -> bool:
    if isinstance(exc, ClientError):
        err = exc.response.get("Error", {})
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
        return err.get("Code") in _RETRY_CODES or status >= 500 or status == 429
    # An HTML 5xx page from a proxy or a local endpoint fails to parse; it is still a 5xx.
    return isinstance(exc, (*_TRANSIENT, response_parser_error()))


async def aws_client(stack: AsyncExitStack, service: str, region: str, aws: AwsSection, timeout: timedelta, *,
                     validate: bool = True, timestamps: Callable[[str], datetime] | None = None,
                     parsers: AioResponseParserFactory | None = None) -> Any:
    """An aioboto3 client with botocore's retries off (tenacity owns them), closed with `stack`.
    `validate=False` skips botocore's check of each request against the API model (for requests built once
    from a validated config); `timestamps` parses this client's answer times (per session, not global);
    `parsers` makes this client's response parsers (registered before the timestamp parser is set on it).
    aioboto3 and botocore's session are imported here, with the first client (about 0.1 s), not by every
    command that only reads a config."""
    import aioboto3
    from aiobotocore.session import AioSession
    from botocore.config import Config as BotoConfig

    from watchdog.support.aws_endpoints import endpoints_of

    core = AioSession()
    # Only this service's endpoints kept: 5 000 rules, the daemon's peak RSS 124.3 -> 117.8 MB (bench/README.md)
    core.register_component("data_loader", endpoints_of(service, core.get_config_variable("data_path")))
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
