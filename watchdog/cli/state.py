"""`rollback-watchdog state init -c CONFIG`: make the shared state table before the first watchdog starts
(`watchdog.state.type: dynamodb`, SPEC 3.1), idempotent: exit 0 when it was made or is there with the expected
keys, 1 when it cannot be (one line: AWS's refusal, other keys, no endpoint), 2 for a bad config."""

from __future__ import annotations

import argparse
import asyncio
import sys
from typing import Any

from watchdog.cli.loading import load_or_say
from watchdog.state.backend import configured, init_configured
from watchdog.state.storage import StoreError

EXIT_OK, EXIT_FAIL, EXIT_USAGE = 0, 1, 2
PROG = "rollback-watchdog state init"


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    p = subparsers.add_parser("state", help="the state backend: `state init` makes the shared table")
    sub = p.add_subparsers(dest="state_command", required=True, metavar="{init}")
    init = sub.add_parser("init", help="create the shared state table (state.type: dynamodb); idempotent")
    init.add_argument("-c", "--config", required=True, help="path to config.yaml (for its watchdog.state and aws:)")
    return p


def run(args: argparse.Namespace) -> int:
    cfg = load_or_say(args.config, warnings=False)
    if cfg is None:
        return EXIT_USAGE
    kind, state = configured(cfg)
    try:
        said = asyncio.run(init_configured(cfg))
    except StoreError as exc:
        print(f"{PROG}: {exc}", file=sys.stderr)
        return EXIT_FAIL
    if said is None:
        print(f"{kind.describe(state)}: nothing to create; the daemon makes it at its first start")
    else:
        print(f"{kind.describe(state)}: {said}" + (" with the expected keys" if said == "exists" else ""))
    return EXIT_OK
