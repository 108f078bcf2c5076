"""What a broken or hostile publisher sends never stops HQ's writer: a batch of arbitrary
payloads (bytes, JSON, visits whose ids carry NUL or lone surrogates) is stored, what cannot
be is rejected, and the good message in the same batch is kept, in PostgreSQL and in SQLite."""

from __future__ import annotations

import itertools
import json
import tempfile
from pathlib import Path

import psycopg
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from edge_agent.hq.consumer import Incoming, classify
from edge_agent.hq.store_postgres import PostgresStore
from edge_agent.hq.store_sqlite import SqliteStore
from tests.test_hq_postgres import T0, _topic, _visit

# Any character, NUL and lone surrogates often (what JSON's \u escapes can carry).
_ODD = st.sampled_from(["a", "\x00", "\ud800", "\udfff", "\u00e9", "\U0001f600"])
_TEXT = st.lists(_ODD | st.characters(exclude_categories=()), max_size=12).map("".join)


@st.composite
def _payloads(draw: st.DrawFn) -> bytes:
    """What a broken or hostile publisher might send: bytes, JSON, or a visit with odd strings."""
    kind = draw(st.sampled_from(["bytes", "json", "visit"]))
    if kind == "bytes":
        return draw(st.binary(max_size=64))
    if kind == "json":
        value = draw(st.recursive(st.none() | st.booleans() | st.integers() | _TEXT,
                                  lambda inner: st.lists(inner, max_size=3)
                                  | st.dictionaries(_TEXT, inner, max_size=3), max_leaves=6))  # fmt: skip
        return json.dumps(value).encode()
    body = json.loads(_visit("s1", draw(st.integers(1, 10**6))).to_json())
    for key in draw(st.lists(st.sampled_from(["event_id", "store_id", "boot_id", "visit_id"]), max_size=3)):
        body[key] = draw(_TEXT)
    return json.dumps(body, ensure_ascii=draw(st.booleans())).encode("utf-8", "surrogatepass")


_GOOD = itertools.count(1)


@hypothesis_settings(max_examples=40, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(payloads=st.lists(_payloads(), min_size=1, max_size=6))
def test_whatever_arrives_a_batch_is_stored_and_the_good_message_in_it_too(
    pg_url: str, payloads: list[bytes]
) -> None:
    store = PostgresStore(pg_url)
    try:
        good = _visit("hypothesis", next(_GOOD))
        items = [Incoming("retail/v1/stores/s1/events/visit", p, n, 1, T0) for n, p in enumerate(payloads)]
        batch = classify([*items, Incoming(_topic(good), good.to_json(), 99, 1, T0)], "hq-fuzz")
        store.write(batch)  # never raises: what cannot be stored is rejected before
        assert len(batch.events) + len(batch.rejects) == len(payloads) + 1
        with psycopg.connect(pg_url) as conn:
            found = conn.execute(
                "SELECT count(*) FROM events WHERE event_id = %s", (good.event_id,)
            ).fetchone()
        assert found == (1,)
    finally:
        store.close()


@hypothesis_settings(max_examples=40)
@given(payloads=st.lists(_payloads(), min_size=1, max_size=6))
def test_whatever_arrives_sqlite_stores_the_batch_too(payloads: list[bytes]) -> None:
    with tempfile.TemporaryDirectory(prefix="edge-agent-hq-fuzz-") as workdir:
        store = SqliteStore(Path(workdir) / "hq.db")
        try:
            good = _visit("hypothesis", next(_GOOD))
            items = [
                Incoming("retail/v1/stores/s1/events/visit", p, n, 1, T0) for n, p in enumerate(payloads)
            ]
            store.write(classify([*items, Incoming(_topic(good), good.to_json(), 99, 1, T0)], "hq-fuzz"))
            found = store.connection.execute(
                "SELECT count(*) FROM events WHERE event_id = ?", (good.event_id,)
            )
            assert found.fetchone() == (1,)
        finally:
            store.close()
