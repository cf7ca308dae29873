"""The pure decision core: rule evaluation, the escalation machine, the signal board, pauses, health, the schedule. No I/O, no clock reads."""
