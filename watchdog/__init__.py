"""rollback-watchdog: watches signals and rolls a system back through escalating levels."""

__version__ = "0.1.0"
