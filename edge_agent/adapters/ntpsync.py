"""Whether the system says its wall clock is NTP-synchronised (``clock.sync_source``).

``adjtimex(2)`` with no modes only reads the kernel's time state; it returns ``TIME_ERROR`` while
the clock is unsynchronised (the kernel's STA_UNSYNC flag, which chrony, ntpd and
systemd-timesyncd clear once they have synchronised it, and which an 11-minute-old last update
sets again). ``file:PATH`` reads a flag file instead (systemd-timesyncd touches
``/run/systemd/timesync/synchronized``), which is also how tests say "NTP synced now".
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
from collections.abc import Callable
from pathlib import Path

_LOGGER = logging.getLogger(__name__)

TIME_ERROR = 5  # adjtimex's "clock not synchronised"
# struct timex is 208 bytes on 64-bit Linux; a larger zeroed buffer leaves room on any ABI.
_TIMEX_BYTES = 512

SyncSource = Callable[[], bool | None]


def sync_source(spec: str) -> SyncSource:
    """The reader ``clock.sync_source`` names; None from it means "no way to tell"."""
    if spec == "none":
        return lambda: None
    if spec.startswith("file:"):
        flag = Path(spec.removeprefix("file:"))
        return flag.exists
    return _adjtimex()


def _adjtimex() -> SyncSource:
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        call = libc.adjtimex
    except (OSError, AttributeError) as exc:
        _LOGGER.warning("adjtimex unavailable (%s): the clock's NTP state is unknown", exc)
        return lambda: None
    buffer = ctypes.create_string_buffer(_TIMEX_BYTES)  # modes = 0: read only

    def synced() -> bool | None:
        state = int(call(buffer))
        if state < 0:
            return None
        return state != TIME_ERROR

    return synced
