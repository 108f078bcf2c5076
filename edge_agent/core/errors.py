"""The agent's own exceptions, so callers catch one family instead of library internals.

EdgeAgentError
├── ConfigError          a TOML file or environment override is invalid (lists every problem)
├── DownlinkRejected     a message from HQ failed validation; answered on the errors topic
├── BrokerRefused        the broker refused the connection for a reason retrying cannot fix
└── DiskFull             no room for a write even after evicting by policy
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


def key_path(loc: Sequence[int | str]) -> str:
    """A pydantic error location as the key a person reads: ``upsert[3].identity_key``,
    ``receivers[1].zone``. The one spelling for config, downlink, trace and sighting errors."""
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


class EdgeAgentError(Exception):
    """Base of every error the agent raises on purpose."""


@dataclass(frozen=True, slots=True)
class ConfigProblem:
    """One thing wrong with a configuration, named by its TOML key path."""

    key: str
    reason: str

    def __str__(self) -> str:
        return f"{self.key}: {self.reason}" if self.key else self.reason


class ConfigError(EdgeAgentError):
    """Raised with every problem found, so a technician fixes a file in one pass."""

    def __init__(self, source: str, problems: list[ConfigProblem]) -> None:
        self.source = source
        self.problems = problems
        super().__init__("\n".join(str(p) for p in problems))


class DownlinkRejected(EdgeAgentError):
    """A downlink that will not be applied; ``reason`` is sent back to HQ verbatim."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(reason)


class BrokerRefused(EdgeAgentError):
    """The broker said no in a way that reconnecting will not change (bad protocol, credentials)."""


class DiskFull(EdgeAgentError):
    """No room for a write even after the full-disk routine; the caller drops and reports it."""
