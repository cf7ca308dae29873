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
from botocore.loaders import Loader, create_loader, instance_cache
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
# The services botocore's credential chain opens clients for on the same session (assume-role, SSO).
_CREDENTIAL_SERVICES = ("sts", "portal.sso", "oidc")
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


class _OneServiceEndpoints(Loader):
    """botocore's data loader, except that the endpoints data it hands the session names only `service`'s
    endpoints (and those of the credential chain's services), every partition kept. botocore's endpoints.json
    names every service of every partition: 6.6 MB of objects a session holds as long as its client, of which
    a client reads its own service's entries (its signing region and name) and the partitions' (regions,
    defaults); a service left out is resolved by its partition's defaults, as botocore resolves one it does
    not know."""

    def __init__(self, service: str, **kw: Any):
        super().__init__(**kw)
        self._service = service

    @instance_cache
    def load_data_with_path(self, name: str) -> tuple[Any, str]:
        data, path = super().load_data_with_path(name)  # cached under the same key: replaced by what returns
        if name != "endpoints":
            return data, path
        own = self.load_service_model(self._service, "service-2", api_version=None)["metadata"]["endpointPrefix"]
        keep = {own, *_CREDENTIAL_SERVICES}
        return {**data, "partitions": [
            {**p, "services": {k: v for k, v in p["services"].items() if k in keep}} for p in data["partitions"]]}, path


def endpoints_of(service: str, data_path: str | None) -> Loader:
    """The data loader of a session opened for `service`'s client, searching where botocore's own would
    (`data_path`: the session's AWS_DATA_PATH, read by botocore)."""
    paths = create_loader(data_path).search_paths
    return _OneServiceEndpoints(service, extra_search_paths=paths, include_default_search_paths=False)
