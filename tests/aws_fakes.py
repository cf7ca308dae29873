"""Fakes of the few AWS APIs moto does not answer as AWS documents (../shared/aws-emulators.md), each an aiohttp
server on loopback speaking the real wire protocol, so the daemon's own aioboto3 client talks to it unchanged.

- Lambda aliases (REST-JSON): moto returns a RevisionId that never changes and accepts a stale one. Here every
  change of an alias makes a new RevisionId, and UpdateAlias with an old one answers 412
  PreconditionFailedException, as Lambda does.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from loopback import serving


@dataclass
class LambdaFake:
    url: str = ""
    versions: dict[str, list[int]] = field(default_factory=dict)  # function -> published versions
    aliases: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)

    def alias(self, function: str, name: str, version: int, weights: dict[str, float] | None = None,
              description: str = "") -> dict[str, Any]:
        """Create or change an alias as somebody else would (a deploy): a new RevisionId."""
        self.aliases[(function, name)] = {
            "AliasArn": f"arn:aws:lambda:us-east-1:123456789012:function:{function}:{name}", "Name": name,
            "FunctionVersion": str(version), "Description": description,
            "RoutingConfig": {"AdditionalVersionWeights": dict(weights or {})}, "RevisionId": str(uuid.uuid4())}
        return self.aliases[(function, name)]


def _error(status: int, kind: str, message: str) -> web.Response:
    return web.json_response({"Type": "User", "Message": message}, status=status,
                             headers={"x-amzn-ErrorType": kind})


@asynccontextmanager
async def lambda_fake() -> AsyncIterator[LambdaFake]:
    fake = LambdaFake()

    async def get_alias(request: web.Request) -> web.Response:
        key = (request.match_info["fn"], request.match_info["name"])
        if key not in fake.aliases:
            return _error(404, "ResourceNotFoundException", f"Alias not found: {key[0]}:{key[1]}")
        return web.json_response(fake.aliases[key])

    async def update_alias(request: web.Request) -> web.Response:
        key = (request.match_info["fn"], request.match_info["name"])
        if key not in fake.aliases:
            return _error(404, "ResourceNotFoundException", f"Alias not found: {key[0]}:{key[1]}")
        body = json.loads(await request.read() or b"{}")
        alias = fake.aliases[key]
        if "RevisionId" in body and body["RevisionId"] != alias["RevisionId"]:
            return _error(412, "PreconditionFailedException", "The Revision Id provided does not match the latest "
                          "Revision Id. Call the GetFunction/GetAlias API to retrieve the latest Revision Id")
        version = body.get("FunctionVersion", alias["FunctionVersion"])
        if int(version) not in fake.versions.get(key[0], []):
            return _error(404, "ResourceNotFoundException", f"Function not found: {key[0]}:{version}")
        changed = {**alias, "FunctionVersion": version,
                   "Description": body.get("Description", alias["Description"]),
                   "RoutingConfig": body.get("RoutingConfig", alias["RoutingConfig"]),
                   "RevisionId": str(uuid.uuid4())}
        fake.aliases[key] = changed
        return web.json_response(changed)

    async def list_versions(request: web.Request) -> web.Response:
        fn = request.match_info["fn"]
        if fn not in fake.versions:
            return _error(404, "ResourceNotFoundException", f"Function not found: {fn}")
        # two a page, so that paging is exercised
        start = int(request.query.get("Marker", "0"))
        every = [{"Version": "$LATEST"}] + [{"Version": str(v)} for v in sorted(fake.versions[fn])]
        page = every[start:start + 2]
        out: dict[str, Any] = {"Versions": page}
        if start + 2 < len(every):
            out["NextMarker"] = str(start + 2)
        return web.json_response(out)

    app = web.Application()
    app.router.add_get("/2015-03-31/functions/{fn}/aliases/{name}", get_alias)
    app.router.add_put("/2015-03-31/functions/{fn}/aliases/{name}", update_alias)
    app.router.add_get("/2015-03-31/functions/{fn}/versions", list_versions)
    async with serving(app) as fake.url:
        yield fake
