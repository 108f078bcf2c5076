"""The ``edge-agent`` command line itself: its commands in order, a help text for every option,
and ``--broker HOST:PORT`` read by one parser for every command that takes it."""

from __future__ import annotations

import argparse

import pytest
from hypothesis import given
from hypothesis import strategies as st

from edge_agent.cli import _parser, main
from edge_agent.core.address import parse_host_port

_HOSTS = st.text(st.characters(blacklist_categories=["Cs"], blacklist_characters="\x00"), min_size=1)


def _subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    found = {}
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                found[name] = sub
                found |= {f"{name} {n}": p for n, p in _subparsers(sub).items()}
    return found


def test_the_commands_are_listed_in_the_order_of_the_help() -> None:
    assert list(_subparsers(_parser())) == [
        "run", "demo", "replay", "simulate", "evaluate", "calibrate", "hq", "hq consume", "hq report",
        "simulate-fleet",
        "schema", "schema export", "scan", "journey", "status", "config", "config check", "config show",
    ]  # fmt: skip


def test_every_option_and_argument_of_every_command_says_what_it_is_for() -> None:
    missing = [
        f"{name} {action.dest}"
        for name, sub in _subparsers(_parser()).items()
        for action in sub._actions
        if not isinstance(action, argparse._SubParsersAction) and not action.help
    ]
    assert missing == []


@given(host=_HOSTS, port=st.integers(0, 99_999))
def test_host_port_round_trips_a_host_holding_colons_too(host: str, port: int) -> None:
    assert parse_host_port(f"{host}:{port}") == (host, port)


@given(port=st.integers(0, 65_535))
def test_an_empty_host_is_the_default_only_where_one_is_given(port: int) -> None:
    assert parse_host_port(f":{port}", default_host="127.0.0.1") == ("127.0.0.1", port)
    assert parse_host_port(str(port), default_host="127.0.0.1") == ("127.0.0.1", port)
    with pytest.raises(ValueError, match="expects HOST:PORT"):
        parse_host_port(f":{port}")


@given(
    text=st.one_of(
        _HOSTS.filter(lambda h: not h.rpartition(":")[2].isdecimal()),  # no port
        _HOSTS.map(lambda h: f"{h}:"),
        st.tuples(_HOSTS, st.sampled_from(["http", "-1", "+1", " 1", "1 ", "1_000", "²", "0x10"])).map(
            ":".join
        ),
    )
)
def test_anything_but_host_colon_digits_is_refused_with_what_was_given(text: str) -> None:
    with pytest.raises(ValueError, match=r"^expects HOST:PORT, got ") as raised:
        parse_host_port(text)
    assert str(raised.value) == f"expects HOST:PORT, got {text!r}"


@pytest.mark.parametrize(
    "argv",
    [
        ["hq", "consume", "--broker", "broker.local", "--group", "g", "--db", "hq.db"],
        ["simulate-fleet", "--stores", "2", "--broker", "broker.local"],
        ["demo", "--broker", "broker.local:mqtt"],
    ],
)
def test_a_broker_that_is_not_host_port_is_a_usage_error_naming_the_option(
    argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        main(argv)
    assert exited.value.code == 2
    given_text = argv[argv.index("--broker") + 1]
    assert f"argument --broker: --broker expects HOST:PORT, got {given_text!r}" in capsys.readouterr().err
