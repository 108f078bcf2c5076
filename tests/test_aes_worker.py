"""The start's AES worker: a real child process answering exactly what the in-process cipher
would, the window of now ready when the registry is loaded, and nothing lost when it dies."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edge_agent.adapters.aes_openssl import fastest_cipher
from edge_agent.adapters.aes_worker import AesWorker
from edge_agent.core.cipher import REFERENCE
from edge_agent.core.identity import eid_token
from edge_agent.core.ids import EventIdFactory
from edge_agent.daemon.pipeline import Pipeline
from edge_agent.storage.database import Database
from edge_agent.storage.state import StateStore
from tests.conftest import make_config
from tests.fakes import ManualClock

NOW = 1_764_000_000.0
CUSTOMERS = 3000


@pytest.fixture(scope="module")
def worker() -> Iterator[AesWorker]:
    running = AesWorker()
    yield running
    running.close()


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    keys=st.lists(st.binary(min_size=16, max_size=16), max_size=40),
    blocks=st.lists(st.binary(min_size=16, max_size=16), min_size=1, max_size=3),
)
def test_the_worker_answers_what_the_reference_cipher_computes(
    worker: AesWorker, keys: list[bytes], blocks: list[bytes]
) -> None:
    assert worker.submit(b"".join(keys), blocks)
    outputs = worker.result()
    assert outputs is not None
    current = b"".join(keys)
    for block, output in zip(blocks, outputs, strict=True):
        current = REFERENCE.encrypt_many(current, block)
        assert output == current


def _key(index: int) -> bytes:
    return hashlib.blake2b(index.to_bytes(4, "big"), digest_size=16).digest()


def _stored_registry(path: Path) -> None:
    database = Database(path)
    StateStore(database)
    with database.transaction() as conn:
        conn.executemany(
            "INSERT INTO customers VALUES (?,?,?,?)",
            [(f"c{n}", _key(n), int(n % 10 != 3), 0) for n in range(CUSTOMERS)],
        )
    database.close()


def _start(tmp_path: Path, worker: AesWorker | None) -> Pipeline:
    config = make_config(tmp_path, identity={"rotation_exponent": 10})
    _stored_registry(config.storage.path)
    return Pipeline(
        config, Database(config.storage.path), EventIdFactory.seeded("w"), fastest_cipher(),
        clock=ManualClock(wall=NOW, monotonic=1.0).clock, tables_in_slices=True, aes_worker=worker,
    )  # fmt: skip


def _resolves_everyone_consenting(pipeline: Pipeline) -> None:
    resolver = pipeline.core.token_resolver
    for n in range(CUSTOMERS):
        expected = f"c{n}" if n % 10 != 3 else None
        assert resolver.resolve(eid_token(_key(n), 10, int(NOW)), NOW) == expected


def test_with_the_worker_the_window_of_now_is_ready_when_the_registry_is_in(tmp_path: Path) -> None:
    """No slice has run when the pipeline is constructed, yet every consenting customer resolves
    in the current window: the worker encrypted it while the pages were read."""
    pipeline = _start(tmp_path, AesWorker())
    assert pipeline.core.tables_urgent is False
    _resolves_everyone_consenting(pipeline)
    assert pipeline.core.token_tables["windows_built"] == 1
    pipeline.database.close()


def test_a_worker_that_dies_leaves_the_window_to_the_slices(tmp_path: Path) -> None:
    """The child killed before it answers: the start goes on, the window is built by the main
    loop's slices as without a worker, and everyone resolves."""
    dead = AesWorker()
    dead._process.kill()
    dead._process.wait()
    pipeline = _start(tmp_path, dead)
    assert pipeline.core.tables_urgent  # nothing came from the worker
    while pipeline.precompute(NOW):
        pass
    _resolves_everyone_consenting(pipeline)
    pipeline.database.close()
