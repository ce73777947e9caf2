"""Errors the lab raises for bad input or configuration.

`LabError` carries a one-line message meant for the user; the CLI prints it and exits with
status 2 (usage or input error). Anything else is a bug and keeps its traceback.
"""


class LabError(Exception):
    """A user-facing error: bad input, bad configuration, unknown model."""


class ConfigError(LabError):
    """An engine or run configuration that cannot work (checked before any engine starts)."""
