"""The HQ contract, generated from the models the agent really uses: JSON Schemas and AsyncAPI.

``edge-agent schema export DIR`` writes ``DIR/schemas/<schema>.json`` (one JSON Schema per
message type, draft 2020-12 as pydantic emits it) and ``DIR/asyncapi.json`` (AsyncAPI 3.0.0:
every topic, its direction, QoS, retain flag and payload, the payloads referring to those
files). Generating from the pydantic models means the contract cannot drift from the code; a
test validates messages the demo produces against these schemas and the AsyncAPI document
against the AsyncAPI 3.0.0 JSON Schema.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, get_args

from pydantic import BaseModel

from edge_agent import __version__
from edge_agent.core.downlinks import DOWNLINKS
from edge_agent.core.events import UPLINK_MESSAGES
from edge_agent.core.trace import TraceLine


@dataclass(frozen=True, slots=True)
class Channel:
    key: str
    address: str
    action: str  # "send" (the agent publishes) | "receive" (the agent subscribes)
    qos: int
    retain: bool
    schema_name: str
    model: type[BaseModel]
    description: str


def schema_name(model: type[BaseModel]) -> str:
    """The ``schema`` value a model's messages carry (its Literal default), e.g. ``visit.v1``."""
    field = model.model_fields.get("schema_name")
    if field is None:
        return "trace_line.v1"  # remote receivers send bare trace lines, without a schema field
    (name,) = get_args(field.annotation)
    return str(name)


def channels(prefix: str) -> list[Channel]:
    store = f"{prefix}/stores/{{store_id}}"
    found = [
        Channel(
            key=model.stream.replace("/", "_"), address=f"{store}/{model.stream}", action="send",
            qos=1, retain=model.retain, schema_name=schema_name(model), model=model,
            description=(model.__doc__ or schema_name(model)).strip().splitlines()[0],
        )
        for model in UPLINK_MESSAGES
    ]  # fmt: skip
    for declaration in DOWNLINKS:
        kind, model = declaration.kind, declaration.model
        for scope, root in (("store", f"{store}/in"), ("fleet", f"{prefix}/fleet/in")):
            found.append(
                Channel(
                    key=f"in_{scope}_{kind}", address=f"{root}/{kind}", action="receive", qos=1, retain=False,
                    schema_name=schema_name(model), model=model,
                    description=f"{kind} from HQ to {'this store' if scope == 'store' else 'every store'}",
                )
            )  # fmt: skip
    found.append(
        Channel(
            key="sightings", address=f"{store}/sightings/{{receiver}}", action="receive", qos=0, retain=False,
            schema_name="trace_line.v1", model=TraceLine,
            description="remote receivers (ESP32 nodes): one trace line per message, or a JSON array of them",
        )
    )  # fmt: skip
    return found


def json_schemas(prefix: str) -> dict[str, dict[str, Any]]:
    schemas: dict[str, dict[str, Any]] = {}
    for channel in channels(prefix):
        if channel.schema_name in schemas:
            continue
        mode: Literal["serialization", "validation"] = (
            "serialization" if channel.action == "send" else "validation"
        )
        schema = channel.model.model_json_schema(by_alias=True, mode=mode)
        schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
        schema["$id"] = f"{channel.schema_name}.json"
        schemas[channel.schema_name] = schema
    return schemas


def asyncapi_document(prefix: str) -> dict[str, Any]:
    document: dict[str, Any] = {
        "asyncapi": "3.0.0",
        "info": {
            "title": "edge-agent store feeds",
            "version": __version__,
            "description": (
                "What every store's edge agent publishes to HQ and what it accepts from HQ. Delivery "
                "is at-least-once: deduplicate on event_id. See docs/hq.md."
            ),
        },
        "defaultContentType": "application/json",
        "servers": {
            "hq": {
                "host": "mqtt.hq.example:8883",
                "protocol": "mqtt",
                "protocolVersion": "5",
                "description": "The chain's MQTT broker (TLS); stores may also speak MQTT 3.1.1.",
            }
        },
        "channels": {},
        "operations": {},
        "components": {"messages": {}},
    }
    for channel in channels(prefix):
        message_key = channel.schema_name.replace(".", "_")
        document["components"]["messages"][message_key] = {
            "name": channel.schema_name,
            "title": channel.schema_name,
            "contentType": "application/json",
            "payload": {"$ref": f"schemas/{channel.schema_name}.json"},
        }
        parameters = {
            name: {"description": text}
            for name, text in (("store_id", "the store's id ([store] id)"), ("receiver", "a receiver id"))
            if f"{{{name}}}" in channel.address
        }
        document["channels"][channel.key] = {
            "address": channel.address,
            "description": channel.description,
            "messages": {message_key: {"$ref": f"#/components/messages/{message_key}"}},
            **({"parameters": parameters} if parameters else {}),
        }
        verb = "publish" if channel.action == "send" else "accept"
        document["operations"][f"{verb}_{channel.key}"] = {
            "action": channel.action,
            "channel": {"$ref": f"#/channels/{channel.key}"},
            "messages": [{"$ref": f"#/channels/{channel.key}/messages/{message_key}"}],
            "bindings": {"mqtt": {"qos": channel.qos, "retain": channel.retain, "bindingVersion": "0.2.0"}},
        }
    return document


def export(directory: Path, prefix: str) -> list[Path]:
    """Write the schemas and the AsyncAPI document; return the files written."""
    (directory / "schemas").mkdir(parents=True, exist_ok=True)
    written = []
    for name, schema in json_schemas(prefix).items():
        path = directory / "schemas" / f"{name}.json"
        path.write_text(json.dumps(schema, indent=2, sort_keys=True) + "\n", encoding="utf-8")
        written.append(path)
    path = directory / "asyncapi.json"
    path.write_text(json.dumps(asyncapi_document(prefix), indent=2) + "\n", encoding="utf-8")
    written.append(path)
    return written
