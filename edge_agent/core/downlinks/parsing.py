"""Downlinks from HQ (DESIGN §5 "down"), validated completely before anything is applied.

A downlink is either applied whole or rejected with a reason that goes back to HQ on the errors
topic; it is never half-applied. Reasons name the field (``upsert[3].identity_key``) but never
echo values, because a customers downlink carries identity keys.
"""

from __future__ import annotations

import json

from pydantic import ValidationError

from edge_agent.core.const import MAX_DOWNLINK_BYTES
from edge_agent.core.downlinks.models import Downlink
from edge_agent.core.downlinks.registry import DOWNLINKS, DownlinkRegistry
from edge_agent.core.errors import DownlinkRejected, key_path


def parse_downlink(kind: str, payload: bytes, registry: DownlinkRegistry = DOWNLINKS) -> Downlink:
    """Validate a downlink of ``kind``; raise DownlinkRejected with a reason for HQ."""
    declaration = registry.get(kind)
    if declaration is None:
        raise DownlinkRejected(f"unknown kind {kind!r}")
    if len(payload) > MAX_DOWNLINK_BYTES:
        raise DownlinkRejected(f"payload of {len(payload)} bytes exceeds the {MAX_DOWNLINK_BYTES}-byte limit")
    try:
        text = payload.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise DownlinkRejected(f"payload is not UTF-8 (byte {exc.start})") from None
    try:
        raw = json.loads(text)
    except json.JSONDecodeError as exc:
        raise DownlinkRejected(
            f"payload is not JSON: {exc.msg} at line {exc.lineno} column {exc.colno}"
        ) from None
    except RecursionError:
        raise DownlinkRejected("payload is not JSON: nested too deeply") from None
    if not isinstance(raw, dict):
        raise DownlinkRejected("payload must be a JSON object")
    try:
        return declaration.model.model_validate(raw)
    except ValidationError as exc:
        raise DownlinkRejected(_reasons(exc)) from None


def message_id_of(payload: bytes) -> str | None:
    """Best-effort message id of a payload that may be invalid, for the error report."""
    try:
        raw = json.loads(payload)
    except (ValueError, RecursionError):
        return None
    value = raw.get("message_id") if isinstance(raw, dict) else None
    return value[:128] if isinstance(value, str) else None


def _reasons(exc: ValidationError, limit: int = 5) -> str:
    errors = exc.errors(include_input=False, include_url=False)
    parts = []
    for error in errors[:limit]:
        key = key_path(error["loc"])
        parts.append(f"{key or '(root)'}: {error['msg'].removeprefix('Value error, ')}")
    if len(errors) > limit:
        parts.append(f"and {len(errors) - limit} more")
    return "; ".join(parts)
