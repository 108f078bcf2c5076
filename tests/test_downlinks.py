"""Downlinks from HQ: anything that is not a valid message is rejected with a reason, never raised."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from edge_agent.core.downlinks import CustomersDownlink, parse_downlink
from edge_agent.core.errors import DownlinkRejected
from tests.helpers import KEYS, customers_downlink

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=15), inner, max_size=5),
    max_leaves=30,
)


def test_valid_customers_downlink() -> None:
    parsed = parse_downlink("customers", customers_downlink(("c1", True, False)))
    assert isinstance(parsed, CustomersDownlink)
    assert parsed.upsert[0].identity_key == KEYS["c1"]


@pytest.mark.parametrize(
    ("kind", "payload", "reason"),
    [
        ("customers", b"{nope", "payload is not JSON"),
        ("customers", b"\xff\xfe", "payload is not UTF-8"),
        ("customers", b"[1, 2]", "payload must be a JSON object"),
        ("weather", b"{}", "unknown kind 'weather'"),
        (
            "commands",
            json.dumps(
                {
                    "schema": "commands.v1",
                    "message_id": "m",
                    "commands": [{"command": "resync", "customer_id": "c1", "request_id": "r"}],
                }
            ).encode(),
            "commands[0].command",
        ),
        ("orders", json.dumps({"schema": "customers.v1", "message_id": "m"}).encode(), "schema"),
        ("customers", b" " * 1_048_577, "exceeds the 1048576-byte limit"),
    ],
)
def test_rejections_say_why(kind: str, payload: bytes, reason: str) -> None:
    with pytest.raises(DownlinkRejected) as caught:
        parse_downlink(kind, payload)
    assert reason in caught.value.reason


def test_short_identity_key_is_rejected_without_echoing_it() -> None:
    payload = customers_downlink(("c1", True, False)).replace(KEYS["c1"].hex().encode(), b"0101deadbeef")
    with pytest.raises(DownlinkRejected) as caught:
        parse_downlink("customers", payload)
    assert "upsert[0].identity_key: must be 16 bytes" in caught.value.reason
    assert "deadbeef" not in caught.value.reason


def _parsed_or_rejected_with_reason(kind: str, payload: bytes) -> None:
    reason = None
    try:
        parse_downlink(kind, payload)
    except DownlinkRejected as exc:
        reason = exc.reason
    assert reason is None or reason.strip()


KINDS = ["customers", "orders", "lists", "planogram", "receipts", "offers", "commands", "bogus"]


@given(st.sampled_from(KINDS), st.binary(max_size=200))
def test_random_bytes_are_rejected_or_parsed_never_crash(kind: str, payload: bytes) -> None:
    _parsed_or_rejected_with_reason(kind, payload)


@given(st.sampled_from(KINDS), json_values)
def test_random_json_is_rejected_or_parsed_never_crash(kind: str, value: object) -> None:
    _parsed_or_rejected_with_reason(kind, json.dumps(value).encode())


def test_deeply_nested_json_is_rejected() -> None:
    with pytest.raises(DownlinkRejected):
        parse_downlink("orders", b"[" * 100_000 + b"]" * 100_000)


# One valid downlink of every kind; the property below breaks one field of it at a time.
VALID: dict[str, dict[str, object]] = {
    "customers": {"schema": "customers.v1", "message_id": "m", "upsert": [
        {"customer_id": "c1", "identity_key": "00" * 16, "consent": {"service": True}}]},
    "orders": {"schema": "orders.v1", "message_id": "m", "orders": [
        {"order_id": "O-1", "customer_id": "c1", "status": "ready", "pickup_point": "B"}]},
    "lists": {"schema": "lists.v1", "message_id": "m", "lists": [
        {"customer_id": "c1", "version": 1, "items": [{"sku": "S", "source": "cart"}]}]},
    "planogram": {"schema": "planogram.v1", "message_id": "m",
                  "items": [{"sku": "S", "name": "N", "zone": "z"}]},
    "receipts": {"schema": "receipts.v1", "message_id": "m", "receipts": [
        {"receipt_id": "R", "customer_id": "c1", "total": 1.0, "items": [{"sku": "S"}]}]},
    "offers": {"schema": "offers.v1", "message_id": "m", "offers": [
        {"offer_id": "F", "match_sku": "S", "coupon": "C", "product": "P",
         "valid_from": "2026-01-01T00:00:00Z", "valid_until": "2026-12-31T00:00:00Z"}]},
    "commands": {"schema": "commands.v1", "message_id": "m", "commands": [
        {"command": "erase", "customer_id": "c1", "request_id": "r"}]},
}  # fmt: skip


def test_every_valid_example_parses() -> None:
    for kind, body in VALID.items():
        assert parse_downlink(kind, json.dumps(body).encode()).message_id == "m"


@given(st.sampled_from(sorted(VALID)), st.data(), json_values)
def test_one_broken_field_is_named_in_the_rejection(kind: str, data: st.DataObject, value: object) -> None:
    body = json.loads(json.dumps(VALID[kind]))
    records = next(v for v in body.values() if isinstance(v, list))
    record = records[0]
    field = data.draw(st.sampled_from(sorted(record)))
    record[field] = value
    reason = None
    try:
        parse_downlink(kind, json.dumps(body).encode())
    except DownlinkRejected as exc:
        reason = exc.reason
    if reason is not None:  # the drawn value may happen to be valid for the field
        assert field in reason or "(root)" in reason, reason
