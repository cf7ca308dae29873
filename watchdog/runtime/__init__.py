"""The running watchdog: the one composition (wiring), polling and evaluating, the executors, recovery, pauses, reload, the recording."""
