"""A Redis URL without its password, for every message and printed setting.

A module of its own so the settings layer (cli/configuration.py) can hide passwords
without importing redis and rq: `shardrun --help` and `shardrun config` stay fast.
"""

from __future__ import annotations


def redact(url: str) -> str:
    """The URL without its password, for messages."""
    scheme, separator, rest = url.partition("://")
    if not separator:  # no scheme at all: "user:password@host:6379"
        scheme, rest = "", url
    if "@" not in rest:
        return url
    credentials, host = rest.rsplit("@", 1)
    user = credentials.split(":", 1)[0]
    hidden = f"{user}:***" if user else "***"
    return f"{scheme}{separator}{hidden}@{host}"
