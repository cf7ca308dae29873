"""GetMetricData's request with its queries encoded once per batch (issue 22, scope 5).

botocore turns a call's parameters into form fields (QuerySerializer, in Python, member by member: 500 queries
are ~6 000 fields), then urlencodes them when the body is read. The queries of a batch only change with the
config, yet that was a quarter of the daemon's CPU per poll at 1 000 rules (bench/profile.md). Here a batch
(`Batch`) keeps its queries' encoded fields from its first call; botocore serializes only what changes (StartTime,
EndTime, ScanBy, NextToken), and the body is the three encoded parts joined, byte for byte what botocore sends:
the same serializer makes every field and the same urlencode (botocore's own request preparer) encodes them, in
botocore's order (Action, Version, then the parameters as given, the queries first). SigV4 signs that body as it
signs any other. tests/test_cloudwatch_client.py compares the bodies over generated queries.

`DirectCalls` then sends a batch's later calls without the client's per-call machinery (events, endpoint rules,
the user agent built anew, the signer's choice): half of a 500-query call's CPU beyond reading its answer (bench/README.md).
It learns from the client's own first call where it went, with which headers and under which signature scheme; a
later call is that request again, with its new body, signed by botocore's SigV4Auth with the client's credentials,
sent by the client's own HTTP session (its proxies, TLS and timeouts), its answer read by the client's own parser,
an error raised as the client raises it. Anything it did not learn goes through the client.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Iterable, Mapping
from types import SimpleNamespace
from typing import Any, NamedTuple

__all__ = ["Batch", "DirectCalls", "EncodedQueries", "encode_queries_once"]

QUERIES = "MetricDataQueries"


class Batch(list[dict[str, Any]]):
    """The queries of one GetMetricData call, the same at every read: `form` is their encoded fields, once sent;
    `head` the body's start up to and with them, and `hashed` its SHA-256 so far, once DirectCalls has sent it."""

    __slots__ = ("form", "head", "hashed")

    def __init__(self, queries: Iterable[dict[str, Any]] = ()) -> None:
        super().__init__(queries)
        self.form: str | None = None
        self.head: bytes | None = None
        self.hashed: Any = None  # hashlib's sha256 of `head`, copied for each call's body


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

    def encoded(self, parameters: Mapping[str, Any], operation_model: Any) -> tuple[dict[str, Any], str, str] | None:
        """A Batch call's request as botocore makes it, its body's encoded parts apart: Action and Version, and
        what follows the queries (their own, `form`, are kept on the Batch). None: not a Batch call."""
        queries = parameters.get(QUERIES)
        if operation_model.name != "GetMetricData" or not isinstance(queries, Batch) or next(iter(parameters)) != QUERIES:
            return None
        request: dict[str, Any] = self._inner.serialize_to_request(
            {k: v for k, v in parameters.items() if k != QUERIES}, operation_model)
        if queries.form is None:
            alone = self._inner.serialize_to_request({QUERIES: queries}, operation_model)["body"]
            queries.form = self._encode((k, v) for k, v in alone.items() if k not in ("Action", "Version"))
        fields = list(request["body"].items())  # Action and Version first (QuerySerializer), then the rest
        return request, self._encode(fields[:2]), self._encode(fields[2:])

    def serialize_to_request(self, parameters: Mapping[str, Any], operation_model: Any) -> dict[str, Any]:
        parts = self.encoded(parameters, operation_model)
        if parts is None:
            return dict(self._inner.serialize_to_request(parameters, operation_model))
        request, first, rest = parts
        request["body"] = "&".join(part for part in (first, parameters[QUERIES].form, rest) if part)
        return request


def encode_queries_once(client: Any) -> None:
    """Has `client` encode each Batch's queries once. botocore offers no event to replace how a call is
    serialized, so the client's serializer is wrapped where the client keeps it."""
    client._serializer = EncodedQueries(client._serializer)


# What changes from one call to the next: set anew for each (the length by the HTTP session).
_PER_CALL = frozenset({"authorization", "x-amz-date", "x-amz-security-token", "amz-sdk-invocation-id", "content-length"})
_SIGV4 = "AWS4-HMAC-SHA256 "


class _Learned(NamedTuple):
    url: str
    signed: tuple[tuple[str, str], ...]  # the headers the client signed (but the date), set before signing
    unsigned: tuple[tuple[str, str], ...]  # those it added after (the SDK's own), set after
    region: str
    service: str
    invocation_id: bool  # the client sends one (a fresh one per call, unsigned)


_PAYLOAD = "watchdog_payload_sha256"  # a request's context: its body's SHA-256, hex, as DirectCalls made it


def _known_payload() -> type:
    """botocore's SigV4Auth, taking the body's hash from the request's context where DirectCalls put it (made from
    the batch's kept state) instead of hashing the whole body again; signing is otherwise botocore's."""
    from botocore.auth import SigV4Auth

    class KnownPayload(SigV4Auth):
        def payload(self, request: Any) -> str:
            known = request.context.get(_PAYLOAD)
            return known if isinstance(known, str) else str(super().payload(request))

    return KnownPayload


def _text(value: str | bytes) -> str:
    """A header's value, as botocore's signer leaves it (bytes) or as it was set (str)."""
    return value.decode() if isinstance(value, bytes) else value


class DirectCalls:
    """GetMetricData of a Batch sent as the client sent its first (see the module's docstring)."""

    OPERATION = "GetMetricData"

    def __init__(self, client: Any) -> None:
        from botocore.awsrequest import AWSRequest

        self._client = client
        self._sign, self._request = _known_payload(), AWSRequest
        self._model = client.meta.service_model.operation_model(self.OPERATION)
        self._learned: _Learned | None = None
        self._parser: Any = None
        service_id = client.meta.service_model.service_id.hyphenize()
        client.meta.events.register(f"before-send.{service_id}.{self.OPERATION}", self._learn)

    @property
    def learned(self) -> bool:
        """Whether a Batch's calls are sent directly now."""
        return self._learned is not None

    def _learn(self, request: Any, **_: Any) -> None:
        """The client's request, as signed and about to go (botocore's before-send event; None: it goes)."""
        if self._learned is not None:
            return
        auth = _text(request.headers.get("Authorization", ""))
        fields = dict(f.strip().partition("=")[::2] for f in auth[len(_SIGV4):].split(","))
        scope, signed = fields.get("Credential", "").split("/"), set(fields.get("SignedHeaders", "").split(";"))
        if not auth.startswith(_SIGV4) or len(scope) != 5 or scope[4] != "aws4_request":
            return  # another signature scheme: every call stays the client's
        kept = [(k, _text(v)) for k, v in request.headers.items() if k.lower() not in _PER_CALL]
        self._learned = _Learned(request.url, tuple((k, v) for k, v in kept if k.lower() in signed),
                                 tuple((k, v) for k, v in kept if k.lower() not in signed), scope[2], scope[3],
                                 "amz-sdk-invocation-id" in {k.lower() for k in request.headers})
        self._parser = self._client._endpoint._response_parser_factory.create_parser(
            self._client.meta.service_model.metadata["protocol"])

    async def get_metric_data(self, **params: Any) -> dict[str, Any]:
        learned, client = self._learned, self._client
        credentials = client._request_signer._credentials
        # Not learned yet, no credentials, or no Batch (EncodedQueries says None): the client sends it.
        parts = None if learned is None or credentials is None else client._serializer.encoded(params, self._model)
        if learned is None or parts is None:
            answer: dict[str, Any] = await client.get_metric_data(**params)
            return answer
        _, first, rest = parts
        batch: Batch = params[QUERIES]
        if batch.head is None:
            batch.head = "&".join(part for part in (first, batch.form) if part).encode()
            batch.hashed = hashlib.sha256(batch.head)
        # The body's kept head and its hash so far, and only the times encoded and hashed: a 1 000-rule poll's
        # two bodies, built and signed, 0.59 -> 0.20 ms of CPU (timeit-like, in process).
        tail = f"&{rest}".encode() if rest else b""
        digest = batch.hashed.copy()
        digest.update(tail)
        request = self._request("POST", learned.url, data=batch.head + tail, headers=dict(learned.signed))
        request.context[_PAYLOAD] = digest.hexdigest()
        self._sign(await credentials.get_frozen_credentials(), learned.service, learned.region).add_auth(request)
        for name, value in learned.unsigned:  # as botocore adds them: after signing
            request.headers[name] = value
        if learned.invocation_id:
            request.headers["amz-sdk-invocation-id"] = str(uuid.uuid4())
        http = await client._endpoint.http_session.send(request.prepare())
        parsed: dict[str, Any] = await self._parser.parse(
            {"headers": http.headers, "status_code": http.status_code, "body": await http.content,
             "context": {"operation_name": self.OPERATION}}, self._model.output_shape)
        if http.status_code >= 300:  # as the client raises it (aiobotocore client._make_api_call)
            raise client.exceptions.from_code(parsed.get("Error", {}).get("Code"))(parsed, self.OPERATION)
        return parsed
