"""Reading config.yaml: YAML with line numbers, `${VAR}` expansion, validation.

Every problem becomes one line `path.to.field: what is wrong (line N)`.
This is the only module that reads the process environment.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from watchdog.config.checks import budget_warnings, cross_check
from watchdog.config.models import Config
from watchdog.config.reading import (
    BASE_LOADER,
    DuplicateKey,
    Refused,
    decode,
    duplicate_path,
    load_yaml,
    read_bytes,
    refuse_anchors,
)
from watchdog.config.schema import schema
from watchdog.shared.redact import Redactor

_LOADER = BASE_LOADER

_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
# ${VAR}s whose names say they hold a secret are masked wherever their value shows up.
_SECRET_NAME = re.compile(r"TOKEN|SECRET|PASSW|KEY|WEBHOOK|CREDENTIAL|AUTH", re.IGNORECASE)


def _VAR_USED(name: str, text: str) -> bool:
    return "${" + name + "}" in text
Path_ = tuple[str | int, ...]


class ConfigError(Exception):
    """The configuration is unusable; `problems` holds one line each."""

    def __init__(self, problems: list[str]):
        super().__init__("\n".join(problems))
        self.problems = problems


def process_environment() -> dict[str, str]:
    """The base environment of every command action: PATH, HOME, LANG, LC_ALL and TZ, where set.

    Nothing else of the daemon's environment reaches a command (it holds the API token, webhook URLs,
    AWS keys); what a command needs beyond this base its action names in `env`, e.g.
    `env: {KUBECONFIG: "${KUBECONFIG}"}`. The locale and time zone keep a script's output and dates
    as they are in a shell; PATH and HOME let it find its tools and their configuration.
    """
    base = ("PATH", "HOME", "LANG", "LC_ALL", "TZ")
    return {name: os.environ[name] for name in base if name in os.environ}


def operator_token() -> str | None:
    """The control API token for the operator commands (WATCHDOG_API_TOKEN)."""
    return os.environ.get("WATCHDOG_API_TOKEN") or None


def systemd_environment() -> tuple[str | None, int | None]:
    """NOTIFY_SOCKET and WATCHDOG_USEC as systemd sets them; the watchdog only if WATCHDOG_PID is ours (or unset)."""
    socket_path = os.environ.get("NOTIFY_SOCKET") or None
    usec = os.environ.get("WATCHDOG_USEC", "")
    pid = os.environ.get("WATCHDOG_PID", "")
    if not usec.isdigit() or int(usec) == 0 or (pid and pid != str(os.getpid())):
        return socket_path, None
    return socket_path, int(usec)


def armed_failpoints() -> list[str]:
    """Test-only crash instants (see watchdog/runtime/failpoints.py); unknown names are a config error."""
    raw = os.environ.get("WATCHDOG_TEST_FAILPOINTS", "")
    return [n.strip() for n in raw.split(",") if n.strip()]


def load_config(path: str | Path, environ: Mapping[str, str] | None = None) -> Config:
    """Every unusable file, whatever is wrong with it, is a ConfigError of one-line problems."""
    env = os.environ if environ is None else environ
    try:
        text = decode(read_bytes(path))
    except OSError as exc:
        raise ConfigError([f"{path}: cannot read: {exc.strerror or exc}"]) from None
    except Refused as exc:
        raise ConfigError([_one_line(f"{path}: {exc}")]) from None
    return parse_config(text, env, origin=str(path))


def parse_config(text: str, environ: Mapping[str, str], origin: str = "config") -> Config:
    """`environ` feeds `${VAR}`; `WATCHDOG_*` overrides always come from os.environ.

    Whatever the text holds, the outcome is a Config or a ConfigError: the daemon reloads through
    here on SIGHUP, and an exception of any other kind would end it."""
    secrets = {v for k, v in environ.items() if _SECRET_NAME.search(k) and _VAR_USED(k, text)}
    try:
        return _parse(text, environ, origin, secrets)
    except ConfigError as exc:
        problems = exc.problems
    except RecursionError:
        problems = [f"{origin}: nested too deeply to read (a config needs a few levels, not hundreds)"]
    except MemoryError:
        problems = [f"{origin}: too large to read: out of memory"]
    except Exception as exc:  # a defect of the loader, not of the file: still one line, never a traceback
        problems = [f"{origin}: cannot be read: {type(exc).__name__}: {str(exc).strip()[:200]}"]
    mask = Redactor(secrets)
    raise ConfigError([_one_line(mask.text(p)) for p in problems]) from None


def _parse(text: str, environ: Mapping[str, str], origin: str, secrets: set[str]) -> Config:
    """`secrets` gains the values of secret-typed fields as soon as they are known, for the error lines."""
    env_secrets = frozenset(secrets)
    shape = schema()  # the models of the kinds registered now
    data = _read_yaml(text, origin)
    if not isinstance(data, dict):
        raise ConfigError([f"{origin}: expected a mapping at the top (watchdog:, sources:, targets:, ...)"])
    lines = LineIndex(text)

    problems: list[str] = []
    data = _expand(data, (), environ, problems, lines)
    secrets |= _literal_secrets(data, shape.secret_keys)
    # A field emptied by an unset ${VAR} reports only that, not also "bad duration ''".
    unset = {p.split(": ", 1)[0] for p in problems}

    section = data.get("watchdog") or {}
    try:
        if not isinstance(section, dict):
            raise ConfigError([_line(("watchdog",), "expected a mapping", lines)])
        odd = [k for k in section if not isinstance(k, str)]
        problems += [_line(("watchdog", k), "unknown key (a typo?)", lines) for k in odd]
        # pydantic-settings layers WATCHDOG_* (from os.environ) over the YAML values here.
        data["watchdog"] = shape.watchdog(**{k: v for k, v in section.items() if isinstance(k, str)})
    except ValidationError as exc:
        problems += [p for p in _format(exc, ("watchdog",), section, lines) if p.split(": ", 1)[0] not in unset]
    try:
        cfg = shape.config.model_validate(data)
    except ValidationError as exc:
        # The watchdog: section was reported above; keep e.g. a top-level typo `watchdogs:`.
        problems += [
            p
            for p in _format(exc, (), data, lines)
            if not p.startswith(("watchdog.", "watchdog:")) and p.split(": ", 1)[0] not in unset
        ]
        raise ConfigError(problems) from None
    if problems:
        raise ConfigError(problems)
    cross = [_line(path, msg, lines) for path, msg in cross_check(cfg)]
    if cross:
        raise ConfigError(cross)
    # Without line numbers: finding one means composing the YAML again, which at 5 000 rules doubled the
    # start-up; the path is enough to find a warned field.
    mask = Redactor(secrets)
    _share_fields_sets(cfg)
    cfg._warnings = tuple(_one_line(mask.text(f"warning: {_dotted(path)}: {msg}")) for path, msg in budget_warnings(cfg))
    cfg._secret_env = env_secrets
    return cfg


def _read_yaml(text: str, origin: str) -> Any:
    try:
        refuse_anchors(text)
        return load_yaml(text)
    except Refused as exc:
        raise ConfigError([f"{origin}: {exc}"]) from None
    except DuplicateKey as dup:
        where = _dotted(duplicate_path(text, dup))
        raise ConfigError([f"{where}: duplicate key ({dup.where}): "
                           "YAML would silently keep only the last one"]) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ConfigError([f"{origin}: YAML syntax error: {problem}{where}"]) from None


def _share_fields_sets(cfg: Config) -> None:
    """Every model keeps the set of the keys it was given (`model_fields_set`); 5 000 rules have a few
    distinct ones, so the models with equal sets share one (bench: -7 MB of Python objects at 5 000 rules).
    Safe because the models are frozen: pydantic copies the set before it would add to it (model_copy)."""
    shared: dict[frozenset[str], set[str]] = {}
    stack: list[Any] = [cfg]
    while stack:
        cur = stack.pop()
        if isinstance(cur, BaseModel):
            given = cur.__pydantic_fields_set__
            object.__setattr__(cur, "__pydantic_fields_set__", shared.setdefault(frozenset(given), given))
            stack.extend(cur.__dict__.values())
        elif isinstance(cur, (list, tuple)):
            stack.extend(cur)
        elif isinstance(cur, dict):
            stack.extend(cur.values())


def _literal_secrets(data: Any, keys: frozenset[str]) -> set[str]:
    """Every string under a secret-typed key (`keys`), before validation has said which model holds it."""
    out: set[str] = set()
    stack: list[tuple[Any, bool]] = [(data, False)]
    while stack:
        cur, secret = stack.pop()
        if isinstance(cur, str):
            if secret:
                out.add(cur)
        elif isinstance(cur, dict):
            stack.extend((v, secret or (isinstance(k, str) and k in keys)) for k, v in cur.items())
        elif isinstance(cur, list):
            stack.extend((v, secret) for v in cur)
    return out


def _one_line(problem: str, limit: int = 500) -> str:
    """A problem is one line: control characters from a hostile key or value are shown escaped."""
    if not problem.isprintable():
        problem = "".join(c if c.isprintable() else repr(c)[1:-1] for c in problem)
    return problem if len(problem) <= limit else problem[: limit - 3] + "..."


def _expand(value: Any, path: Path_, env: Mapping[str, str], problems: list[str], lines: LineIndex) -> Any:
    if isinstance(value, str):
        def sub(m: re.Match[str]) -> str:
            name = m.group(1)
            if name not in env:
                problems.append(_line(path, f"environment variable {name} is not set", lines))
                return ""
            return env[name]

        return _VAR.sub(sub, value)
    if isinstance(value, dict):
        return {k: _expand(v, path + (k,), env, problems, lines) for k, v in value.items()}
    if isinstance(value, list):
        return [_expand(v, path + (i,), env, problems, lines) for i, v in enumerate(value)]
    return value


class LineIndex:
    """Where each YAML path starts. Built only when a problem needs a line number: a second parse of
    a large config costs more than the first (5 000 rules: most of the start-up time)."""

    def __init__(self, text: str):
        self._text = text
        self._lines: dict[Path_, int] | None = None

    def line_of(self, path: Path_) -> int | None:
        if self._lines is None:
            self._lines = _line_map(yaml.compose(self._text, Loader=_LOADER))
        probe = path
        while probe and probe not in self._lines:
            probe = probe[:-1]
        return self._lines[probe] if probe else None


def _line_map(node: yaml.Node | None, path: Path_ = (), out: dict | None = None) -> dict[Path_, int]:
    out = {} if out is None else out
    if node is None:
        return out
    out[path] = node.start_mark.line + 1
    if isinstance(node, yaml.MappingNode):
        for key, val in node.value:
            k = key.value
            out[path + (k,)] = key.start_mark.line + 1
            _line_map(val, path + (k,), out)
            out[path + (k,)] = key.start_mark.line + 1
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            _line_map(item, path + (i,), out)
    return out


def _dotted(path: Path_) -> str:
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text or "(top)"


def _line(path: Path_, msg: str, lines: LineIndex) -> str:
    line = lines.line_of(path)
    where = f" (line {line})" if line else ""
    return f"{_dotted(path)}: {msg}{where}"


def _format(exc: ValidationError, prefix: Path_, data: Any, lines: LineIndex) -> list[str]:
    out = []
    for err in exc.errors(include_url=False):
        path = _data_path(err["loc"], data)
        msg = err["msg"].removeprefix("Value error, ").removeprefix("Assertion failed, ")
        kind = err["type"]
        if kind == "extra_forbidden":
            msg = "unknown key (a typo?)"
        elif kind == "missing":
            msg = "required"
        elif kind == "union_tag_invalid":
            tag = err.get("ctx", {}).get("tag")
            expected = err.get("ctx", {}).get("expected_tags")
            msg = f"unknown type {tag!r} (expected one of {expected})"
            path = path + ("type",)
        elif kind == "union_tag_not_found":
            msg = "required: type"
        elif kind == "literal_error" and "expected" in err.get("ctx", {}):
            msg = f"must be one of: {err['ctx']['expected']}"
        out.append(_line(prefix + path, msg, lines))
    return out


def _data_path(loc: tuple[Any, ...], data: Any) -> Path_:
    """pydantic puts the union tag into `loc`; drop it so the path matches the YAML."""
    path: list[str | int] = []
    cur = data
    for i, part in enumerate(loc):
        if isinstance(cur, dict) and part not in cur and cur.get("type") == part:
            continue
        path.append(part)
        if isinstance(cur, dict):
            cur = cur.get(part)
        elif isinstance(cur, list) and isinstance(part, int) and part < len(cur):
            cur = cur[part]
        else:
            cur = None
    return tuple(path)
