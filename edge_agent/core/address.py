"""``HOST:PORT`` as the commands take a broker address, parsed in one place. Pure.

The port is the text after the last colon, so a host may itself hold colons; the port must be
decimal digits (whatever ``int`` reads as digits, nothing else).
"""

from __future__ import annotations


def parse_host_port(text: str, default_host: str | None = None) -> tuple[str, int]:
    """``(host, port)`` of ``text``; an empty host is ``default_host`` when one is given.

    Raises ``ValueError("expects HOST:PORT, got '...'")``: the caller names the option in front.
    """
    host, _, port = text.rpartition(":")
    host = host or (default_host or "")
    # isdecimal, not isdigit: "²" is a digit that int() refuses.
    if not host or not port.isdecimal():
        raise ValueError(f"expects HOST:PORT, got {text!r}")
    return host, int(port)
