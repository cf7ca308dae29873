"""Fakes of the few AWS APIs moto does not answer as AWS documents (../shared/aws-emulators.md), each an aiohttp
server on loopback speaking the real wire protocol, so the daemon's own aioboto3 client talks to it unchanged.

- Lambda aliases (REST-JSON): moto returns a RevisionId that never changes and accepts a stale one. Here every
  change of an alias makes a new RevisionId, and UpdateAlias with an old one answers 412
  PreconditionFailedException, as Lambda does.
- ECS services (JSON 1.1): after UpdateService moto shows the old task definition PRIMARY and IN_PROGRESS
  forever. Here a rollout moves on as ECS's does and ends COMPLETED on the new task definition (or never, or
  FAILED, when a test says so).
- AppConfig (REST-JSON): moto has no environments or deployments (404) and ignores LatestVersionNumber. Here
  deployments run to COMPLETE (or roll back), StopDeployment rolls one back (only one DEPLOYING, unless
  AllowRevert), StartDeployment refuses while one is unfinished, and a stale LatestVersionNumber answers 409
  ConflictException, as AppConfig documents.
"""

from __future__ import annotations

import json
import time
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


# --- ECS (JSON 1.1) --------------------------------------------------------------------------------------------

ECS_TARGET = "AmazonEC2ContainerServiceV20141113."
ECS_OPS = ("DescribeServices", "UpdateService", "ListTaskDefinitions", "TagResource")
APPCONFIG_OPS = ("ListApplications", "ListEnvironments", "ListConfigurationProfiles", "ListHostedConfigurationVersions",
                 "GetHostedConfigurationVersion", "CreateHostedConfigurationVersion", "ListDeployments",
                 "StartDeployment", "GetDeployment", "StopDeployment")


@dataclass
class EcsFake:
    """Services whose rollouts run as ECS's do: UpdateService makes a new PRIMARY deployment (IN_PROGRESS, no task
    running) and turns the old one ACTIVE; each DescribeServices after it moves the rollout on, and after
    `rollout_reads` of them the new deployment runs every task, is COMPLETED and the old one is gone. moto leaves
    the old task definition PRIMARY and IN_PROGRESS forever. `stuck`: the rollout never completes; `fail`: ECS
    marks it FAILED with that reason."""

    url: str = ""
    region: str = "us-east-1"
    families: dict[str, list[int]] = field(default_factory=dict)  # family -> ACTIVE revisions
    services: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    rollout_reads: int = 2
    stuck: bool = False
    fail: str | None = None
    _reads: dict[tuple[str, str], int] = field(default_factory=dict)

    def arn(self, family: str, rev: int) -> str:
        return f"arn:aws:ecs:{self.region}:123456789012:task-definition/{family}:{rev}"

    def service(self, cluster: str, name: str, family: str, rev: int, desired: int = 2) -> dict[str, Any]:
        svc = {"serviceArn": f"arn:aws:ecs:{self.region}:123456789012:service/{cluster}/{name}", "serviceName": name,
               "clusterArn": f"arn:aws:ecs:{self.region}:123456789012:cluster/{cluster}", "status": "ACTIVE",
               "taskDefinition": self.arn(family, rev), "desiredCount": desired, "runningCount": desired, "tags": [],
               "deployments": [self._deployment(self.arn(family, rev), desired, desired, "PRIMARY", "COMPLETED")]}
        self.services[(cluster, name)] = svc
        return svc

    def _deployment(self, arn: str, desired: int, running: int, status: str, rollout: str) -> dict[str, Any]:
        return {"id": f"ecs-svc/{uuid.uuid4().int % 10**19}", "status": status, "taskDefinition": arn,
                "desiredCount": desired, "runningCount": running, "pendingCount": desired - running,
                "rolloutState": rollout, "createdAt": time.time()}

    def deploy(self, cluster: str, name: str, arn: str) -> None:
        """UpdateService's effect (somebody else's deploy too)."""
        svc = self.services[(cluster, name)]
        for d in svc["deployments"]:
            d["status"] = "ACTIVE"
        svc["deployments"].insert(0, self._deployment(arn, svc["desiredCount"], 0, "PRIMARY", "IN_PROGRESS"))
        svc["taskDefinition"] = arn
        self._reads[(cluster, name)] = 0

    def _advance(self, key: tuple[str, str]) -> None:
        svc = self.services[key]
        primary = svc["deployments"][0]
        if primary["rolloutState"] != "IN_PROGRESS" or self.stuck:
            return
        self._reads[key] = self._reads.get(key, 0) + 1
        if self.fail is not None:
            primary.update(rolloutState="FAILED", rolloutStateReason=self.fail)
        elif self._reads[key] >= self.rollout_reads:
            primary.update(runningCount=primary["desiredCount"], pendingCount=0, rolloutState="COMPLETED")
            svc["deployments"] = [primary]


def _ecs_error(kind: str, message: str) -> web.Response:
    return web.json_response({"__type": kind, "message": message}, status=400,
                             content_type="application/x-amz-json-1.1")


@asynccontextmanager
async def ecs_fake() -> AsyncIterator[EcsFake]:
    fake = EcsFake()

    async def handle(request: web.Request) -> web.Response:
        op = request.headers.get("X-Amz-Target", "").removeprefix(ECS_TARGET)
        body = json.loads(await request.read() or b"{}")
        cluster = str(body.get("cluster", "default")).rsplit("/", 1)[-1]
        if op == "DescribeServices":
            out, failures = [], []
            for name in body.get("services", []):
                key = (cluster, name.rsplit("/", 1)[-1])
                if key not in fake.services:
                    failures.append({"arn": name, "reason": "MISSING"})
                    continue
                fake._advance(key)
                svc = dict(fake.services[key])
                if "TAGS" not in body.get("include", []):
                    svc.pop("tags")
                out.append(svc)
            return web.json_response({"services": out, "failures": failures},
                                     content_type="application/x-amz-json-1.1")
        if op == "UpdateService":
            key = (cluster, str(body["service"]).rsplit("/", 1)[-1])
            if key not in fake.services:
                return _ecs_error("ServiceNotFoundException", "Service not found.")
            arn = str(body.get("taskDefinition", fake.services[key]["taskDefinition"]))
            family, _, rev = arn.rsplit("/", 1)[-1].rpartition(":")
            if not rev.isdigit() or int(rev) not in fake.families.get(family, []):
                return _ecs_error("ClientException", "TaskDefinition not found.")
            fake.deploy(*key, fake.arn(family, int(rev)))
            return web.json_response({"service": fake.services[key]}, content_type="application/x-amz-json-1.1")
        if op == "ListTaskDefinitions":
            family = body.get("familyPrefix", "")
            revs = sorted(fake.families.get(family, []), reverse=body.get("sort") == "DESC")
            start = int(body.get("nextToken") or 0)
            page = revs[start:start + 2]  # two a page, so that paging is exercised
            out = {"taskDefinitionArns": [fake.arn(family, r) for r in page]}
            if start + 2 < len(revs):
                out["nextToken"] = str(start + 2)
            return web.json_response(out, content_type="application/x-amz-json-1.1")
        if op == "TagResource":
            for svc in fake.services.values():
                if svc["serviceArn"] == body.get("resourceArn"):
                    kept = [t for t in svc["tags"] if t["key"] not in {n["key"] for n in body.get("tags", [])}]
                    svc["tags"] = kept + list(body.get("tags", []))
                    return web.json_response({}, content_type="application/x-amz-json-1.1")
            return _ecs_error("InvalidParameterException", "The specified resource is not found.")
        return _ecs_error("UnknownOperationException", f"not faked: {op}")

    app = web.Application()
    app.router.add_post("/", handle)
    async with serving(app) as fake.url:
        yield fake


# --- AppConfig (REST-JSON) -------------------------------------------------------------------------------------

@dataclass
class AppConfigFake:
    """One application with environments and feature-flag profiles, hosted versions that honour
    LatestVersionNumber (a stale one answers 409 ConflictException), and deployments that run: StartDeployment
    makes one DEPLOYING, each GetDeployment moves it on, and after `deploy_reads` of them it is COMPLETE;
    StopDeployment rolls it back. moto answers 404 for environments and deployments and ignores
    LatestVersionNumber. `stuck`: deployments never complete; `roll_back`: they end ROLLED_BACK."""

    url: str = ""
    apps: dict[str, str] = field(default_factory=dict)  # id -> name
    envs: dict[str, str] = field(default_factory=dict)
    profiles: dict[str, str] = field(default_factory=dict)
    versions: dict[str, list[bytes]] = field(default_factory=dict)  # profile id -> contents, version = index + 1
    deployments: dict[str, list[dict[str, Any]]] = field(default_factory=dict)  # environment id -> oldest first
    deploy_reads: int = 2
    stuck: bool = False
    roll_back: bool = False
    _reads: dict[tuple[str, int], int] = field(default_factory=dict)

    def setup(self) -> None:
        self.apps["app1"], self.envs["env1"], self.profiles["prof1"] = "shop", "prod", "flags"
        self.versions["prof1"], self.deployments["env1"] = [], []

    def hosted(self, content: Any) -> int:
        """A hosted version made by somebody else (a release)."""
        self.versions["prof1"].append(json.dumps(content).encode())
        return len(self.versions["prof1"])

    def deploy(self, version: int, state: str = "COMPLETE") -> dict[str, Any]:
        deps = self.deployments["env1"]
        d = {"ApplicationId": "app1", "EnvironmentId": "env1", "DeploymentStrategyId": "AppConfig.AllAtOnce",
             "ConfigurationProfileId": "prof1", "DeploymentNumber": len(deps) + 1, "ConfigurationName": "flags",
             "ConfigurationVersion": str(version), "State": state,
             "PercentageComplete": 100.0 if state == "COMPLETE" else 0.0}
        deps.append(d)
        return d

    def on(self) -> tuple[str, str, Any]:
        """The environment's newest deployment: its version, state and the content of that version."""
        d = self.deployments["env1"][-1]
        return d["ConfigurationVersion"], d["State"], json.loads(self.versions["prof1"][int(d["ConfigurationVersion"]) - 1])


FINISHED = ("COMPLETE", "ROLLED_BACK", "REVERTED")


def _appconfig_error(status: int, kind: str, message: str) -> web.Response:
    return web.json_response({"Message": message}, status=status, headers={"x-amzn-ErrorType": kind})


@asynccontextmanager
async def appconfig_fake() -> AsyncIterator[AppConfigFake]:
    fake = AppConfigFake()
    fake.setup()

    def items(named: dict[str, str]) -> web.Response:
        return web.json_response({"Items": [{"Id": k, "Name": v} for k, v in named.items()]})

    async def apps(request: web.Request) -> web.Response:
        return items(fake.apps)

    async def envs(request: web.Request) -> web.Response:
        return items(fake.envs)

    async def profiles(request: web.Request) -> web.Response:
        return items(fake.profiles)

    async def list_versions(request: web.Request) -> web.Response:
        p = request.match_info["p"]
        vs = list(range(len(fake.versions.get(p, [])), 0, -1))  # newest first
        return web.json_response({"Items": [{"ApplicationId": "app1", "ConfigurationProfileId": p, "VersionNumber": v,
                                             "ContentType": "application/json"} for v in vs]})

    async def get_version(request: web.Request) -> web.Response:
        p, v = request.match_info["p"], int(request.match_info["v"])
        if not 1 <= v <= len(fake.versions.get(p, [])):
            return _appconfig_error(404, "ResourceNotFoundException", "version not found")
        return web.Response(body=fake.versions[p][v - 1], content_type="application/json",
                            headers={"Application-Id": "app1", "Configuration-Profile-Id": p, "Version-Number": str(v)})

    async def create_version(request: web.Request) -> web.Response:
        p = request.match_info["p"]
        given = request.headers.get("Latest-Version-Number")
        if given is not None and int(given) != len(fake.versions[p]):
            return _appconfig_error(409, "ConflictException", "LatestVersionNumber does not match the latest version")
        fake.versions[p].append(await request.read())
        v = len(fake.versions[p])
        return web.Response(body=fake.versions[p][-1], status=201, content_type="application/json",
                            headers={"Application-Id": "app1", "Configuration-Profile-Id": p, "Version-Number": str(v)})

    async def list_deployments(request: web.Request) -> web.Response:
        deps = fake.deployments[request.match_info["e"]]
        keys = ("DeploymentNumber", "ConfigurationName", "ConfigurationVersion", "State", "PercentageComplete")
        return web.json_response({"Items": [{k: d[k] for k in keys} for d in reversed(deps)]})

    async def start(request: web.Request) -> web.Response:
        body = json.loads(await request.read())
        if any(d["State"] not in FINISHED for d in fake.deployments[request.match_info["e"]]):
            return _appconfig_error(409, "ConflictException", "a deployment is in progress in this environment")
        if not 1 <= int(body["ConfigurationVersion"]) <= len(fake.versions[body["ConfigurationProfileId"]]):
            return _appconfig_error(400, "BadRequestException", "no such version")
        return web.json_response(fake.deploy(int(body["ConfigurationVersion"]), "DEPLOYING"), status=201)

    def find(request: web.Request) -> dict[str, Any] | None:
        n = int(request.match_info["n"])
        deps = fake.deployments[request.match_info["e"]]
        return deps[n - 1] if 1 <= n <= len(deps) else None

    async def get_deployment(request: web.Request) -> web.Response:
        d = find(request)
        if d is None:
            return _appconfig_error(404, "ResourceNotFoundException", "deployment not found")
        if d["State"] == "ROLLING_BACK":  # a stopped deployment takes a read to have rolled back
            d.update(State="ROLLED_BACK")
        elif d["State"] == "DEPLOYING" and not fake.stuck:
            key = (d["EnvironmentId"], d["DeploymentNumber"])
            fake._reads[key] = fake._reads.get(key, 0) + 1
            if fake.roll_back:
                d.update(State="ROLLED_BACK")
            elif fake._reads[key] >= fake.deploy_reads:
                d.update(State="COMPLETE", PercentageComplete=100.0)
        return web.json_response(d)

    async def stop(request: web.Request) -> web.Response:
        d = find(request)
        if d is None:
            return _appconfig_error(404, "ResourceNotFoundException", "deployment not found")
        revert = request.headers.get("Allow-Revert") == "true"
        # AppConfig: "works only on deployments that have a status of DEPLOYING, unless an AllowRevert parameter
        # is supplied"; with it, an in-progress deployment ends ROLLED_BACK, a completed one REVERTED.
        if d["State"] != "DEPLOYING" and not (revert and d["State"] in ("BAKING", "VALIDATING", "COMPLETE")):
            return _appconfig_error(400, "BadRequestException", f"cannot stop a deployment in state {d['State']}")
        d.update(State="REVERTED" if d["State"] == "COMPLETE" else "ROLLING_BACK")
        return web.json_response(d, status=202)

    app = web.Application()
    base = "/applications/{a}"
    app.router.add_get("/applications", apps)
    app.router.add_get(base + "/environments", envs)
    app.router.add_get(base + "/configurationprofiles", profiles)
    app.router.add_get(base + "/configurationprofiles/{p}/hostedconfigurationversions", list_versions)
    app.router.add_post(base + "/configurationprofiles/{p}/hostedconfigurationversions", create_version)
    app.router.add_get(base + "/configurationprofiles/{p}/hostedconfigurationversions/{v}", get_version)
    app.router.add_get(base + "/environments/{e}/deployments", list_deployments)
    app.router.add_post(base + "/environments/{e}/deployments", start)
    app.router.add_get(base + "/environments/{e}/deployments/{n}", get_deployment)
    app.router.add_delete(base + "/environments/{e}/deployments/{n}", stop)
    async with serving(app) as fake.url:
        yield fake
