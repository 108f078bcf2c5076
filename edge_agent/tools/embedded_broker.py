"""An MQTT broker inside the process, so the demo needs nothing installed or started by hand.

amqtt runs on its own asyncio loop in a daemon thread, bound to 127.0.0.1 on a free port with
a minimal explicit configuration (its defaults would bind 0.0.0.0:1883 and load extra plugins).
It speaks MQTT 3.1.1 only, which is why the demo configuration sets ``mqtt.protocol``.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from typing import Any

_CONFIG: dict[str, Any] = {
    "listeners": {"default": {"type": "tcp", "bind": "127.0.0.1:0"}},
    "plugins": {"amqtt.plugins.authentication.AnonymousAuthPlugin": {"allow_anonymous": True}},
}


class EmbeddedBroker:
    def __init__(self) -> None:
        self.host = "127.0.0.1"
        self.port = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="edge-agent-broker", daemon=True)

    def start(self, timeout: float = 10.0) -> EmbeddedBroker:
        try:
            import amqtt.broker  # noqa: F401, PLC0415 - optional dependency, checked here
        except ImportError as exc:
            raise RuntimeError(
                "the embedded broker needs the 'demo' extra: pip install 'edge-agent[demo]', "
                "or pass --broker HOST:PORT"
            ) from exc
        # amqtt and its state machine library log every connection step at INFO.
        for noisy in ("amqtt", "transitions"):
            logging.getLogger(noisy).setLevel(logging.WARNING)
        self._thread.start()
        if not self._ready.wait(timeout):
            raise RuntimeError("embedded broker did not start")
        if self._error is not None:
            raise RuntimeError(f"embedded broker failed: {self._error}") from self._error
        return self

    def _run(self) -> None:
        from amqtt.broker import Broker  # noqa: PLC0415

        self._loop = asyncio.new_event_loop()
        asyncio.set_event_loop(self._loop)

        async def serve() -> None:
            broker = Broker(_CONFIG)  # must be created inside the running loop
            try:
                await broker.start()
                # The bound port is only reachable through a private attribute: kept to this line.
                self.port = broker._servers["default"].instance.sockets[0].getsockname()[1]
            except BaseException as exc:
                self._error = exc
                self._ready.set()
                return
            self._stop = asyncio.Event()
            self._ready.set()
            await self._stop.wait()
            await broker.shutdown()

        self._loop.run_until_complete(serve())

    def stop(self, timeout: float = 5.0) -> None:
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(timeout)

    def __enter__(self) -> EmbeddedBroker:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
