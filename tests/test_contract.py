"""The HQ contract: generated schemas describe every message the agent sends, and the AsyncAPI
document is valid AsyncAPI 3.0.0."""

from __future__ import annotations

import io
import json
from pathlib import Path

import jsonschema
import pytest

from edge_agent.cli import main
from edge_agent.core.trace import format_trace_line
from edge_agent.hq.contract import channels
from edge_agent.tools.demo import demo_config
from edge_agent.tools.replay import replay
from edge_agent.tools.storeday import generate
from tests.conftest import REPO

ASYNCAPI_SCHEMA = REPO / "tests" / "data" / "asyncapi-3.0.0.schema.json"


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("contract")
    assert main(["schema", "export", str(directory)]) == 0
    return directory


def _validator(directory: Path, name: str) -> jsonschema.protocols.Validator:
    schema = json.loads((directory / "schemas" / f"{name}.json").read_text())
    cls = jsonschema.validators.validator_for(schema)
    cls.check_schema(schema)
    return cls(schema, format_checker=cls.FORMAT_CHECKER)


def test_asyncapi_document_is_valid_asyncapi_3(exported: Path) -> None:
    document = json.loads((exported / "asyncapi.json").read_text())
    schema = json.loads(ASYNCAPI_SCHEMA.read_text())
    jsonschema.Draft7Validator(schema).validate(document)
    # every payload reference points at a file that was written
    for message in document["components"]["messages"].values():
        assert (exported / message["payload"]["$ref"]).is_file()
    addresses = {c["address"] for c in document["channels"].values()}
    assert "retail/v1/stores/{store_id}/events/visit" in addresses
    assert "retail/v1/fleet/in/customers" in addresses
    status = document["operations"]["publish_status"]["bindings"]["mqtt"]
    assert status == {"qos": 1, "retain": True, "bindingVersion": "0.2.0"}


def test_a_broken_asyncapi_document_is_caught_by_the_same_check(exported: Path) -> None:
    document = json.loads((exported / "asyncapi.json").read_text())
    document["operations"]["publish_status"]["action"] = "publish"  # AsyncAPI 2 wording
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.Draft7Validator(json.loads(ASYNCAPI_SCHEMA.read_text())).validate(document)


def test_every_message_of_the_demo_day_validates_against_its_schema(exported: Path) -> None:
    config = demo_config()
    day = generate(seed=7, shoppers=60, app_customers=12, open_hours=(9, 13))
    trace = [format_trace_line(s) for s in day.sightings]
    out = io.StringIO()
    bad_downlink = ("orders", b'{"schema": "orders.v1", "message_id": "x", "orders": []}')
    replay(config, trace, out, downlinks=[*day.downlinks, bad_downlink])
    records = [json.loads(line) for line in out.getvalue().splitlines()]
    by_schema: dict[str, int] = {}
    validators = {}
    for record in records:
        payload = record["payload"]
        name = payload["schema"]
        if name not in validators:
            validators[name] = _validator(exported, name)
        validators[name].validate(payload)
        by_schema[name] = by_schema.get(name, 0) + 1
    assert {"visit.v1", "zone.v1", "footfall.v1", "notification.v1", "error.v1"} <= set(by_schema)


def test_schemas_reject_what_hq_must_not_accept(exported: Path) -> None:
    visit = _validator(exported, "visit.v1")
    with pytest.raises(jsonschema.ValidationError):
        visit.validate({"schema": "visit.v1", "event_id": "x", "store_id": "s", "ts": "2026-01-01T00:00:00Z"})
    customers = _validator(exported, "customers.v1")
    customers.validate({"schema": "customers.v1", "message_id": "m", "upsert": []})
    with pytest.raises(jsonschema.ValidationError):
        customers.validate({"schema": "customers.v1", "message_id": "m", "upsert": 5})


def test_every_channel_names_a_schema_that_was_exported(exported: Path) -> None:
    for channel in channels("retail/v1"):
        assert (exported / "schemas" / f"{channel.schema_name}.json").is_file()


def test_status_messages_the_demo_publishes_validate(exported: Path, tmp_path: Path) -> None:
    from edge_agent.core.ids import EventIdFactory
    from edge_agent.daemon.pipeline import Pipeline
    from edge_agent.storage.database import Database

    config = demo_config()
    config = config.model_copy(
        update={"storage": config.storage.model_copy(update={"path": tmp_path / "a.db"})}
    )
    database = Database(config.storage.path)
    pipeline = Pipeline(config, database, EventIdFactory.seeded("contract"))
    status = _validator(exported, "status.v1")
    for state in ("online", "offline"):
        status.validate(json.loads(pipeline.status(state, 1_764_000_000.0).to_json()))
    database.close()


def test_status_v1_describes_why_a_scanner_is_down_and_the_remote_receivers_counters(exported: Path) -> None:
    schema = json.loads((exported / "schemas" / "status.v1.json").read_text())
    assert "reason" in schema["$defs"]["ScannerStatus"]["properties"]
    assert set(schema["$defs"]["RemoteStatus"]["properties"]) == {
        "accepted", "rejected", "unknown_receivers", "clock_offsets",
    }  # fmt: skip
    status = _validator(exported, "status.v1")
    base = {
        "schema": "status.v1", "event_id": "01J0000000000000000000000A", "store_id": "s1",
        "ts": "2026-12-01T10:00:00Z", "state": "online", "agent_version": "1.0",
    }  # fmt: skip
    scanner = {
        "receiver": "e", "adapter": "hci0", "mode": "active", "running": False, "last_advertisement": None,
        "watchdog_restarts": 0, "errors": 5, "reason": "BlueZ not running (org.bluez not on the bus)",
    }  # fmt: skip
    remote = {"accepted": 3, "rejected": {"clock_skew": 2}, "unknown_receivers": {"kitchen": 1}}
    status.validate({**base, "scanners": [scanner], "remote": remote})
    with pytest.raises(jsonschema.ValidationError):
        status.validate({**base, "remote": {**remote, "rejected": {"clock_skew": "two"}}})


def test_every_message_may_say_its_clock_was_untrusted_and_status_v1_carries_the_clock_block(
    exported: Path,
) -> None:
    for name in ("visit.v1", "notification.v1", "footfall.v1"):
        schema = json.loads((exported / "schemas" / f"{name}.json").read_text())
        assert "clock_trusted" in schema["properties"], name
    schema = json.loads((exported / "schemas" / "status.v1.json").read_text())
    assert set(schema["$defs"]["ClockStatus"]["properties"]) == {
        "trusted", "synced", "steps", "last_step", "estimated_error_s", "estimate_uncertainty_s",
        "correction_s", "sources",
    }  # fmt: skip
    status = _validator(exported, "status.v1")
    base = {
        "schema": "status.v1", "event_id": "01J0000000000000000000000A", "store_id": "s1",
        "ts": "2026-12-01T10:00:00Z", "state": "online", "agent_version": "1.0",
    }  # fmt: skip
    clock = {
        "trusted": False, "synced": None, "steps": 1, "sources": ["system", "tokens"],
        "last_step": {"at": "2026-12-01T09:00:00Z", "size_s": -3600.0}, "estimated_error_s": 2400.5,
        "estimate_uncertainty_s": 0.5, "correction_s": 2400.5,
    }  # fmt: skip
    status.validate({**base, "clock": clock})
    with pytest.raises(jsonschema.ValidationError):
        status.validate({**base, "clock": {**clock, "trusted": "no"}})
