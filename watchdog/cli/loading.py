"""The config as every command loads it: its problems on stderr, one line each, and None (the command exits 2)."""

from __future__ import annotations

import sys

from watchdog.config import Config, ConfigError, load_config


def load_or_say(path: str, *, warnings: bool = True) -> Config | None:
    """The config, its warnings on stderr when asked (they stop nothing); or None, its problems on stderr."""
    try:
        cfg = load_config(path)
    except ConfigError as exc:
        for line in exc.problems:
            print(line, file=sys.stderr)
        return None
    if warnings:
        for line in cfg.warnings:
            print(line, file=sys.stderr)
    return cfg
