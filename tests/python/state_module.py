"""Module-level state for pool-mode tests: it survives between tasks of one runner."""

COUNTER = 0
BALLOON = []
