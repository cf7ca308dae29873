"""GetMetricData's request with its queries encoded once per batch (issue 22, scope 5).

botocore turns a call's parameters into form fields (QuerySerializer, in Python, member by member: 500 queries
are ~6 000 fields), then urlencodes them when the body is read. The queries of a batch only change with the
config, yet that was a quarter of the daemon's CPU per poll at 1 000 rules (bench/profile.md). Here a batch
(`Batch`) keeps its queries' encoded fields from its first call; botocore serializes only what changes (StartTime,
EndTime, ScanBy, NextToken), and the body is the three encoded parts joined, byte for byte what botocore sends:
the same serializer makes every field and the same urlencode (botocore's own request preparer) encodes them, in
botocore's order (Action, Version, then the parameters as given, the queries first). SigV4 signs that body as it
signs any other. tests/test_cloudwatch_client.py compares the bodies over generated queries.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from types import SimpleNamespace
from typing import Any

__all__ = ["Batch", "EncodedQueries", "encode_queries_once"]

QUERIES = "MetricDataQueries"


class Batch(list[dict[str, Any]]):
    """The queries of one GetMetricData call, the same at every read: `form` is their encoded fields, once sent."""

    __slots__ = ("form",)

    def __init__(self, queries: Iterable[dict[str, Any]] = ()) -> None:
        super().__init__(queries)
        self.form: str | None = None


class EncodedQueries:
    """A client's serializer, with GetMetricData's batches encoded once (see the module's docstring). Every other
    call, and a GetMetricData whose queries are no Batch or do not come first, is botocore's alone."""

    def __init__(self, inner: Any) -> None:
        from botocore.awsrequest import AWSRequestPreparer  # with the client: a replay from its cache never loads it

        self._inner = inner
        self._preparer = AWSRequestPreparer()

    def _encode(self, fields: Iterable[tuple[str, Any]]) -> str:
        # botocore's own encoding of a form body (AWSRequestPreparer._prepare_body: utf-8, urlencode with doseq)
        body: str = self._preparer._prepare_body(SimpleNamespace(data=dict(fields)))
        return body

    def serialize_to_request(self, parameters: Mapping[str, Any], operation_model: Any) -> dict[str, Any]:
        queries = parameters.get(QUERIES)
        if operation_model.name != "GetMetricData" or not isinstance(queries, Batch) or next(iter(parameters)) != QUERIES:
            return dict(self._inner.serialize_to_request(parameters, operation_model))
        request: dict[str, Any] = self._inner.serialize_to_request(
            {k: v for k, v in parameters.items() if k != QUERIES}, operation_model)
        if queries.form is None:
            alone = self._inner.serialize_to_request({QUERIES: queries}, operation_model)["body"]
            queries.form = self._encode((k, v) for k, v in alone.items() if k not in ("Action", "Version"))
        fields = list(request["body"].items())  # Action and Version first (QuerySerializer), then the rest
        request["body"] = "&".join(part for part in (self._encode(fields[:2]), queries.form, self._encode(fields[2:]))
                                   if part)
        return request


def encode_queries_once(client: Any) -> None:
    """Has `client` encode each Batch's queries once. botocore offers no event to replace how a call is
    serialized, so the client's serializer is wrapped where the client keeps it."""
    client._serializer = EncodedQueries(client._serializer)
