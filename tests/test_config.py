"""Configuration: what a technician sees when a file is right, wrong, or overridden."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from edge_agent.adapters.configfile import load_config, render_toml
from edge_agent.core.const import EXIT_CONFIG
from edge_agent.core.errors import ConfigError
from edge_agent.core.validation import config_from_mapping, config_warnings
from tests.conftest import REPO


def _cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "edge_agent", *args],
        check=False,
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )


def test_example_config_is_valid() -> None:
    result = _cli("config", "check", str(REPO / "config" / "example.toml"))
    assert result.returncode == 0, result.stderr
    assert "valid" in result.stdout


def test_bad_port_and_misspelt_key_are_both_named(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text('[store]\nid = "s1"\n[mqtt]\nport = 70000\nhots = "broker"\n')
    result = _cli("config", "check", str(bad))
    assert result.returncode == EXIT_CONFIG
    assert "mqtt.port: must be between 1 and 65535, got 70000" in result.stderr
    assert "mqtt.hots: unknown key (did you mean 'host'?)" in result.stderr


def test_problems_in_lists_name_the_index(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text(
        '[store]\nid = "s1"\n[[zones]]\nid = "a"\n'
        '[[receivers]]\nid = "r1"\nzone = "a"\n[[receivers]]\nid = "r2"\nzone = "a"\nadapter = "usb0"\n'
    )
    with pytest.raises(ConfigError) as caught:
        load_config(bad)
    assert [p.key for p in caught.value.problems] == ["receivers[1].adapter"]


def test_receiver_in_unknown_zone_is_rejected(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text('[store]\nid = "s1"\n[[zones]]\nid = "a"\n[[receivers]]\nid = "r"\nzone = "b"\n')
    with pytest.raises(ConfigError) as caught:
        load_config(bad)
    assert str(caught.value.problems[0]) == "receivers[0].zone: unknown zone 'b' (zones: a)"


def test_missing_store_id_and_toml_syntax_errors_are_clear(tmp_path: Path) -> None:
    missing = tmp_path / "missing.toml"
    missing.write_text("[mqtt]\nport = 1883\n")
    with pytest.raises(ConfigError) as caught:
        load_config(missing)
    assert str(caught.value.problems[0]) == "store: required key is missing"
    broken = tmp_path / "broken.toml"
    broken.write_text("[store\nid = 1\n")
    with pytest.raises(ConfigError) as caught:
        load_config(broken)
    assert "TOML syntax error" in str(caught.value)


def test_unknown_time_zone_is_named(tmp_path: Path) -> None:
    bad = tmp_path / "tz.toml"
    bad.write_text('[store]\nid = "s1"\ntimezone = "Europe/Atlantis"\n')
    with pytest.raises(ConfigError) as caught:
        load_config(bad)
    assert str(caught.value.problems[0]) == "store.timezone: unknown IANA time zone 'Europe/Atlantis'"


def test_secret_from_environment_is_used_and_never_shown(tmp_path: Path) -> None:
    env = {"EDGE_AGENT_MQTT__USERNAME": "store-42", "EDGE_AGENT_MQTT__PASSWORD": "hunter2-secret"}
    config = load_config(REPO / "config" / "example.toml", environ=env)
    assert config.mqtt.password is not None
    assert config.mqtt.password.get_secret_value() == "hunter2-secret"
    shown = render_toml(config)
    assert "hunter2-secret" not in shown
    assert 'username = "store-42"' in shown


def test_environment_typo_is_an_error_too() -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(REPO / "config" / "example.toml", environ={"EDGE_AGENT_MQTT__PASWORD": "x"})
    assert "mqtt.pasword: unknown key (did you mean 'password'?)" in str(caught.value)


def test_environment_value_is_validated_like_the_file() -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(REPO / "config" / "example.toml", environ={"EDGE_AGENT_MQTT__PORT": "0"})
    assert "mqtt.port: must be between 1 and 65535, got 0" in str(caught.value)


def test_config_show_round_trips_to_the_same_configuration(tmp_path: Path) -> None:
    config = load_config(REPO / "config" / "example.toml")
    shown = tmp_path / "shown.toml"
    shown.write_text(render_toml(config))
    assert load_config(shown) == config


def test_bundled_demo_config_is_valid() -> None:
    from edge_agent.tools.demo import demo_config

    assert demo_config().mqtt.protocol == "3.1.1"


def test_floor_plan_mistakes_name_their_keys(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text(
        '[store]\nid = "s1"\nentrance_zone = "door"\n'
        '[[zones]]\nid = "a"\nadjacent = ["b", "a"]\npolygon = [[0, 0], [1, 1]]\n'
        '[[zones]]\nid = "c"\n[[receivers]]\nid = "r"\nzone = "a"\nposition = [1, 2, 3]\n'
        '[presence]\nfilter = "average"\n'
    )
    with pytest.raises(ConfigError) as caught:
        load_config(bad)
    # Field errors and the zones they name wrongly, in one pass: a technician on a slow SSH
    # session must not fix the file twice to see the rest.
    assert [p.key for p in caught.value.problems] == [
        "receivers[0].position",
        "presence.filter",
        "zones[0].adjacent[0]",
        "zones[0].adjacent[1]",
        "store.entrance_zone",
    ]
    bad.write_text(
        bad.read_text().replace("position = [1, 2, 3]", "position = [1, 2]").replace('"average"', '"median"')
    )
    with pytest.raises(ConfigError) as caught:
        load_config(bad)
    assert [str(p) for p in caught.value.problems] == [
        "zones[0].adjacent[0]: not another zone of this store: 'b'",
        "zones[0].adjacent[1]: not another zone of this store: 'a'",
        "store.entrance_zone: unknown zone 'door' (zones: a, c)",
        "zones[0].polygon: needs at least three corners",
    ]


def test_a_pickup_zone_that_does_not_exist_is_refused(tmp_path: Path) -> None:
    """With no such zone the "customer at the counter" alert could never fire."""
    bad = tmp_path / "bad.toml"
    bad.write_text(
        '[store]\nid = "s1"\n[[zones]]\nid = "a"\n[rules.click_and_collect]\npickup_zone = "pickup"\n'
    )
    with pytest.raises(ConfigError) as caught:
        load_config(bad)
    assert [str(p) for p in caught.value.problems] == [
        "rules.click_and_collect.pickup_zone: unknown zone 'pickup' (zones: a)"
    ]


def test_an_unknown_zone_is_reported_together_with_a_field_error(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text(
        '[store]\nid = "s1"\n[[zones]]\nid = "a"\n[[receivers]]\nid = "r"\nzone = "b"\n[mqtt]\nport = 0\n'
    )
    result = _cli("config", "check", str(bad))
    assert result.returncode == EXIT_CONFIG
    assert "mqtt.port: must be between 1 and 65535, got 0" in result.stderr
    assert "receivers[0].zone: unknown zone 'b' (zones: a)" in result.stderr


def test_a_file_without_an_mqtt_section_is_valid_but_warned_about() -> None:
    config = config_from_mapping({"store": {"id": "s1"}})
    [warning] = config_warnings(config)
    assert warning.key == "mqtt"
    assert "127.0.0.1:1883" in warning.reason
    assert config_warnings(config_from_mapping({"store": {"id": "s1"}, "mqtt": {"host": "hq"}})) == []
    from_environment = config_from_mapping({"store": {"id": "s1"}}, environ={"EDGE_AGENT_MQTT__HOST": "hq"})
    assert config_warnings(from_environment) == []


def test_a_template_override_naming_an_unknown_field_is_refused_with_its_key(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text('[store]\nid = "s1"\n[rules.templates."cnc.arrival.customer"]\nen = "Hi {first_name}"\n')
    with pytest.raises(ConfigError) as caught:
        load_config(bad)
    [problem] = caught.value.problems
    assert problem.key == "rules.templates.cnc.arrival.customer.en"
    assert "first_name" in problem.reason


def test_config_check_says_where_a_file_without_mqtt_will_connect(tmp_path: Path) -> None:
    plain = tmp_path / "plain.toml"
    plain.write_text('[store]\nid = "s1"\n')
    result = _cli("config", "check", str(plain))
    assert result.returncode == 0
    assert "warning: mqtt: no [mqtt] section: the agent will connect to 127.0.0.1:1883" in result.stderr
