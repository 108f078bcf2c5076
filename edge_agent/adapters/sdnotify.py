"""systemd's notify protocol, in the few lines it takes (sd_notify(3)).

A datagram of ``KEY=VALUE`` lines to the unix socket named by ``NOTIFY_SOCKET``; a name
starting with ``@`` is in the abstract namespace. Outside systemd the variable is unset and
every call is a no-op, so the daemon runs the same under a terminal, a test or a unit.
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Mapping

_LOGGER = logging.getLogger(__name__)


class SystemdNotifier:
    def __init__(self, environ: Mapping[str, str] | None = None) -> None:
        env = os.environ if environ is None else environ
        name = env.get("NOTIFY_SOCKET", "")
        self._address: str | bytes | None = None
        if name.startswith("@"):
            self._address = b"\0" + name[1:].encode()
        elif name.startswith("/"):
            self._address = name
        usec = env.get("WATCHDOG_USEC", "")
        pid = env.get("WATCHDOG_PID", "")
        # The watchdog is ours only if systemd set it for this process (or for no process in particular).
        self.watchdog_s = int(usec) / 1e6 if usec.isdigit() and (not pid or pid == str(os.getpid())) else None
        self._socket: socket.socket | None = None

    @property
    def enabled(self) -> bool:
        return self._address is not None

    def notify(self, **fields: str) -> bool:
        """Send ``KEY=value`` lines (keys upper-cased); False if there is nobody to tell."""
        if self._address is None:
            return False
        message = "\n".join(f"{key.upper()}={value}" for key, value in fields.items()).encode()
        try:
            if self._socket is None:
                self._socket = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
            self._socket.sendto(message, self._address)
        except OSError as exc:  # systemd gone or socket full: never worth crashing for
            _LOGGER.warning("sd_notify failed: %s", exc)
            return False
        return True

    def ready(self, status: str) -> bool:
        return self.notify(ready="1", status=status)

    def status(self, status: str) -> bool:
        return self.notify(status=status)

    def watchdog(self) -> bool:
        return self.notify(watchdog="1")

    def stopping(self) -> bool:
        return self.notify(stopping="1", status="stopping")

    def close(self) -> None:
        if self._socket is not None:
            self._socket.close()
            self._socket = None
