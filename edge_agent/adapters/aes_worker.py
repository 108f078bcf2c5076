"""AES on the second core while the start reads the registry: a child process of the daemon.

At a million customers the window of now is two million AES blocks (each customer's temporary
key, then their token), about 1.7 s through ctypes on one core, and nobody resolves until it is
done. The registry's read from SQLite takes about as long, on the same thread. The two need not
wait for each other: the start hands each page's identity keys to this worker as soon as the page
is read, and takes the outputs into the window's build once the registry is in
(``TokenResolver.take_precomputed``).

A process, not a thread: the AES loop is Python calling OpenSSL per key, so a thread would hold
the GIL the reader needs. The protocol is a pipe each way, one request at a time in order:

    request:  keys (u32), blocks (u32), blocks x 16 bytes, keys x 16 bytes
    response: keys (u32), blocks (u32), then one output per block, keys x 16 bytes each,

where each block is encrypted under the previous block's outputs (the first under the keys):
for a window, the temporary keys and then the tokens. A thread of the parent drains the
responses, so neither side ever waits on a full pipe. Anything wrong (no child, a dead one, a
slow one) only means the window is built in slices by the main loop, as without the worker.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import struct
import subprocess
import sys
import threading
from collections.abc import Sequence
from typing import IO, BinaryIO, Protocol, cast

from edge_agent.core.cipher import BLOCK, BlockCipher

_LOGGER = logging.getLogger(__name__)

_HEADER = struct.Struct("<II")
# Giving up on one response: a page is 65,536 keys, about 0.1 s of AES here; a child this late is
# starved or stuck, and the main loop's slices do the rest better than a start that waits.
RESULT_TIMEOUT_S = 5.0


class AesWorker:
    """The child process and the thread that reads its answers."""

    def __init__(self, python: str = sys.executable) -> None:
        self._process = subprocess.Popen(
            [python, "-m", "edge_agent.adapters.aes_worker"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, bufsize=0,
        )  # fmt: skip
        self._results: queue.Queue[list[bytearray] | None] = queue.Queue()
        self._broken = False
        threading.Thread(target=self._read, name="edge-agent-aes-results", daemon=True).start()

    def submit(self, keys: bytes | bytearray, blocks: Sequence[bytes]) -> bool:
        """Queue one request; False if the child is gone (nothing more will come back)."""
        stdin = self._process.stdin
        if self._broken or stdin is None or len(keys) % BLOCK:
            return False
        try:
            _write_all(stdin, _HEADER.pack(len(keys) // BLOCK, len(blocks)) + b"".join(blocks))
            _write_all(stdin, keys)
        except OSError:  # BrokenPipeError: the child died
            self._broken = True
            return False
        return True

    def result(self, timeout: float = RESULT_TIMEOUT_S) -> list[bytearray] | None:
        """The outputs of the oldest request not yet collected; None if they will not come."""
        if self._broken:
            return None
        try:
            outputs = self._results.get(timeout=timeout)
        except queue.Empty:
            _LOGGER.info(
                "the AES worker gave no answer within %.0f s: the main loop builds the rest", timeout
            )
            outputs = None
        if outputs is None:
            self._broken = True
        return outputs

    def close(self) -> None:
        with contextlib.suppress(OSError):
            if self._process.stdin is not None:
                self._process.stdin.close()
        try:
            self._process.wait(timeout=2)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()

    def _read(self) -> None:
        assert self._process.stdout is not None
        stdout = cast(_Readable, self._process.stdout)  # unbuffered: a FileIO
        while True:
            header = _read_exactly(stdout, _HEADER.size)
            if header is None:
                break
            keys, blocks = _HEADER.unpack(header)
            outputs = [_read_exactly(stdout, keys * BLOCK) for _ in range(blocks)]
            if any(output is None for output in outputs):
                break
            self._results.put([output for output in outputs if output is not None])
        self._results.put(None)


def start_worker() -> AesWorker | None:
    """A worker, or None where none can be started (the start then builds in slices)."""
    try:
        return AesWorker()
    except OSError as exc:
        _LOGGER.info("no AES worker (%s): the main loop builds the token windows alone", exc)
        return None


class _Readable(Protocol):
    def readinto(self, buffer: memoryview, /) -> int | None: ...


def _write_all(stream: IO[bytes], data: bytes | bytearray) -> None:
    """An unbuffered pipe's write may take only part of a large buffer: write the rest too."""
    view = memoryview(data)
    while view:
        written = stream.write(view)
        if not written:
            raise OSError("the AES worker's pipe took nothing")
        view = view[written:]


def _read_exactly(stream: _Readable, size: int) -> bytearray | None:
    buffer = bytearray(size)
    view = memoryview(buffer)
    got = 0
    while got < size:
        count = stream.readinto(view[got:])
        if not count:
            return None
        got += count
    return buffer


def serve(requests: _Readable, responses: BinaryIO, cipher: BlockCipher) -> None:
    """The child's loop: answer requests until the parent closes the pipe."""
    while True:
        header = _read_exactly(requests, _HEADER.size)
        if header is None:
            return
        keys, count = _HEADER.unpack(header)
        blocks = _read_exactly(requests, count * BLOCK)
        current = _read_exactly(requests, keys * BLOCK)
        if blocks is None or current is None:
            return
        outputs = []
        for index in range(count):
            current = cipher.encrypt_many(current, bytes(blocks[index * BLOCK : (index + 1) * BLOCK]))
            outputs.append(current)
        responses.write(bytes(header))
        for output in outputs:
            responses.write(output)
        responses.flush()


if __name__ == "__main__":
    from edge_agent.adapters.aes_openssl import fastest_cipher

    serve(cast(_Readable, sys.stdin.buffer), sys.stdout.buffer, fastest_cipher())
