"""Validation of a configuration mapping into ``AgentConfig``, with every problem named. Pure.

Technicians edit the file on site, often over a slow SSH session, so every problem is reported
at once: field errors (pydantic) together with references between sections (a receiver naming
an unknown zone), each named by its TOML key path (``mqtt.port``, ``receivers[1].zone``); an
unknown key is an error with a "did you mean" suggestion, so a typo never silently falls back
to a default. The environment overlay (``EDGE_AGENT_<SECTION>__<KEY>``) is applied to a mapping
handed in; reading the file and ``os.environ`` is ``adapters.configfile``'s part.
"""

from __future__ import annotations

import difflib
import types
import typing
from collections.abc import Iterable, Mapping, Sequence
from typing import Annotated, Any

from pydantic import BaseModel, ValidationError

from edge_agent.core.calibration import calibration_warnings
from edge_agent.core.errors import ConfigError, ConfigProblem, key_path
from edge_agent.core.journey.templates import check_overrides
from edge_agent.core.settings import AgentConfig, BeaconSettings, ReceiverSettings, ZoneSettings

ENV_PREFIX = "EDGE_AGENT_"
ENV_NESTING = "__"


# ---------------------------------------------------------------------------- validating


def config_from_mapping(
    data: dict[str, Any], source: str = "<config>", environ: Mapping[str, str] | None = None
) -> AgentConfig:
    merged = _overlay_environment(data, environ or {})
    # References between sections (a receiver's zone, the pickup zone) are checked on the raw
    # data, so they are reported together with field errors instead of after they are fixed.
    references = list(_reference_problems(merged))
    try:
        config = AgentConfig.model_validate(merged)
    except ValidationError as exc:
        fields = [_describe(error) for error in exc.errors()]
        named = {problem.key for problem in fields}
        raise ConfigError(source, fields + [p for p in references if p.key not in named]) from None
    problems = references + list(_cross_check(config))
    if problems:
        raise ConfigError(source, problems)
    return config


def _overlay_environment(data: dict[str, Any], environ: Mapping[str, str]) -> dict[str, Any]:
    merged: dict[str, Any] = _deep_copy(data)
    for name, value in sorted(environ.items()):
        if not name.startswith(ENV_PREFIX) or ENV_NESTING not in name:
            continue
        path = name[len(ENV_PREFIX) :].lower().split(ENV_NESTING)
        node = merged
        for part in path[:-1]:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                break
            node = child
        else:
            node[path[-1]] = value
    return merged


def _deep_copy(data: Any) -> Any:
    if isinstance(data, dict):
        return {k: _deep_copy(v) for k, v in data.items()}
    if isinstance(data, list):
        return [_deep_copy(v) for v in data]
    return data


def _cross_check(config: AgentConfig) -> Iterable[ConfigProblem]:
    """Rules spanning sections, which pydantic's per-field validation cannot see."""
    sections: tuple[tuple[str, Sequence[ZoneSettings | ReceiverSettings | BeaconSettings]], ...] = (
        ("zones", config.zones),
        ("receivers", config.receivers),
        ("beacons", config.beacons),
    )
    for section, items in sections:
        seen: set[str] = set()
        for index, item in enumerate(items):
            if item.id in seen:
                yield ConfigProblem(f"{section}[{index}].id", f"duplicate id {item.id!r}")
            seen.add(item.id)
    yield from _check_layout(config)
    for key, problem in check_overrides(config.rules.templates):
        yield ConfigProblem(key, problem)
    mqtt = config.mqtt
    if mqtt.reconnect_max_s < mqtt.reconnect_min_s:
        yield ConfigProblem("mqtt.reconnect_max_s", "must not be smaller than mqtt.reconnect_min_s")
    if mqtt.tls.enabled and mqtt.tls.ca_file is None:
        yield ConfigProblem("mqtt.tls.ca_file", "required when mqtt.tls.enabled is true")
    if (mqtt.tls.cert_file is None) != (mqtt.tls.key_file is None):
        yield ConfigProblem("mqtt.tls.key_file", "cert_file and key_file must be given together")
    if config.ble.restart_backoff_max_s < config.ble.restart_backoff_min_s:
        yield ConfigProblem("ble.restart_backoff_max_s", "must not be smaller than ble.restart_backoff_min_s")
    if mqtt.password is not None and mqtt.username is None:
        yield ConfigProblem("mqtt.username", "required when mqtt.password is set")
    yield from _check_receiver_beacons(config)


def _check_receiver_beacons(config: AgentConfig) -> Iterable[ConfigProblem]:
    """A receiver's own beacon (``[[receivers]] beacon``) is a configured beacon, and only its."""
    beacon_ids = {b.id for b in config.beacons}
    advertised_by: dict[str, str] = {}
    for index, receiver in enumerate(config.receivers):
        if receiver.beacon is not None and receiver.beacon not in beacon_ids:
            yield ConfigProblem(f"receivers[{index}].beacon", f"not a [[beacons]] id: {receiver.beacon!r}")
        elif receiver.beacon is not None and receiver.beacon in advertised_by:
            # One beacon hangs in one place: calibration would put it where the last one does.
            yield ConfigProblem(
                f"receivers[{index}].beacon",
                f"{receiver.beacon!r} is already the beacon of receiver {advertised_by[receiver.beacon]!r}",
            )
        elif receiver.beacon is not None:
            advertised_by[receiver.beacon] = receiver.id


def _check_layout(config: AgentConfig) -> Iterable[ConfigProblem]:
    for index, zone in enumerate(config.zones):
        if zone.polygon and len(zone.polygon) < 3:
            yield ConfigProblem(f"zones[{index}].polygon", "needs at least three corners")


def _reference_problems(data: Mapping[str, Any]) -> Iterable[ConfigProblem]:
    """Receivers, adjacency, the entrance, the pickup zone and the zones the assistance and
    queue rules watch must name zones that exist.

    Read from the raw mapping, whatever else is wrong with it: a value of the wrong type is the
    field check's to report, so it is skipped here."""
    zones = [z for z in _table_array(data.get("zones")) if isinstance(z, Mapping)]
    zone_ids = {z["id"] for z in zones if isinstance(z.get("id"), str)}
    known = ", ".join(sorted(zone_ids)) or "none defined"

    def unknown(key: str, value: object) -> Iterable[ConfigProblem]:
        if isinstance(value, str) and value not in zone_ids:
            yield ConfigProblem(key, f"unknown zone {value!r} (zones: {known})")

    for index, receiver in enumerate(_table_array(data.get("receivers"))):
        if isinstance(receiver, Mapping):
            yield from unknown(f"receivers[{index}].zone", receiver.get("zone"))
    for index, zone in enumerate(_table_array(data.get("zones"))):
        if not isinstance(zone, Mapping):
            continue
        for position, neighbour in enumerate(_table_array(zone.get("adjacent"))):
            if isinstance(neighbour, str) and (neighbour not in zone_ids or neighbour == zone.get("id")):
                yield ConfigProblem(
                    f"zones[{index}].adjacent[{position}]", f"not another zone of this store: {neighbour!r}"
                )
    yield from unknown("store.entrance_zone", _lookup(data, "store", "entrance_zone"))
    # Without it the counter alert ("customer at the counter") can never fire.
    yield from unknown(
        "rules.click_and_collect.pickup_zone", _lookup(data, "rules", "click_and_collect", "pickup_zone")
    )
    # A watched zone that does not exist would leave its rule silently idle.
    for rule in ("assist", "queue"):
        for position, zone_id in enumerate(_table_array(_lookup(data, "rules", rule, "zones"))):
            yield from unknown(f"rules.{rule}.zones[{position}]", zone_id)


def _table_array(value: object) -> list[Any]:
    return value if isinstance(value, list) else []


def _lookup(data: Mapping[str, Any], *path: str) -> object:
    node: object = data
    for part in path:
        if not isinstance(node, Mapping):
            return None
        node = node.get(part)
    return node


def config_warnings(config: AgentConfig) -> list[ConfigProblem]:
    """What is valid but probably not meant: a technician should read these before a start."""
    warnings = []
    if "mqtt" not in config.model_fields_set:
        warnings.append(
            ConfigProblem(
                "mqtt",
                f"no [mqtt] section: the agent will connect to {config.mqtt.host}:{config.mqtt.port}, "
                "the default; name the broker HQ gave this store",
            )
        )
    warnings += [ConfigProblem(key, reason) for key, reason in calibration_warnings(config)]
    return warnings


# ---------------------------------------------------------------------------- error messages


def _describe(error: Mapping[str, Any]) -> ConfigProblem:
    loc = tuple(error["loc"])
    kind = error["type"]
    if kind == "extra_forbidden":
        reason = "unknown key"
        known = _known_keys(loc[:-1])
        close = difflib.get_close_matches(str(loc[-1]), known, n=1)
        if close:
            reason += f" (did you mean {close[0]!r}?)"
        return ConfigProblem(key_path(loc), reason)
    if kind == "missing":
        return ConfigProblem(key_path(loc), "required key is missing")
    message = str(error["msg"])
    if kind == "value_error":
        return ConfigProblem(key_path(loc), message.removeprefix("Value error, "))
    if kind == "string_pattern_mismatch" and "pattern" in error.get("ctx", {}):
        message = f"must match {error['ctx']['pattern']}"
    reason = message[:1].lower() + message[1:]
    if "input" in error and not isinstance(error["input"], dict | list):
        reason += f", got {error['input']!r}"
    return ConfigProblem(key_path(loc), reason)


def _known_keys(loc: tuple[int | str, ...]) -> list[str]:
    """Field names of the model found at ``loc``, for 'did you mean' suggestions."""
    model: Any = AgentConfig
    for part in loc:
        if isinstance(part, int):
            continue
        field = (
            model.model_fields.get(part) if isinstance(model, type) and issubclass(model, BaseModel) else None
        )
        if field is None:
            return []
        model = _model_in(field.annotation)
    return list(model.model_fields) if isinstance(model, type) and issubclass(model, BaseModel) else []


def _model_in(annotation: Any) -> Any:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    origin = typing.get_origin(annotation)
    if origin in (list, typing.Union, types.UnionType, Annotated):
        for arg in typing.get_args(annotation):
            found = _model_in(arg)
            if found is not None:
                return found
    return None
