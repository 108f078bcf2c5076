"""The systemd unit: `systemd-analyze verify` clean and hardened, as shipped.

`verify` prints a warning and still exits 0 for a misspelt directive or a bad value, so any
output at all fails here; it also needs ExecStart's binary to exist, so the check runs on a copy
pointing at this environment's edge-agent.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO

UNIT = REPO / "systemd" / "edge-agent.service"
# systemd-analyze security's scale: 0 is locked down, 10 is exposed; below 2 it says "OK".
MAX_EXPOSURE = 2.0


@pytest.fixture
def unit_here(tmp_path: Path) -> Path:
    if shutil.which("systemd-analyze") is None:
        pytest.fail("systemd-analyze is missing: `make test` installs Debian's systemd package")
    binary = Path(sys.executable).with_name("edge-agent")
    assert binary.exists(), f"{binary} missing: the package is not installed in this environment"
    text = UNIT.read_text().replace("/opt/edge-agent/.venv/bin/edge-agent", str(binary))
    copy = tmp_path / "edge-agent.service"
    copy.write_text(text)
    return copy


def test_unit_verifies_without_a_single_warning(unit_here: Path) -> None:
    result = subprocess.run(
        ["systemd-analyze", "verify", str(unit_here)], check=False, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0
    assert result.stdout + result.stderr == ""


def test_unit_is_hardened(unit_here: Path) -> None:
    result = subprocess.run(
        ["systemd-analyze", "security", "--offline=true", str(unit_here)],
        check=False, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    match = re.search(r"Overall exposure level for edge-agent\.service: ([0-9.]+)", result.stdout)
    assert match, result.stdout + result.stderr
    assert float(match.group(1)) <= MAX_EXPOSURE


def test_unit_says_what_the_daemon_relies_on() -> None:
    directives = dict(
        line.split("=", 1)
        for line in UNIT.read_text().splitlines()
        if "=" in line and not line.startswith("#")
    )
    assert directives["Type"] == "notify"
    assert directives["NotifyAccess"] == "main"
    assert directives["RestartPreventExitStatus"] == "78"  # edge_agent.core.const.EXIT_CONFIG
    assert directives["StateDirectory"] == "edge-agent"  # storage.path defaults under /var/lib/edge-agent
    assert "bluetooth" in directives["SupplementaryGroups"]
    assert directives["RestrictAddressFamilies"] == "AF_UNIX AF_INET AF_INET6"


def test_install_lays_out_config_and_unit_and_keeps_an_existing_config(tmp_path: Path) -> None:
    env = {"DESTDIR": str(tmp_path), "PATH": "/usr/bin:/bin:/usr/sbin:/sbin"}
    first = subprocess.run(
        ["bash", str(REPO / "scripts" / "install.sh")], check=False, capture_output=True, text=True, env=env
    )
    assert first.returncode == 0, first.stderr
    config = tmp_path / "etc" / "edge-agent" / "agent.toml"
    assert config.read_text() == (REPO / "config" / "example.toml").read_text()
    assert config.stat().st_mode & 0o777 == 0o640
    assert (tmp_path / "etc" / "edge-agent").stat().st_mode & 0o777 == 0o750
    assert (tmp_path / "etc" / "systemd" / "system" / "edge-agent.service").read_text() == UNIT.read_text()
    assert (tmp_path / "opt" / "edge-agent" / "README.md").exists()

    config.write_text("# the technician's own settings\n")
    again = subprocess.run(
        ["bash", str(REPO / "scripts" / "install.sh")], check=False, capture_output=True, text=True, env=env
    )
    assert again.returncode == 0, again.stderr
    assert config.read_text() == "# the technician's own settings\n"  # an upgrade never overwrites it
