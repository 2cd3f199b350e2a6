"""OVOS plugins of our own, found by OVOS through entry points declared in pyproject.toml."""
