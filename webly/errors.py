"""Errors and warnings a user can act on.

Every `WeblyError` message says what was wrong, what was received and how to fix it, in one
line; the CLI prints it without a traceback and exits with status 2. Anything else that escapes
is a bug in webly.
"""

from __future__ import annotations


class WeblyError(Exception):
    """A problem with the user's input or configuration (CLI exit status 2)."""


class DataError(WeblyError):
    """A data file or store is missing, unreadable, corrupt or inconsistent."""


class ConfigError(WeblyError):
    """An option or setting is invalid."""


class WeblyWarning(UserWarning):
    """Something suspicious in the input that webly can still work with (e.g. duplicate ids)."""


class MissingDependency(ConfigError):
    """A package that one feature needs (an optional extra: ``webly[ray]``,
    ``webly[tracking]``) is not installed; `webly._optional.require` raises it."""
