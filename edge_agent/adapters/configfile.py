"""The configuration file and the environment: read, overlay, validate (``core.settings``).

The models and their checks are pure and live in the core; this adapter is what touches the
filesystem and ``os.environ``, and renders the effective configuration back as TOML.
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from edge_agent.core.errors import ConfigError, ConfigProblem
from edge_agent.core.settings import AgentConfig
from edge_agent.core.validation import config_from_mapping


def load_config(path: str | Path, environ: Mapping[str, str] | None = None) -> AgentConfig:
    """Read, overlay the environment, validate; raise ConfigError listing every problem."""
    source = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(source, [ConfigProblem("", f"cannot read {source}: {exc.strerror}")]) from exc
    except UnicodeDecodeError as exc:
        raise ConfigError(source, [ConfigProblem("", f"{source} is not UTF-8 text")]) from exc
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(source, [ConfigProblem("", f"TOML syntax error: {exc}")]) from exc
    return config_from_mapping(data, source, os.environ if environ is None else environ)


# ---------------------------------------------------------------------------- showing


def render_toml(config: AgentConfig) -> str:
    """The effective configuration as TOML, secrets replaced by asterisks."""
    data = config.model_dump(mode="json", exclude_none=True)
    lines: list[str] = []
    _emit_table(lines, [], data)
    return "\n".join(lines).strip() + "\n"


_BARE_KEY = re.compile(r"^[A-Za-z0-9_-]+$")


def _emit_table(lines: list[str], path: list[str], table: dict[str, Any]) -> None:
    scalars = {k: v for k, v in table.items() if not _is_table(v) and not _is_table_array(v)}
    if path and scalars:
        lines.append(f"\n[{'.'.join(path)}]")
    for key, value in scalars.items():
        lines.append(f"{_toml_key(key)} = {_toml_value(value)}")
    for key, value in table.items():
        if _is_table(value):
            _emit_table(lines, [*path, _toml_key(key)], value)
        elif _is_table_array(value):
            for item in value:
                lines.append(f"\n[[{'.'.join([*path, _toml_key(key)])}]]")
                for item_key, item_value in item.items():
                    lines.append(f"{_toml_key(item_key)} = {_toml_value(item_value)}")


def _is_table(value: Any) -> bool:
    return isinstance(value, dict)


def _is_table_array(value: Any) -> bool:
    return isinstance(value, list) and bool(value) and all(isinstance(v, dict) for v in value)


def _toml_key(key: str) -> str:
    return key if _BARE_KEY.match(key) else _toml_value(key)


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    escaped = str(value).replace("\\", "\\\\").replace('"', '\\"')
    return f'"{escaped}"'
