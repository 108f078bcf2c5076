"""The trace format: JSON Lines of sightings (DESIGN §3), what ``scan --record`` writes and
``replay`` reads.

Lines starting with ``#`` are comments, unknown keys are ignored (newer recorders may add
fields), and a bad line is reported with its line number and skipped rather than ending a
replay that a technician may have waited an hour to record.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from edge_agent.core.errors import key_path
from edge_agent.core.sighting import Sighting

_HEX_DIGITS = frozenset("0123456789abcdefABCDEF")


def _hex_bytes(value: object) -> bytes:
    if not isinstance(value, str) or len(value) % 2 or not set(value) <= _HEX_DIGITS:
        raise ValueError("must be a hex string of whole bytes")
    return bytes.fromhex(value)


class TraceLine(BaseModel):
    """One trace line as it arrives from a file or a remote receiver."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    ts: Annotated[float, Field(ge=0, allow_inf_nan=False)]
    receiver: Annotated[str, Field(min_length=1, max_length=64)]
    address: Annotated[str, Field(min_length=1, max_length=64)]
    rssi: Annotated[int, Field(ge=-127, le=20)]
    tx_power: Annotated[int, Field(ge=-127, le=127)] | None = None
    manufacturer_data: dict[int, bytes] = {}
    service_data: dict[str, bytes] = {}
    service_uuids: list[str] = []
    name: str | None = None

    @field_validator("manufacturer_data", mode="before")
    @classmethod
    def _manufacturer(cls, value: object) -> dict[int, bytes]:
        if not isinstance(value, dict):
            raise ValueError("must be an object of company id -> hex")
        out: dict[int, bytes] = {}
        for key, data in value.items():
            if not (isinstance(key, str) and key.isdigit() and int(key) <= 0xFFFF):
                raise ValueError(f"company id {key!r} must be a decimal number 0..65535")
            out[int(key)] = _hex_bytes(data)
        return out

    @field_validator("service_data", mode="before")
    @classmethod
    def _service(cls, value: object) -> dict[str, bytes]:
        if not isinstance(value, dict):
            raise ValueError("must be an object of service UUID -> hex")
        return {str(key).lower(): _hex_bytes(data) for key, data in value.items()}

    def to_sighting(self) -> Sighting:
        return Sighting(
            ts=self.ts,
            receiver=self.receiver,
            address=self.address,
            rssi=self.rssi,
            tx_power=self.tx_power,
            manufacturer_data=dict(self.manufacturer_data),
            service_data=dict(self.service_data),
            service_uuids=tuple(u.lower() for u in self.service_uuids),
            name=self.name,
        )


@dataclass(frozen=True, slots=True)
class TraceProblem:
    line_number: int
    reason: str

    def __str__(self) -> str:
        return f"line {self.line_number}: {self.reason}"


def parse_trace_line(text: str) -> Sighting:
    """Parse one JSON line; raise ValueError with a readable reason."""
    try:
        raw = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"not JSON ({exc.msg} at column {exc.colno})") from None
    if not isinstance(raw, dict):
        raise ValueError("not a JSON object")
    try:
        return TraceLine.model_validate(raw).to_sighting()
    except ValidationError as exc:
        raise ValueError(_first_error(exc)) from None


def _first_error(exc: ValidationError) -> str:
    parts = []
    for error in exc.errors():
        key = key_path(error["loc"])
        parts.append(f"{key}: {error['msg'].removeprefix('Value error, ')}")
    return "; ".join(parts)


def read_trace(lines: Iterable[str]) -> Iterator[Sighting | TraceProblem]:
    """Yield each sighting, or a TraceProblem for a line that cannot be one (then carry on)."""
    for number, line in enumerate(lines, start=1):
        text = line.strip()
        if not text or text.startswith("#"):
            continue
        try:
            yield parse_trace_line(text)
        except ValueError as exc:
            yield TraceProblem(number, str(exc))


def sighting_to_json(sighting: Sighting) -> dict[str, Any]:
    """The trace form of a sighting; ``parse_trace_line`` reads it back to an equal value."""
    return {
        "ts": sighting.ts,
        "receiver": sighting.receiver,
        "address": sighting.address,
        "rssi": sighting.rssi,
        "tx_power": sighting.tx_power,
        "manufacturer_data": {str(k): v.hex() for k, v in sorted(sighting.manufacturer_data.items())},
        "service_data": {k: v.hex() for k, v in sorted(sighting.service_data.items())},
        "service_uuids": list(sighting.service_uuids),
        "name": sighting.name,
    }


def format_trace_line(sighting: Sighting) -> str:
    return json.dumps(sighting_to_json(sighting), separators=(",", ":"))
