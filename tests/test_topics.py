"""The topic contract is built and read in one place: what HQ and the store parse agrees."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from edge_agent.core.topics import Topics

LEVEL = st.text(st.sampled_from("abcdefghijklmnopqrstuvwxyz0123456789-_."), min_size=1, max_size=12)


@given(LEVEL, LEVEL, st.lists(LEVEL, min_size=1, max_size=3))
def test_every_uplink_topic_reads_back_as_its_store_and_stream(
    prefix: str, store: str, levels: list[str]
) -> None:
    topics = Topics(f"retail/{prefix}", store)
    stream = "/".join(levels)
    topic = topics.uplink(stream)
    assert Topics.store_and_stream(topic) == (store, stream)
    assert topics.stream_of(topic) == stream


@given(st.text(max_size=40))
def test_any_topic_is_parsed_without_raising(topic: str) -> None:
    parsed = Topics.store_and_stream(topic)
    assert parsed is None or all(parsed)


def test_a_topic_that_names_no_store_is_not_a_store_topic() -> None:
    assert Topics.store_and_stream("retail/v1/fleet/in/orders") is None
    assert Topics.store_and_stream("retail/v1/stores/s1") is None
    assert Topics("retail/v1", "s1").stream_of("elsewhere/x") == "elsewhere/x"
