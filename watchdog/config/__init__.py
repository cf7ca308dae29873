from watchdog.config.loader import (
    ConfigError,
    armed_failpoints,
    load_config,
    operator_token,
    parse_config,
    process_environment,
    systemd_environment,
)
from watchdog.config.models import Config

__all__ = ["Config", "ConfigError", "armed_failpoints", "load_config", "operator_token", "parse_config", "process_environment", "systemd_environment"]
