"""A page in a real headless Chromium, driven over the DevTools protocol on a pipe (stdlib only).

``open_page`` loads a file, and gives back what the page said on its console, the exceptions it
threw, the requests it made, values computed in it, and a PNG of the whole page. Chromium reads
the protocol's JSON messages, each ended by a NUL byte, on fd 3 and writes its own on fd 4
(``--remote-debugging-pipe``). ``png_pixels`` decodes a PNG (zlib and the row filters) to count
what a screenshot holds.
"""

from __future__ import annotations

import base64
import fcntl
import json
import os
import select
import shutil
import struct
import subprocess
import time
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

BINARY = Path("/usr/lib/chromium/chromium")  # Debian's chromium; /usr/bin/chromium wraps it
TIMEOUT_S = 30.0


def chromium_missing() -> str | None:
    """Why the browser cannot run here, or None."""
    if not BINARY.exists() and shutil.which("chromium") is None:
        return "Debian's chromium is not installed (apt-get install chromium; scripts/test.sh does)"
    return None


@dataclass(slots=True)
class Page:
    console: list[tuple[str, str]] = field(default_factory=list)  # (type, text)
    exceptions: list[str] = field(default_factory=list)
    log: list[tuple[str, str]] = field(default_factory=list)  # (level, text): failed loads among them
    requests: list[str] = field(default_factory=list)
    _browser: _Pipe | None = None
    _session: str = ""

    def problems(self) -> list[str]:
        """Console errors and warnings, uncaught exceptions, and log errors (failed loads)."""
        return (
            [
                f"console.{kind}: {text}"
                for kind, text in self.console
                if kind in ("error", "warning", "assert")
            ]
            + [f"uncaught: {text}" for text in self.exceptions]
            + [f"log {level}: {text}" for level, text in self.log if level in ("error", "warning")]
        )

    def evaluate(self, expression: str) -> Any:
        assert self._browser is not None
        reply = self._browser.call(
            "Runtime.evaluate", {"expression": expression, "returnByValue": True}, self._session
        )
        assert "exceptionDetails" not in reply, reply
        return reply["result"].get("value")

    def screenshot(self, width: int) -> bytes:
        """The whole page, ``width`` CSS pixels wide, as PNG bytes."""
        assert self._browser is not None
        height = int(self.evaluate("document.documentElement.scrollHeight"))
        self._browser.call(
            "Emulation.setDeviceMetricsOverride",
            {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False},
            self._session,
        )
        shot = self._browser.call("Page.captureScreenshot", {"format": "png"}, self._session)
        return base64.b64decode(shot["data"])


class _Pipe:
    def __init__(self, process: subprocess.Popen[bytes], send_fd: int, receive_fd: int) -> None:
        self._process, self._send, self._receive = process, send_fd, receive_fd
        self._buffer = b""
        self._next_id = 0
        self.events: list[dict[str, Any]] = []

    def call(self, method: str, params: dict[str, Any] | None = None, session: str | None = None) -> Any:
        self._next_id += 1
        message: dict[str, Any] = {"id": self._next_id, "method": method, "params": params or {}}
        if session:
            message["sessionId"] = session
        os.write(self._send, json.dumps(message).encode() + b"\0")
        reply = self._until(lambda m: m.get("id") == self._next_id)
        if "error" in reply:
            raise RuntimeError(f"{method}: {reply['error']}")
        return reply.get("result", {})

    def wait_event(self, method: str) -> dict[str, Any]:
        return self._until(lambda m: m.get("method") == method)

    def _until(self, wanted: Any) -> dict[str, Any]:
        deadline = time.monotonic() + TIMEOUT_S
        while True:
            while b"\0" in self._buffer:
                raw, self._buffer = self._buffer.split(b"\0", 1)
                message: dict[str, Any] = json.loads(raw)
                if "method" in message:
                    self.events.append(message)
                if wanted(message):
                    return message
            left = deadline - time.monotonic()
            # select + os.read: a buffered read1 on the pipe can block past the deadline
            if left <= 0 or not select.select([self._receive], [], [], left)[0]:
                raise TimeoutError("chromium did not answer in time")
            chunk = os.read(self._receive, 1 << 20)
            if not chunk:
                raise RuntimeError(f"chromium closed its pipe (exit {self._process.poll()})")
            self._buffer += chunk


@contextmanager
def open_page(url: str, profile: Path, width: int = 1280, height: int = 900) -> Iterator[Page]:
    """``url`` loaded in a fresh headless Chromium with its own profile directory."""
    to_chrome_r, to_chrome_w = _high_pipe()
    from_chrome_r, from_chrome_w = _high_pipe()
    binary = str(BINARY) if BINARY.exists() else str(shutil.which("chromium"))
    process = subprocess.Popen(
        ["bash", "-c", 'exec "$@" 3<&"$R" 4>&"$W"', "sh", binary, "--headless=new", "--no-sandbox",
         "--disable-gpu", "--hide-scrollbars", "--remote-debugging-pipe", f"--user-data-dir={profile}",
         "about:blank"],
        pass_fds=(to_chrome_r, from_chrome_w),
        env={**os.environ, "R": str(to_chrome_r), "W": str(from_chrome_w)},
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    os.close(to_chrome_r)
    os.close(from_chrome_w)
    browser = _Pipe(process, to_chrome_w, from_chrome_r)
    page = Page(_browser=browser)
    try:
        target = browser.call("Target.createTarget", {"url": "about:blank"})["targetId"]
        attached = browser.call("Target.attachToTarget", {"targetId": target, "flatten": True})
        session = page._session = attached["sessionId"]
        for domain in ("Runtime", "Log", "Page", "Network"):
            browser.call(f"{domain}.enable", {}, session)
        browser.call(
            "Emulation.setDeviceMetricsOverride",
            {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False},
            session,
        )
        browser.call("Page.navigate", {"url": url}, session)
        browser.wait_event("Page.loadEventFired")
        yield page
    finally:
        try:
            browser.call("Browser.close")
        except (RuntimeError, TimeoutError, OSError):
            process.kill()
        process.wait(10)
        os.close(to_chrome_w)
        os.close(from_chrome_r)
        _collect(browser.events, page)


def _high_pipe() -> tuple[int, int]:
    """A pipe on fds above 9, so ``3<&R 4>&W`` cannot clobber an end already on 3 or 4 (bash runs
    it: dash, Debian's sh, takes one-digit fds only)."""
    ends = os.pipe()
    high = tuple(fcntl.fcntl(end, fcntl.F_DUPFD, 10) for end in ends)
    for end in ends:
        os.close(end)
    return high[0], high[1]


def _collect(events: list[dict[str, Any]], page: Page) -> None:
    """What the page said, from the protocol's events (kept as they came, in order)."""
    for event in events:
        params = event.get("params", {})
        if event["method"] == "Runtime.consoleAPICalled":
            text = " ".join(str(a.get("value", a.get("description", ""))) for a in params["args"])
            page.console.append((params["type"], text))
        elif event["method"] == "Runtime.exceptionThrown":
            details = params["exceptionDetails"]
            page.exceptions.append(details.get("exception", {}).get("description") or details["text"])
        elif event["method"] == "Log.entryAdded":
            page.log.append((params["entry"]["level"], params["entry"]["text"]))
        elif event["method"] == "Network.requestWillBeSent":
            page.requests.append(params["request"]["url"])


def png_pixels(png: bytes) -> tuple[int, int, list[bytes]]:
    """(width, height, rows of raw pixel bytes) of an 8-bit RGB or RGBA PNG."""
    assert png[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    at, idat, header = 8, b"", b""
    while at < len(png):
        (length,) = struct.unpack(">I", png[at : at + 4])
        kind, data = png[at + 4 : at + 8], png[at + 8 : at + 8 + length]
        at += 12 + length
        if kind == b"IHDR":
            header = data
        elif kind == b"IDAT":
            idat += data
    width, height, depth, colour = struct.unpack(">IIBB", header[:10])
    assert depth == 8, f"unexpected PNG bit depth {depth}"
    assert colour in (2, 6), f"unexpected PNG colour type {colour}"
    step = 4 if colour == 6 else 3
    raw = zlib.decompress(idat)
    stride = width * step
    rows, previous = [], bytearray(stride)
    for y in range(height):
        start = y * (stride + 1)
        kind, line = raw[start], bytearray(raw[start + 1 : start + 1 + stride])
        _unfilter(kind, line, previous, step)
        rows.append(bytes(line))
        previous = line
    return width, height, rows


def _unfilter(kind: int, line: bytearray, up: bytearray, step: int) -> None:
    if kind == 0:
        return
    if kind == 2:  # Up: the common case for screenshots, done at C speed
        line[:] = bytes((a + b) & 0xFF for a, b in zip(line, up, strict=True))
        return
    for i in range(len(line)):
        left = line[i - step] if i >= step else 0
        if kind == 1:
            line[i] = (line[i] + left) & 0xFF
        elif kind == 3:
            line[i] = (line[i] + (left + up[i]) // 2) & 0xFF
        else:  # 4, Paeth
            corner = up[i - step] if i >= step else 0
            p = left + up[i] - corner
            pa, pb, pc = abs(p - left), abs(p - up[i]), abs(p - corner)
            predictor = left if pa <= pb and pa <= pc else up[i] if pb <= pc else corner
            line[i] = (line[i] + predictor) & 0xFF
