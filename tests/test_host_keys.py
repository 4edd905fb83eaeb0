"""Host keys and key files, no looser than OpenSSH, against real sshd hosts."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from hivetui.model import HostSnapshot, HostStatus
from tests.helpers import sweep_config
from tests.sshd import SshdHost, TestFleet


@pytest.fixture(autouse=True)
def bare_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """No ~/.ssh of the person running the tests, and no ssh-agent."""
    home = tmp_path / "home"
    (home / ".ssh").mkdir(parents=True, mode=0o700)
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.delenv("SSH_AUTH_SOCK", raising=False)
    return home


def hivetui_config(
    rig: TestFleet, host: SshdHost, *, own_known_hosts: bool = True, **keys: str
) -> str:
    """One host reached by address and port; ``[ssh] known_hosts`` only when asked."""
    lines = [
        "[[hosts]]",
        'name = "gpu01"',
        f'address = "{keys.pop("address", "127.0.0.1")}"',
        f"port = {host.port}",
        f'user = "{rig.user}"',
    ]
    identity = keys.pop("identity_file", str(rig.client_key))
    if identity:
        lines.append(f'identity_file = "{identity}"')
    lines += ["[ssh]", "connect_timeout = 5.0", f'config = "{rig.ssh_config}"']
    if own_known_hosts:
        lines.append(f'known_hosts = "{keys.pop("known_hosts", rig.known_hosts)}"')
    return "\n".join(lines) + "\n"


async def one(text: str) -> HostSnapshot:
    (snap,) = await sweep_config(text, 10)
    return snap


@pytest.mark.parametrize("setting", ["none", "/dev/null"])
async def test_user_known_hosts_file_none_accepts_no_key(
    ssh_fleet: TestFleet, setting: str
) -> None:
    host = ssh_fleet.add("gpu01")
    ssh_fleet.ssh_config.write_text(f"Host *\n  UserKnownHostsFile {setting}\n")
    snap = await one(hivetui_config(ssh_fleet, host, own_known_hosts=False))
    assert snap.status is HostStatus.HOST_KEY_UNKNOWN, snap
    assert snap.error is not None and "refused" in snap.error


async def test_known_hosts_file_from_the_ssh_config_is_honoured(ssh_fleet: TestFleet) -> None:
    host = ssh_fleet.add("gpu01")
    ssh_fleet.ssh_config.write_text(f"Host *\n  UserKnownHostsFile {ssh_fleet.known_hosts}\n")
    snap = await one(hivetui_config(ssh_fleet, host, own_known_hosts=False))
    assert snap.status is HostStatus.ONLINE, snap.error


async def test_entry_without_a_port_does_not_vouch_for_another_port(
    ssh_fleet: TestFleet,
) -> None:
    host = ssh_fleet.add("gpu01", known=False)
    ssh_fleet.known_hosts.write_text(f"127.0.0.1 ssh-ed25519 {host.public_host_key}\n")
    snap = await one(hivetui_config(ssh_fleet, host))
    assert snap.status is HostStatus.HOST_KEY_UNKNOWN, snap
    assert f"[127.0.0.1]:{host.port}" in (snap.error or "")
    # Written as OpenSSH writes it for that port, the same key is trusted.
    ssh_fleet.known_hosts.write_text(host.known_hosts_line())
    assert (await one(hivetui_config(ssh_fleet, host))).status is HostStatus.ONLINE


async def test_revoked_key_is_reported_as_revoked(ssh_fleet: TestFleet) -> None:
    host = ssh_fleet.add("gpu01")  # its key is trusted ...
    with ssh_fleet.known_hosts.open("a") as fh:  # ... and revoked
        fh.write(f"@revoked * ssh-ed25519 {host.public_host_key}\n")
    snap = await one(hivetui_config(ssh_fleet, host))
    assert snap.status is HostStatus.HOST_KEY_REVOKED and snap.status.value == "host key revoked"
    assert "@revoked" in (snap.error or "") and str(ssh_fleet.known_hosts) in (snap.error or "")


class Ipv6Host(SshdHost):
    """An sshd that also listens on the IPv6 loopback."""

    def _write_config(self) -> Path:
        config = super()._write_config()
        config.write_text(config.read_text() + "ListenAddress [::1]\n")
        return config


async def test_ipv6_address_in_brackets(ssh_fleet: TestFleet) -> None:
    host = Ipv6Host("gpu6", ssh_fleet.root / "gpu6", ssh_fleet.authorized_keys)
    ssh_fleet.hosts["gpu6"] = host
    host.start()
    ssh_fleet.known_hosts.write_text(f"[::1]:{host.port} ssh-ed25519 {host.public_host_key}\n")
    snap = await one(hivetui_config(ssh_fleet, host, address="[::1]"))
    assert snap.status is HostStatus.ONLINE and snap.gpus, snap.error


async def test_identity_file_readable_by_others_is_refused(
    ssh_fleet: TestFleet, tmp_path: Path
) -> None:
    host = ssh_fleet.add("gpu01")
    key = tmp_path / "open_key"
    shutil.copy(ssh_fleet.client_key, key)
    key.chmod(0o644)
    snap = await one(hivetui_config(ssh_fleet, host, identity_file=str(key)))
    assert snap.status is HostStatus.AUTH_FAILED
    assert f"UNPROTECTED PRIVATE KEY FILE {key}" in (snap.error or "")
    assert f"chmod 600 {key}" in (snap.error or "")
    key.chmod(0o600)
    assert (await one(hivetui_config(ssh_fleet, host, identity_file=str(key)))).status is (
        HostStatus.ONLINE
    )


async def test_default_key_readable_by_others_is_ignored(
    ssh_fleet: TestFleet, bare_home: Path
) -> None:
    host = ssh_fleet.add("gpu01")
    key = bare_home / ".ssh" / "id_ed25519"
    shutil.copy(ssh_fleet.client_key, key)
    key.chmod(0o640)
    snap = await one(hivetui_config(ssh_fleet, host, identity_file=""))
    assert snap.status is HostStatus.AUTH_FAILED, snap
    assert f"ignored UNPROTECTED PRIVATE KEY FILE {key}" in (snap.error or "")
    key.chmod(0o600)
    snap = await one(hivetui_config(ssh_fleet, host, identity_file=""))
    assert snap.status is HostStatus.ONLINE, snap.error


async def test_missing_identity_and_known_hosts_files_are_named(
    ssh_fleet: TestFleet, tmp_path: Path
) -> None:
    host = ssh_fleet.add("gpu01")
    gone = tmp_path / "no_such_key"
    snap = await one(hivetui_config(ssh_fleet, host, identity_file=str(gone)))
    assert snap.status is HostStatus.AUTH_FAILED
    assert f"identity file {gone} does not exist" in (snap.error or "")
    missing = tmp_path / "no_known_hosts"
    snap = await one(hivetui_config(ssh_fleet, host, known_hosts=str(missing)))
    assert snap.status is HostStatus.HOST_KEY_UNKNOWN
    assert f"known_hosts file {missing} does not exist" in (snap.error or "")


class NoRootHost(SshdHost):
    """An sshd that refuses root, to see which name a client logs in with."""

    def _write_config(self) -> Path:
        config = super()._write_config()
        text = config.read_text().replace("PermitRootLogin prohibit-password", "PermitRootLogin no")
        config.write_text(text)
        return config


async def test_default_login_name_comes_from_the_uid(
    ssh_fleet: TestFleet, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without a user in either config, the login name is the uid's (as OpenSSH's),
    never LOGNAME's or USER's."""
    host = NoRootHost("gpu01", ssh_fleet.root / "gpu01", ssh_fleet.authorized_keys)
    ssh_fleet.hosts["gpu01"] = host
    host.start()
    ssh_fleet.known_hosts.write_text(host.known_hosts_line())
    spoof = ssh_fleet.user if os.geteuid() == 0 else "hivetui-nobody-here"
    monkeypatch.setenv("LOGNAME", spoof)
    monkeypatch.setenv("USER", spoof)
    text = hivetui_config(ssh_fleet, host).replace(f'user = "{ssh_fleet.user}"\n', "")
    snap = await one(text)
    if os.geteuid() == 0:  # root is refused by this host: the uid's name was used
        assert snap.status is HostStatus.AUTH_FAILED and "as root@" in (snap.error or "")
    else:
        assert snap.status is HostStatus.ONLINE, snap.error


async def test_jump_host_gets_the_same_host_key_rules(ssh_fleet: TestFleet) -> None:
    """A ProxyJump host whose config says ``UserKnownHostsFile none`` is not trusted blindly."""
    jump = ssh_fleet.add("bastion")
    target = ssh_fleet.add("gpu01")
    ssh_fleet.ssh_config.write_text(
        f"Host bastion\n  HostName 127.0.0.1\n  Port {jump.port}\n  User {ssh_fleet.user}\n"
        f"  IdentityFile {ssh_fleet.client_key}\n  UserKnownHostsFile none\n"
        f"Host gpu01\n  HostName 127.0.0.1\n  Port {target.port}\n  User {ssh_fleet.user}\n"
        f"  IdentityFile {ssh_fleet.client_key}\n  ProxyJump bastion\n"
    )
    text = (
        f'[[hosts]]\nname = "gpu01"\n[ssh]\nconfig = "{ssh_fleet.ssh_config}"\n'
        f'known_hosts = "{ssh_fleet.known_hosts}"\nconnect_timeout = 5.0\n'
    )
    snap = await one(text)
    assert snap.status is HostStatus.HOST_KEY_UNKNOWN, snap
    assert (snap.error or "").startswith("jump host bastion: host key of ")
    # With the bastion's key where its config says to look, the hop is made.
    fixed = ssh_fleet.ssh_config.read_text().replace(
        "UserKnownHostsFile none", f"UserKnownHostsFile {ssh_fleet.known_hosts}"
    )
    ssh_fleet.ssh_config.write_text(fixed)
    snap = await one(text)
    assert snap.status is HostStatus.ONLINE and snap.gpus, snap.error
