"""Packaging for an ops host: the daemon installs and runs without the demo's local AWS.

moto (with Flask and Werkzeug under its server) is the `demo` extra, which `make demo` and the dev extra
install and a plain `pip install .` (so deploy/install.sh) does not (docs/operations.md, "Install").
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from aiohttp import web
from loopback import serving_get

from configs import cloudwatch, hybrid_routing, metric_rule, write

ROOT = Path(__file__).resolve().parent.parent
DEMO_ONLY = {"moto", "flask", "werkzeug"}


def _normal(name: str) -> str:
    """A distribution's name as the packaging spec compares them (PEP 503)."""
    return re.sub(r"[-_.]+", "-", name).lower()


def _resolve(project: Path, extra: str = "") -> set[str]:
    """The distributions pip would install for the project (with `extra`), resolved for real into an empty
    environment: `--ignore-installed` so what this venv holds (moto, for the tests) plays no part."""
    r = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--dry-run", "--ignore-installed", "--quiet", "--report", "-",
         f".{extra}"],
        cwd=project, capture_output=True, text=True, timeout=600, check=False)
    assert r.returncode == 0, r.stderr[-3000:]
    return {_normal(item["metadata"]["name"]) for item in json.loads(r.stdout)["install"]}


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """What pip builds the package from, copied: a build in the checkout would leave its egg-info there."""
    where = tmp_path_factory.mktemp("project")
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, where)
    shutil.copytree(ROOT / "watchdog", where / "watchdog", ignore=shutil.ignore_patterns("__pycache__"))
    return where


@pytest.mark.slow
def test_a_plain_install_pulls_in_no_moto_flask_or_werkzeug(project: Path) -> None:
    plain = _resolve(project)
    assert {"rollback-watchdog", "aiohttp", "aioboto3", "pydantic"} <= plain, plain  # it did resolve the daemon
    assert plain & DEMO_ONLY == set(), sorted(plain)


@pytest.mark.slow
@pytest.mark.parametrize("extra", ["[demo]", "[dev]"])
def test_the_demo_and_dev_extras_do_bring_the_local_aws(project: Path, extra: str) -> None:
    """The same resolution sees them when they are asked for (so the plain one's answer means something),
    and the tests' extra still has them: the suite runs moto in server mode as AWS."""
    assert DEMO_ONLY <= _resolve(project, extra)


# --- the installed runtime imports none of them -----------------------------------------------------

DRIVER = textwrap.dedent("""
    import json, sys
    from watchdog.cli.main import main
    config, result = sys.argv[1], sys.argv[2]
    codes = [main(["check-config", "-c", config]), main(["run", "-c", config, "--once"])]
    loaded = sorted(m for m in sys.modules if m.split(".")[0] in {"moto", "flask", "werkzeug"})
    with open(result, "w") as f:
        json.dump({"codes": codes, "loaded": loaded}, f)
""")


async def test_check_config_and_run_once_import_no_moto_flask_or_werkzeug(tmp_path: Path, moto_url: str,
                                                                          aws_env: dict[str, str]) -> None:
    """The paths a production host runs, in a process of their own, against a CloudWatch (moto, in this
    test's process: the child only speaks HTTP to it) and a compliance endpoint on loopback. This venv has
    moto installed, so an import of it anywhere on these paths would show in the child's sys.modules."""
    async def compliance(request: web.Request) -> web.Response:
        return web.json_response({"gdpr": {"compliant": True}})

    async with serving_get("/status", compliance) as url:
        rules = [metric_rule(), {"name": "gdpr", "category": "security", "source": "compliance",
                                 "field": "gdpr.compliant", "threshold": "== false"}]
        sources = [cloudwatch(interval="1m"), {"name": "compliance", "type": "http_json", "url": f"{url}/status",
                                               "interval": "1m"}]
        config = write(tmp_path, hybrid_routing(aws_endpoint=moto_url, sources=sources, rules=rules,
                                                state_path=tmp_path / "w.db"))
        result = tmp_path / "result.json"
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-c", DRIVER, config, str(result), env={**os.environ, **aws_env},
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        out, err = await asyncio.wait_for(proc.communicate(), 120)
    assert proc.returncode == 0, err.decode()
    answer = json.loads(result.read_text())
    assert answer["codes"] == [0, 0], out.decode() + err.decode()
    table = out.decode()
    # run --once read both sources: the compliance rule judged the endpoint's answer, the latency rule was
    # asked of CloudWatch (which holds no datapoint for it)
    assert re.search(r"\bgdpr\s+security\s+ok\s+true\b", table), table
    assert re.search(r"\blatency\s+performance\s+insufficient_data\b.*no datapoints", table), table
    assert answer["loaded"] == []


# --- the demo without them ---------------------------------------------------------------------------

REFUSING = textwrap.dedent("""
    import sys
    from importlib.abc import MetaPathFinder

    class NotInstalled(MetaPathFinder):
        # The one thing simulated: the package is not installed (this venv has it, for the tests).
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] == sys.argv[1]:
                raise ModuleNotFoundError(f"No module named {name!r}", name=name)
            return None

    sys.meta_path.insert(0, NotInstalled())
    for name in [m for m in sys.modules if m.split(".")[0] == sys.argv[1]]:
        del sys.modules[name]
    from watchdog.cli.main import main
    sys.exit(main(["demo"]))
""")


@pytest.mark.parametrize("absent", ["moto", "flask"])
def test_the_demo_without_its_extra_says_how_to_get_it_in_one_line(tmp_path: Path, absent: str) -> None:
    """Without moto (or with moto but not the Flask its server needs), `demo` answers with one line naming
    the extra and `make demo`, exit 2, and starts nothing (no timeline, no temporary directory)."""
    env = {**os.environ, "TMPDIR": str(tmp_path)}
    r = subprocess.run([sys.executable, "-c", REFUSING, absent], capture_output=True, text=True, timeout=60,
                       env=env, check=False)
    assert r.returncode == 2, r.stdout + r.stderr
    assert r.stdout == ""
    lines = r.stderr.splitlines()
    assert len(lines) == 1, r.stderr
    assert lines[0].startswith("rollback-watchdog demo: ")
    assert "pip install 'rollback-watchdog[demo]'" in lines[0] and "make demo" in lines[0]
    assert f"'{absent}'" in lines[0]
    assert list(tmp_path.iterdir()) == []
