"""The endpoints data an AWS client's session holds: its own service's, not every service's (support/aws.py).
Loaded with the first client: botocore's loader is not imported before one is opened."""

from __future__ import annotations

from typing import Any

from botocore.loaders import Loader, create_loader, instance_cache

# The services botocore's credential chain opens clients for on the same session (assume-role, SSO).
_CREDENTIAL_SERVICES = ("sts", "portal.sso", "oidc")


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
