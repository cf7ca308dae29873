"""The commands and their exit codes: the only place that exits."""
